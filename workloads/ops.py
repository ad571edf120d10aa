"""What work one step does on ONE device: ``step_ops(model, batch, parallelism) -> list[Op]``.

This is the single source of truth for per-step work. The simulator's cost model times the
returned ops (compute from profiles/rooflines, collectives from the fabric), the planner ranks
layouts with it, and the tests check it against ``workloads.accounting``.

Scope and conventions (details in workloads/README.md):

* ``BatchShape`` is the batch one model replica runs in one step (all attention-DP ranks
  together). With ``attn_dp > 1`` sequences are spread over the attention-DP ranks (greedy,
  most new tokens first) and the ops returned are those of the **busiest** rank.
* MoE: every rank of the expert-parallel group sees ``tokens * top_k / ep`` routed token-expert
  pairs on average (uniform routing); ``moe_imbalance`` multiplies that for the busiest rank.
  ``m_per_group`` is the expected load of the busiest local expert under uniform routing
  (times ``moe_imbalance``).
* MLA runs non-absorbed in prefill and absorbed (MQA over latent + rope) in decode unless
  ``mla_absorb`` says otherwise.
* Identical layers share one op with ``count`` = number of layers on this pipeline stage.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workloads.accounting import dtype_bytes, param_dtype
from workloads.models import GQAConfig, ModelConfig, get_model
from workloads.op import COLLECTIVE, EMBEDDING, GEMM, GROUPED_GEMM, Op
from workloads.ops_blocks import (
    ACT_BYTES,
    KERNEL_SETS,
    RMSNORM_FLOPS_PER_ELEM,
    BlockCtx,
    attention_block,
    collective,
    dense_ffn_block,
    elementwise,
    expected_max_expert_load,
    ffn_norm,
    gemm,
    moe_block,
    residual_add,
    tp_all_reduce,
)

__all__ = [
    "ParallelismError",
    "Parallelism",
    "BatchShape",
    "step_ops",
    "summarize_ops",
    "stage_layers",
    "expected_max_expert_load",
    "MOE_LAYER_OPS",
    "moe_layer_ops",
]


#: Op-name suffixes (after the "moe." prefix) of one MoE layer's block: router, EP dispatch,
#: routed experts with their permutation, combine, shared experts (see ops_blocks.moe_block).
#: The routed experts' compute, partitioned over expert parallelism, is marked by its
#: ``Op.role`` (``OpRole.ROUTED_EXPERT``), not by these names.
MOE_LAYER_OPS = ("router", "topk", "dispatch", "experts_permute", "experts_gate_up", "experts_act", "experts_down",
                 "experts_unpermute", "experts_all_reduce", "combine", "shared_gate_up", "shared_act", "shared_down")


def moe_layer_ops(ops: Iterable[Op]) -> list[Op]:
    """The ops of ONE MoE layer out of a step's op list (each with ``count`` 1)."""
    return [replace(o, count=1) for o in ops if o.layer == "moe" and o.name.split(".", 1)[1] in MOE_LAYER_OPS]


class ParallelismError(ValueError):
    """A parallelism degree that does not fit the model (message names the factor)."""


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _valid(n: int, limit: int = 12) -> str:
    ds = _divisors(n)
    return ", ".join(map(str, ds[:limit])) + (", ..." if len(ds) > limit else "")


