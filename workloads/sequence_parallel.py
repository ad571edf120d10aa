"""Sequence parallelism for causal attention: DeepSpeed-Ulysses and ring attention.

Closed forms for per-device communication volume and memory, plus the operator list of one
sequence-parallel attention layer (compute and collectives), so the cost model times it like
any other step. Formulas (elements unless the name says bytes):

* Ulysses (arXiv 2309.14509): QKV all-to-all (3 tensors of N x h / P per device) before
  attention and one output all-to-all after it; an all-to-all of M elements over P devices
  sends M/P per link, so the volume per link is ``4 N h / P``. Each device then runs full-
  sequence attention over ``heads / P`` heads, so ``P`` must divide the head count.
* Ring self-attention (arXiv 2105.13120): each device keeps ``N/P`` queries and passes its K and
  V blocks round the ring, ``P - 1`` passes; forward ``2 (P-1) B Z (L/P) A`` elements, backward
  three times that, ``8 (P-1) B Z (L/P) A`` in all (B batch, Z heads, L sequence, A head size).
  Block attention overlaps the next pass; causal masking skips the upper-triangle blocks,
  balanced across devices by zig-zag placement. Exposed: ``(P - 1) max(0, pass - block)`` per
  layer (``ring_exposed_s``).

The KV layout each leaves differs, which matters in decode (``decode_combine_bytes``): after
Ulysses' all-to-all a device holds ``heads / P`` heads of every token (the layout of tensor
parallelism), after ring attention ``1 / P`` of the tokens with every head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from workloads.accounting import ACT_BYTES, attention_pairs
from workloads.op import ATTN_PREFILL, COLLECTIVE, Op

if TYPE_CHECKING:
    from workloads.models import ModelConfig

SP_KINDS = ("ulysses", "ring")


def ulysses_volume_per_link(seq: int, hidden: int, degree: int) -> float:
    """Elements each device sends per link per layer forward: 4 N h / P (3 QKV + 1 output)."""
    return 4.0 * seq * hidden / degree


def megatron_sp_volume_per_link(seq: int, hidden: int) -> float:
    """Megatron-SP forward volume per link: 2 all-gathers + 2 reduce-scatters of N h = 4 N h."""
    return 4.0 * seq * hidden


def ring_volume(batch: int, seq: int, heads: int, head_dim: int, degree: int, backward: bool = True) -> float:
    """RSA elements per layer: forward 2(P-1) B Z (L/P) A; with backward 8(P-1) B Z (L/P) A."""
    fwd = 2.0 * (degree - 1) * batch * heads * (seq / degree) * head_dim
    return fwd * (4.0 if backward else 1.0)


def sp_activation_memory_wins(batch: int, seq: int, hidden: int, heads: int, head_dim: int) -> dict[str, bool]:
    """Where sequence parallelism needs less activation memory than tensor parallelism
    (2105.13120 §4): MLP when B L > 32 H, attention when B L > 16 A Z."""
    return {"mlp": batch * seq > 32 * hidden, "attention": batch * seq > 16 * head_dim * heads}


@dataclass(frozen=True, slots=True)
class SpAttention:
    """One causal attention layer (prefill) of ``batch`` sequences split over ``degree`` devices."""

    kind: str  # "ulysses" or "ring"
    batch: int
    seq: int
    heads: int
    head_dim: int
    degree: int
    kv_heads: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in SP_KINDS:
            raise ValueError(f"sp kind {self.kind!r} (valid: ulysses, ring)")
        if self.degree < 1 or self.seq < 1 or self.heads < 1 or self.head_dim < 1 or self.batch < 1:
            raise ValueError("batch, seq, heads, head_dim and sp degree must be positive")
        if self.kind == "ulysses" and self.heads % self.degree:
            valid = ", ".join(str(d) for d in range(1, self.heads + 1) if self.heads % d == 0)
            raise ValueError(f"ulysses degree {self.degree} does not divide {self.heads} heads (valid: {valid})")
        if self.seq % self.degree:
            raise ValueError(f"sp degree {self.degree} does not divide sequence length {self.seq}")

    @property
    def hidden(self) -> int:
        return self.heads * self.head_dim

    def ops(self) -> list[Op]:
        """Per-device ops: the collectives on the comm stream and the attention itself."""
        P, B, N, H, D = self.degree, self.batch, self.seq, self.heads, self.head_dim
        kvh = self.kv_heads or H
        pairs_total = B * attention_pairs(N, 0, True)
        flops_total = pairs_total * H * 4.0 * D  # QK^T + PV, 2*d each
        if self.kind == "ulysses":
            h_local = H // P
            qkv_bytes = B * (N // P) * (H + 2 * kvh) * D * ACT_BYTES
            out_bytes = B * (N // P) * H * D * ACT_BYTES
            attn = Op("sp.attn", ATTN_PREFILL,
                      {"batch": B, "seq": N, "heads_q": h_local, "heads_kv": max(1, kvh // P), "head_dim_qk": D,
                       "head_dim_v": D, "causal": True, "context": 0},
                      flops_total / P, B * N * (h_local + 2 * max(1, kvh // P)) * D * ACT_BYTES,
                      B * N * h_local * D * ACT_BYTES, layer="attn")
            return [
                Op("sp.qkv_all_to_all", COLLECTIVE, {}, 0.0, qkv_bytes, qkv_bytes, layer="attn", stream="comm",
                   collective="all_to_all", group_size=P, bytes_per_rank=qkv_bytes),
                attn,
                Op("sp.out_all_to_all", COLLECTIVE, {}, 0.0, out_bytes, out_bytes, layer="attn", stream="comm",
                   collective="all_to_all", group_size=P, bytes_per_rank=out_bytes),
            ]
        # ring: P steps; with zig-zag placement every step computes about half of an (N/P) x (N/P)
        # block (the diagonal step a causal block), i.e. a causal block's work; P - 1 K,V sends.
        blk = N // P
        kv_block_bytes = B * blk * 2 * kvh * D * ACT_BYTES
        attn = Op("sp.block_attn", ATTN_PREFILL,
                  {"batch": B, "seq": blk, "heads_q": H, "heads_kv": kvh, "head_dim_qk": D, "head_dim_v": D,
                   "causal": True, "context": 0},
                  flops_total / P / P, 0.0, 0.0, layer="attn", count=P)
        send = Op("sp.kv_ring_pass", COLLECTIVE, {}, 0.0, kv_block_bytes, kv_block_bytes, layer="attn",
                  stream="comm", collective="send_recv", group_size=2, bytes_per_rank=kv_block_bytes,
                  count=P - 1, meta={"ring_degree": P})
        return [attn, send] if P > 1 else [attn]


def model_sp_attention(kind: str, model: "ModelConfig", batch: int, seq: int, degree: int,
                       tp: int = 1) -> SpAttention:
    """``SpAttention`` of one layer of ``model`` on one tensor-parallel rank (``num_heads / tp``
    heads). MLA runs non-absorbed here: K and V per head, ``qk_head_dim`` wide."""
    a = model.attention
    heads = a.num_heads // tp
    kvh = heads if model.is_mla else max(1, a.num_kv_heads // tp)
    return SpAttention(kind, batch, seq, heads, a.qk_head_dim, degree, kv_heads=kvh)


def ring_exposed_s(block_s: float, pass_s: float, degree: int) -> float:
    """Exposed seconds of one ring-attention layer's K/V passes: each of the ``degree - 1``
    passes runs under one block's attention, so only ``max(0, pass - block)`` of each shows."""
    return (degree - 1) * max(0.0, pass_s - block_s)


def decode_combine_bytes(kind: str, output_bytes: float, degree: int) -> float:
    """Bytes each device contributes to the all-gather after one decode attention layer, given
    ``output_bytes`` of the layer's attention output (all heads of this TP rank, all tokens).

    Ring (tokens sharded): every device holds a partial output of all heads over its share of
    the context, and the partials are combined (log-sum-exp rescaling): ``output_bytes``.
    Ulysses (heads sharded): a device's ``1 / degree`` of the heads are final; only they are
    gathered: ``output_bytes / degree``."""
    if kind not in SP_KINDS:
        raise ValueError(f"sp kind {kind!r} (valid: {', '.join(SP_KINDS)})")
    return output_bytes / degree if kind == "ulysses" else output_bytes