@dataclass(frozen=True)
class Parallelism:
    """Parallel degrees of one model replica.

    * ``tp``: tensor parallelism of dense FFNs, shared experts and the LM head; also the
      attention TP unless ``attn_tp`` is given.
    * ``attn_tp`` x ``attn_dp``: attention heads split ``attn_tp`` ways, sequences spread over
      ``attn_dp`` groups (DeepSeek-style attention DP). ``sp`` splits sequences' tokens
      (context parallelism). Devices per pipeline stage = ``attn_tp * attn_dp * sp``.
    * ``ep`` x ``moe_tp``: routed experts split ``ep`` ways, each expert's width ``moe_tp`` ways;
      must cover the stage's devices (``moe_tp`` defaults to devices / ep).
    * ``pp``: contiguous pipeline stages; ``dp``: independent replicas (no effect on one
      device's ops).
    """

    tp: int = 1
    ep: int = 1
    dp: int = 1
    pp: int = 1
    sp: int = 1
    attn_tp: int | None = None
    attn_dp: int = 1
    moe_tp: int | None = None
    redundant_experts: int = 0  # extra expert replicas (EPLB): ep divides routed + redundant

    def __post_init__(self) -> None:
        for f in ("tp", "ep", "dp", "pp", "sp", "attn_tp", "attn_dp", "moe_tp"):
            v = getattr(self, f)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ParallelismError(f"{f} must be a positive integer, got {v!r}")
        if self.stage_devices % self.ep:
            raise ParallelismError(
                f"ep={self.ep} does not divide the {self.stage_devices} devices per stage "
                f"(attn_tp x attn_dp x sp; valid: {_valid(self.stage_devices)})"
            )
        if self.stage_devices % self.tp:
            raise ParallelismError(
                f"tp={self.tp} does not divide the {self.stage_devices} devices per stage "
                f"(valid: {_valid(self.stage_devices)})"
            )
        if self.moe_tp is not None and self.ep * self.moe_tp != self.stage_devices:
            raise ParallelismError(
                f"ep x moe_tp = {self.ep} x {self.moe_tp} must equal the {self.stage_devices} devices "
                f"per stage (attn_tp x attn_dp x sp)"
            )

    @property
    def attn_tp_eff(self) -> int:
        return self.attn_tp if self.attn_tp is not None else self.tp

    @property
    def stage_devices(self) -> int:
        return self.attn_tp_eff * self.attn_dp * self.sp

    @property
    def moe_tp_eff(self) -> int:
        return self.moe_tp if self.moe_tp is not None else self.stage_devices // self.ep

    @property
    def devices(self) -> int:
        """Devices of all replicas: stage devices x pp x dp."""
        return self.stage_devices * self.pp * self.dp

    def validate_for(self, model: ModelConfig | str) -> None:
        """Raise ParallelismError naming the factor when a degree does not fit ``model``."""
        m = get_model(model)
        a = m.attention
        atp = self.attn_tp_eff
        name = "attn_tp" if self.attn_tp is not None else "tp"
        if a.num_heads % atp:
            raise ParallelismError(
                f"{name}={atp} does not divide {a.num_heads} attention heads of {m.name} (valid: {_valid(a.num_heads)})"
            )
        if isinstance(a, GQAConfig):
            kv = a.num_kv_heads
            if atp <= kv and kv % atp:
                raise ParallelismError(f"{name}={atp} does not divide {kv} KV heads of {m.name} (valid: {_valid(kv)})")
            if atp > kv and atp % kv:
                raise ParallelismError(
                    f"{name}={atp} exceeds {kv} KV heads of {m.name} and is not a multiple of it "
                    f"(KV heads are replicated when {name} > KV heads)"
                )
        if m.num_dense_layers and m.dense_intermediate_size % self.tp:
            raise ParallelismError(
                f"tp={self.tp} does not divide dense FFN width {m.dense_intermediate_size} of {m.name} "
                f"(valid: {_valid(m.dense_intermediate_size)})"
            )
        if self.pp > m.num_layers:
            raise ParallelismError(f"pp={self.pp} exceeds {m.num_layers} layers of {m.name}")
        if m.moe is None:
            if self.ep != 1:
                raise ParallelismError(f"ep={self.ep}: {m.name} is dense and has no experts (valid: 1)")
            return
        e = m.moe
        slots = e.num_routed_experts + self.redundant_experts
        if slots % self.ep:
            raise ParallelismError(
                f"ep={self.ep} does not divide {e.num_routed_experts} routed "
                + (f"+ {self.redundant_experts} redundant " if self.redundant_experts else "")
                + f"experts of {m.name} (valid: {_valid(slots)})"
            )
        if e.intermediate_size % self.moe_tp_eff:
            raise ParallelismError(
                f"moe_tp={self.moe_tp_eff} does not divide expert width {e.intermediate_size} of {m.name} "
                f"(valid: {_valid(e.intermediate_size)})"
            )
        shared = e.num_shared_experts * e.intermediate_size
        if shared and shared % self.tp:
            raise ParallelismError(
                f"tp={self.tp} does not divide shared-expert width {shared} of {m.name} (valid: {_valid(shared)})"
            )


IntOrList = int | tuple[int, ...]


class BatchShape(BaseModel):
    """One step's batch for one replica: ``num_seqs`` sequences, each with ``new_tokens``
    processed this step after ``context_tokens`` already cached (ints = uniform, tuples =
    per sequence). ``logits_for`` defaults to 'last' in prefill and 'all' in decode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phase: Literal["prefill", "decode"]
    num_seqs: int = Field(ge=0)
    new_tokens: IntOrList = 1
    context_tokens: IntOrList = 0
    logits_for: Literal["last", "all"] | None = None

    @model_validator(mode="after")
    def _check(self) -> "BatchShape":
        for f in ("new_tokens", "context_tokens"):
            v = getattr(self, f)
            vals = v if isinstance(v, tuple) else (v,)
            if isinstance(v, tuple) and len(v) != self.num_seqs:
                raise ValueError(f"{f} has {len(v)} entries but num_seqs={self.num_seqs}")
            lo = 1 if f == "new_tokens" else 0
            if any(x < lo for x in vals):
                raise ValueError(f"{f} must be >= {lo} per sequence")
        return self

    @classmethod
    def prefill(cls, num_seqs: int, seq_len: int | Sequence[int], context_tokens: int | Sequence[int] = 0,
                logits_for: str | None = None) -> "BatchShape":
        return cls(phase="prefill", num_seqs=num_seqs, new_tokens=_tup(seq_len),
                   context_tokens=_tup(context_tokens), logits_for=logits_for)

    @classmethod
    def decode(cls, num_seqs: int, context_tokens: int | Sequence[int], new_tokens: int | Sequence[int] = 1,
               logits_for: str | None = None) -> "BatchShape":
        return cls(phase="decode", num_seqs=num_seqs, new_tokens=_tup(new_tokens),
                   context_tokens=_tup(context_tokens), logits_for=logits_for)

    @property
    def new_list(self) -> tuple[int, ...]:
        v = self.new_tokens
        return v if isinstance(v, tuple) else (v,) * self.num_seqs

    @property
    def context_list(self) -> tuple[int, ...]:
        v = self.context_tokens
        return v if isinstance(v, tuple) else (v,) * self.num_seqs

    @property
    def total_new_tokens(self) -> int:
        return sum(self.new_list)

    @property
    def total_context_tokens(self) -> int:
        return sum(self.context_list)

    @property
    def logits_mode(self) -> str:
        return self.logits_for or ("last" if self.phase == "prefill" else "all")

    def split(self, parts: int) -> tuple["BatchShape", ...]:
        """Spread sequences over ``parts`` ranks: most new tokens (then context) first, each to
        the rank with the fewest (new, context) tokens so far. Rank 0 is the busiest."""
        if isinstance(self.new_tokens, int) and isinstance(self.context_tokens, int):
            # uniform sequences: the greedy spread is an even split, busiest ranks first
            base, extra = divmod(self.num_seqs, parts)
            return tuple(
                BatchShape(phase=self.phase, num_seqs=base + (1 if j < extra else 0), new_tokens=self.new_tokens,
                           context_tokens=self.context_tokens, logits_for=self.logits_for)
                for j in range(parts)
            )
        seqs = sorted(zip(self.new_list, self.context_list), reverse=True)
        bins: list[list[tuple[int, int]]] = [[] for _ in range(parts)]
        load = [(0, 0)] * parts
        for n, c in seqs:
            i = min(range(parts), key=lambda j: load[j])
            bins[i].append((n, c))
            load[i] = (load[i][0] + n, load[i][1] + c)
        order = sorted(range(parts), key=lambda j: load[j], reverse=True)
        return tuple(
            BatchShape(phase=self.phase, num_seqs=len(bins[j]), new_tokens=tuple(n for n, _ in bins[j]),
                       context_tokens=tuple(c for _, c in bins[j]), logits_for=self.logits_for)
            for j in order
        )


def _tup(v):
    return v if isinstance(v, int) else tuple(int(x) for x in v)


def stage_layers(model: ModelConfig | str, pp: int, stage: int) -> tuple[int, int]:
    """(dense layers, MoE layers) on pipeline ``stage`` of ``pp`` contiguous stages; the
    first ``num_layers % pp`` stages take one extra layer."""
    m = get_model(model)
    if not 0 <= stage < pp:
        raise ParallelismError(f"stage={stage} out of range for pp={pp} (valid: 0..{pp - 1})")
    base, extra = divmod(m.num_layers, pp)
    start = stage * base + min(stage, extra)
    end = start + base + (1 if stage < extra else 0)
    dense = max(0, min(end, m.num_dense_layers) - start)
    return dense, (end - start) - dense


def step_ops(
    model: ModelConfig | str,
    batch: BatchShape,
    parallelism: Parallelism | None = None,
    dtype: str = "bf16",
    moe_imbalance: float = 1.0,
    *,
    kv_dtype: str = "bf16",
    include_mtp: bool = False,
    mla_absorb: bool | None = None,
    stage: int = 0,
    dispatch_dtype: str | None = None,
    combine_dtype: str = "bf16",
    kernels: str = "fused",
) -> list[Op]:
    """Operators one device runs for one step of ``batch`` (see module docstring).

    ``dtype``: GEMM weight/input dtype (router, embedding, LM head stay BF16 below 16 bits).
    ``kv_dtype``: KV-cache dtype ('fp8' = FlashMLA layout for MLA). ``include_mtp`` appends the
    MTP modules on the last stage. ``stage`` picks the pipeline stage when pp > 1.
    ``dispatch_dtype`` defaults to ``dtype``; combine is BF16. ``kernels``: a kernel set of
    ``workloads.kernel_sets`` - "fused" (a serving engine's kernels) or "eager" (the layer in plain
    torch ops); it decides the glue ops and names each attention / expert op's ``meta["impl"]``.
    """
    m = get_model(model)
    par = parallelism or Parallelism()
    par.validate_for(m)
    for d in (dtype, kv_dtype, combine_dtype, dispatch_dtype or dtype):
        dtype_bytes(d)
    if kernels not in KERNEL_SETS:
        raise ValueError(f"kernels {kernels!r} unknown (valid: {', '.join(KERNEL_SETS)})")
    if moe_imbalance < 1.0:
        raise ValueError(f"moe_imbalance must be >= 1.0 (busiest rank / mean), got {moe_imbalance}")
    dense_n, moe_n = stage_layers(m, par.pp, stage)
    first, last = stage == 0, stage == par.pp - 1
    local = batch.split(par.attn_dp)[0] if par.attn_dp > 1 else batch
    if local.num_seqs == 0:
        return []
    sp = par.sp
    t_rank = local.total_new_tokens
    tokens = math.ceil(t_rank / sp) if batch.phase == "prefill" else t_rank
    ctx = BlockCtx(
        model=m, phase=batch.phase, dtype=dtype.lower(), kv_dtype=kv_dtype.lower(),
        new=local.new_list, ctx=local.context_list, tokens=tokens,
        attn_tp=par.attn_tp_eff, tp=par.tp, ep=par.ep, moe_tp=par.moe_tp_eff, sp=sp,
        absorb=(batch.phase == "decode") if mla_absorb is None else bool(mla_absorb and m.is_mla),
        moe_tokens_all=batch.total_new_tokens, moe_imbalance=float(moe_imbalance),
        dispatch_dtype=(dispatch_dtype or dtype).lower(), combine_dtype=combine_dtype.lower(),
        expert_slots=(m.moe.num_routed_experts + par.redundant_experts) if m.moe else 0,
        kernels=kernels,
    )
    h = m.hidden_size
    ops: list[Op] = []
    if first:
        ops += _embedding(ctx, "embed", "embed.")
    if dense_n:
        ops += _layer(ctx, "dense", dense_n, "dense.")
    if moe_n:
        ops += _layer(ctx, "moe", moe_n, "moe.")
    if not last:
        ops.append(collective("pp.send", "send_recv", 2, tokens * h * ACT_BYTES, layer="pp", count=1))
        return ops
    n_logits = local.num_seqs if batch.logits_mode == "last" else tokens
    ops += _head(ctx, n_logits, "head", "head.")
    if include_mtp and m.num_mtp_modules:
        n = m.num_mtp_modules
        ops += _embedding(ctx, "mtp", "mtp.", count=n)
        ops.append(elementwise("mtp.enorm_hnorm", 2 * tokens * h, layer="mtp", count=n,
                               flops_per_elem=RMSNORM_FLOPS_PER_ELEM))
        ops.append(gemm("mtp.eh_proj", tokens, h, 2 * h, dtype=ctx.dtype, layer="mtp", count=n))
        ops += _layer(ctx, "moe" if m.is_moe else "dense", n, "mtp.", layer="mtp")
        ops += _head(ctx, n_logits, "mtp", "mtp.head.", count=n)
    return ops


def _embedding(c: BlockCtx, layer: str, p: str, count: int = 1) -> list[Op]:
    h, T = c.model.hidden_size, c.tokens
    ops = [Op(f"{p}embedding", EMBEDDING, {"tokens": T, "hidden": h}, 0.0, T * h * ACT_BYTES,
              T * h * ACT_BYTES, dtype=param_dtype("embedding", c.dtype), count=count, layer=layer,
              meta={"weight_bytes": 0.0, "note": "row lookup; table not a GEMM weight"})]
    if c.tp > 1:  # vocab-parallel embedding
        ops.append(collective(f"{p}embed_all_reduce", "all_reduce", c.tp, T * h * ACT_BYTES, layer=layer, count=count))
    return ops


def _layer(c: BlockCtx, kind: str, count: int, p: str, layer: str | None = None) -> list[Op]:
    layer = layer or kind
    ops = attention_block(c, layer, count, p)
    ops.append(ffn_norm(c, layer, count, p))
    if kind == "dense":
        ops += dense_ffn_block(c, layer, count, p, c.model.dense_intermediate_size)
    else:
        ops += moe_block(c, layer, count, p)
    ops += tp_all_reduce(c, layer, count, p)
    if c.eager:
        ops.append(residual_add(c, f"{p}ffn_residual", layer, count))
    return ops


def _head(c: BlockCtx, n_logits: int, layer: str, p: str, count: int = 1) -> list[Op]:
    m, h = c.model, c.model.hidden_size
    v_local = math.ceil(m.vocab_size / c.tp)  # vocab padded to a multiple of tp
    ops = [
        elementwise(f"{p}final_norm", n_logits * h, layer=layer, count=count, flops_per_elem=RMSNORM_FLOPS_PER_ELEM,
                    meta={"width": h}),
        gemm(f"{p}lm_head", n_logits, v_local, h, dtype="bf16", w_dtype=param_dtype("lm_head", c.dtype),
             layer=layer, count=count),
    ]
    if c.tp > 1:
        ops.append(collective(f"{p}logits_all_gather", "all_gather", c.tp, n_logits * v_local * ACT_BYTES,
                              layer=layer, count=count))
    return ops


def summarize_ops(ops: Iterable[Op]) -> dict:
    """Totals over ops (each multiplied by its ``count``): FLOPs, bytes, by kind and by layer."""
    tot = defaultdict(float)
    by_kind: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_layer: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    n_ops = 0
    for op in ops:
        n_ops += 1
        c = op.count
        row = {"flops": op.flops * c, "bytes_read": op.bytes_read * c, "bytes_written": op.bytes_written * c,
               "bytes": op.bytes_moved * c, "comm_bytes_per_rank": op.bytes_per_rank * c if op.kind == COLLECTIVE else 0.0,
               "weight_bytes": float(op.meta.get("weight_bytes", 0.0)) * c
               if op.kind in (GEMM, GROUPED_GEMM) else 0.0,
               "kv_read_bytes": float(op.meta.get("kv_read_bytes", 0.0)) * c, "ops": c}
        for k, v in row.items():
            tot[k] += v
            by_kind[op.kind][k] += v
            by_layer[op.layer][k] += v
    return {
        "total_flops": tot["flops"],
        "total_bytes_read": tot["bytes_read"],
        "total_bytes_written": tot["bytes_written"],
        "total_bytes": tot["bytes"],
        "comm_bytes_per_rank": tot["comm_bytes_per_rank"],
        "weight_bytes": tot["weight_bytes"],
        "kv_read_bytes": tot["kv_read_bytes"],
        "num_ops": n_ops,
        "num_op_instances": int(tot["ops"]),
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "by_layer": {k: dict(v) for k, v in by_layer.items()},
    }
