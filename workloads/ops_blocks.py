"""Operator builders for one transformer block on one device (used by ``workloads.ops``).

Each builder returns ``Op`` records with FLOPs and bytes for the rank it describes. The
step-level decisions (which rank, how many tokens, which layers) are made in ``workloads.ops``;
this module only turns a resolved :class:`BlockCtx` into operators. Shapes and weight sizes
follow ``workloads.accounting`` so the two can be checked against each other.

Byte conventions: GEMM ``bytes_read`` = weights (those actually touched) + input activations;
``bytes_written`` = output activations (BF16). GEMM inputs are in the GEMM dtype (FP8 GEMMs
quantize their input), every other activation is BF16. Under the eager kernel set that
quantisation is its own kernel chain (``quant_ops``: one per distinct BF16 input of FP8 GEMMs, timed
by the measured elementwise ``quant_fp8``); a fused set folds it into neighbouring kernels. ``meta['weight_bytes']`` is the
resident weight the op owns on this rank (used for memory and consistency checks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Callable

from workloads.accounting import (
    ACT_BYTES,
    attention_flops_per_pair,
    causal_pairs_sum,
    dtype_bytes,
    kv_cache_bytes_per_token_per_layer,
    param_dtype,
)
from workloads.kernel_sets import KERNEL_SETS as _KERNEL_SETS
from workloads.kernel_sets import ROWWISE_FP8_GEMM, KernelSet, kernel_set
from workloads.models import MLAConfig, ModelConfig
from workloads.moe_routing import binom_cdf, expected_active_experts, tokens_per_active_expert
from workloads.op import (
    ATTN_DECODE,
    ATTN_PREFILL,
    COLLECTIVE,
    ELEMENTWISE,
    GEMM,
    GROUPED_GEMM,
    MLA_DECODE,
    Op,
    OpRole,
)

#: Which kernels run the memory-bound glue (``KernelSet.glue``; the other families are named by the
#: set too, see ``workloads.kernel_sets``):
#: * "fused" - a serving engine's kernels: residual add fused into the RMSNorm, one rotary op
#:   over q and k, one KV-cache write, a fused top-k, and the routed outputs gathered back per
#:   token (the weighted sum happens in the combine). No fused rotary or SiLU-and-mul kernel is
#:   measured here, so those two keep the measured torch ``rotary`` and ``silu_mul`` times
#:   (an upper bound for a fused kernel); the others are timed at copy bandwidth.
#: * "eager" - the same layer written in plain torch ops, as reference implementations do:
#:   RMSNorm and residual add as separate kernels, rotate-half RoPE (several kernels, measured
#:   as ``rotary``), ``silu(a) * b`` (measured ``silu_mul``), K and V written by two copies,
#:   ``topk(sigmoid(logits.float()))`` (``moe_topk``) and ``zero_ + index_add_(ys * w)``
#:   (``moe_scatter``, bf16 atomics) for the routed outputs; MLA's split/concat/copy kernels
#:   (``mla_glue``: latent norm of a strided view, RoPE of q and of k apart, two cache copies,
#:   ``cat`` of q and k in prefill, the latent query ``cat`` and the head merge in decode).
KERNEL_SETS = tuple(_KERNEL_SETS)
# FLOPs per element charged to memory-bound ops (they are timed by bytes; kept for totals).
RMSNORM_FLOPS_PER_ELEM = 4.0
SWIGLU_FLOPS_PER_ELEM = 5.0
ROPE_FLOPS_PER_ELEM = 3.0


class _step_property:
    """``functools.cached_property`` without its lock: Python 3.11's takes an ``RLock`` on every
    first read, and a step's ``BlockCtx`` is read once per property (the same value, computed
    once, kept in the instance's ``__dict__``; a context is never shared between threads)."""

    def __init__(self, func: Callable):
        self.func, self.name, self.__doc__ = func, func.__name__, func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.func(obj)
        return value


@dataclass(frozen=True)
class BlockCtx:
    """Everything a block builder needs, already resolved for one rank.

    ``new``/``ctx`` are the per-sequence new and cached token counts of the sequences this
    rank's attention serves; ``tokens`` is the number of token rows its GEMMs process (after
    sequence parallelism). ``moe_tokens_all`` is the number of tokens entering the MoE layer
    over the whole expert-parallel group.
    """

    model: ModelConfig
    phase: str
    dtype: str
    kv_dtype: str
    new: tuple[int, ...]
    ctx: tuple[int, ...]
    tokens: int
    attn_tp: int
    tp: int
    ep: int
    moe_tp: int
    sp: int
    absorb: bool
    moe_tokens_all: int
    moe_imbalance: float
    dispatch_dtype: str
    combine_dtype: str
    expert_slots: int = 0  # routed + redundant expert replicas over the EP group
    kernels: str = "fused"  # a ``workloads.kernel_sets`` name: "fused" (serving engine) or "eager" (plain torch)
    #: blocks already built (``block``) and the key of this context's per-instance fields in it
    memo: "BlockMemo | None" = field(default=None, compare=False, repr=False)
    memo_id: int = field(default=0, compare=False, repr=False)

    @classmethod
    def instance_fields(cls, memo: "BlockMemo | None", **fields) -> dict:
        """The attributes every step of one instance shares: ``fields`` (every field but
        ``STEP_FIELDS``), the memo with this context's id in it, and the cached properties that
        read only those (``kernel_set``, ``eager``, ``kv_local``); ``for_step`` adds a step's."""
        proto = cls(phase="prefill", new=(), ctx=(), tokens=0, absorb=False, moe_tokens_all=0, **fields)
        proto.with_memo(memo)
        base = {f: getattr(proto, f) for f in _INSTANCE_FIELDS}
        base.update(memo=proto.memo, memo_id=proto.memo_id, kernel_set=proto.kernel_set, eager=proto.eager,
                    kv_local=proto.kv_local, flops_per_pair=proto.flops_per_pair)
        return base

    @classmethod
    def for_step(cls, base: dict, **step) -> "BlockCtx":
        """The context of one step: ``base`` (``instance_fields``) with the step's fields
        (``STEP_FIELDS``), equal to building it field by field, without the generated
        ``__init__`` setting 21 frozen fields one at a time."""
        c = object.__new__(cls)
        d = c.__dict__
        d.update(base)
        d.update(step)
        return c

    def with_memo(self, memo: "BlockMemo | None") -> "BlockCtx":
        """This context building its blocks through ``memo``."""
        if memo is not None:  # a context just built by its one caller: set in place, not copied
            object.__setattr__(self, "memo_id", memo.context_id(self))
            object.__setattr__(self, "memo", memo)
        return self

    @_step_property
    def pair_sum(self) -> float:
        """``sum(attention_pairs(n, x) for each sequence)``: the causal (query, key) pairs of this
        rank's sequences, computed once per step (every layer's attention reads it), exactly as
        that float sum (``workloads.accounting.causal_pairs_sum``)."""
        return causal_pairs_sum(self.new, self.ctx)

    @_step_property
    def new_sum(self) -> int:
        """New tokens of all sequences (``sum(new)``)."""
        return sum(self.new)

    @_step_property
    def ctx_sum(self) -> int:
        """Cached tokens of all sequences (``sum(ctx)``)."""
        return sum(self.ctx)

    @_step_property
    def key_sum(self) -> int:
        """Keys all sequences attend to (new + cached tokens)."""
        return self.new_sum + self.ctx_sum

    @_step_property
    def varlen(self) -> dict:
        """The per-sequence lengths an attention op's meta carries when they differ."""
        if _all_equal(self.new) and _all_equal(self.ctx):
            return {}
        # with their causal pairs, which the lookup's unequal-sequence factor reads instead of
        # summing them again (``calibration.chunk_lookup.varlen_pairs_factor``)
        return {"seq_lens": tuple(self.new), "context_lens": tuple(self.ctx), "causal_pairs": self.pair_sum}

    @_step_property
    def kv_local(self) -> float:
        """``kv_bytes_local``: KV-cache bytes per token per layer on this rank."""
        return kv_bytes_local(self)

    @_step_property
    def flops_per_pair(self) -> float:
        """``attention_flops_per_pair(model)`` (non-absorbed) over all heads, read by every step's attention."""
        return attention_flops_per_pair(self.model)

    @_step_property
    def kernel_set(self) -> KernelSet:
        return kernel_set(self.kernels)

    @_step_property
    def eager(self) -> bool:
        """Glue kernels as plain torch ops (see KERNEL_SETS)."""
        return self.kernel_set.glue == "eager"


def _all_equal(values: tuple) -> bool:
    """``len(set(values)) <= 1`` without building the set."""
    return not values or values.count(values[0]) == len(values)


#: the BlockCtx fields that vary from step to step; a block's memo key names those it reads, and
#: ``BlockMemo.context_id`` stands for all the others (fixed by the instance)
STEP_FIELDS = frozenset({"phase", "new", "ctx", "tokens", "absorb", "moe_tokens_all", "memo", "memo_id"})
_INSTANCE_FIELDS = tuple(f.name for f in fields(BlockCtx) if f.name not in STEP_FIELDS)


class BlockMemo:
    """Op lists of the blocks a step builds, by what they depend on, so that a new batch shape
    rebuilds only the blocks whose inputs changed (a decode step's projections and MoE layers
    do not depend on the context length). An op list comes back as the same ``Op`` objects
    (frozen), which lets a cost model reuse their costs too. Bounded: emptied when full.
    One per caller that builds many steps (``simulator.instance.InstanceCost``); not shared
    between threads."""

    __slots__ = ("max_entries", "max_contexts", "_blocks", "_contexts", "_prepared")

    def __init__(self, max_entries: int = 8192, max_contexts: int = 64):
        """``max_contexts``: distinct per-instance contexts named before the ids restart (a memo
        several instances share, as the planner's ``Evaluator`` does, names one per instance)."""
        self.max_entries = max_entries
        self.max_contexts = max_contexts
        self._blocks: dict[tuple, tuple[Op, ...]] = {}
        self._contexts: dict[tuple, int] = {}
        #: ``workloads.ops.step_ops``'s per-instance preparation by argument set (``prepared``)
        self._prepared: dict[tuple, tuple] = {}

    def prepared(self, key: tuple, keep: tuple, prepare: Callable[..., tuple], *args) -> tuple:
        """``prepare(*args)``, kept by ``key``. ``key`` may name objects by ``id``: ``keep``
        holds them (kept alive with the entry, so no other object takes their ids while it
        lives) and a hit must find the same ones. Emptied when the context ids restart (an
        entry holds its context's id) and when full."""
        hit = self._prepared.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], keep)):
            return hit[1]
        value = prepare(*args)
        if len(self._prepared) >= self.max_contexts:
            self._prepared.clear()
        self._prepared[key] = (keep, value)
        return value

    def context_id(self, c: BlockCtx) -> int:
        """A small int naming ``c``'s per-instance fields (everything but ``STEP_FIELDS``)."""
        key = tuple(getattr(c, f) for f in _INSTANCE_FIELDS)
        cid = self._contexts.get(key)
        if cid is None:
            if len(self._contexts) >= self.max_contexts:  # ids restart: the blocks keyed by the old ones go too
                self._contexts.clear()
                self._blocks.clear()
                self._prepared.clear()
            cid = self._contexts[key] = len(self._contexts)
        return cid

    def clear(self) -> None:
        """Forget everything (a prepared context refers back to this memo: a memo let go of with
        entries in it waits for a full collection of the garbage collector)."""
        self._blocks.clear()
        self._contexts.clear()
        self._prepared.clear()

    def get(self, key: tuple, build: Callable[..., list[Op]], *args) -> tuple[Op, ...]:
        hit = self._blocks.get(key)
        if hit is None:
            hit = tuple(build(*args))  # built first: a build may fill the memo with the blocks it reads
            if len(self._blocks) >= self.max_entries:
                self._blocks.clear()
            self._blocks[key] = hit
        return hit


def block(c: BlockCtx, key: tuple, build: Callable[..., list[Op]], *args) -> tuple[Op, ...] | list[Op]:
    """``build(*args)``, the op list of one block, through ``c.memo`` when there is one.
    ``key`` must name every step field (``STEP_FIELDS``) the block reads, and its layer,
    count and name prefix."""
    if c.memo is None:
        return build(*args)
    return c.memo.get((c.memo_id, *key), build, *args)


def gemm(name, m, n, k, *, dtype, layer, count, batch=1, w_dtype=None, bias=0, meta=None, impl=None) -> Op:
    """A (batched) GEMM ``[batch, m, k] x [batch, k, n]``; ``bias`` extra weight elements; ``impl``:
    the implementation a profile times apart (``gemm_impl``), named in ``meta["impl"]``."""
    w_dtype = w_dtype or dtype
    if impl is not None:
        meta = {"impl": impl, **(meta or {})}
    d_bytes = dtype_bytes(dtype)
    w_bytes = batch * n * k * dtype_bytes(w_dtype)
    if bias:
        w_bytes += bias * dtype_bytes(param_dtype("bias", dtype))
    a_bytes = d_bytes if d_bytes < ACT_BYTES else ACT_BYTES
    return Op(
        name=name,
        kind=GEMM,
        shape={"m": int(m), "n": int(n), "k": int(k), "batch": int(batch)},
        flops=2.0 * batch * m * n * k,
        bytes_read=w_bytes + batch * m * k * a_bytes,
        bytes_written=batch * m * n * ACT_BYTES,
        dtype=w_dtype,
        count=count,
        layer=layer,
        meta={"weight_bytes": w_bytes, **(meta or {})},
    )


def _memory_op_kind(name: str) -> str:
    """Which measured memory-bound implementation an op is (profile tables key on it)."""
    if name.endswith("norm"):
        return "rmsnorm"
    if name.endswith("rope"):
        return "rotary"
    if name.endswith("_act"):
        return "silu_mul"
    return "copy"


def elementwise(name, elements, *, layer, count, reads=1.0, writes=1.0, flops_per_elem=1.0, extra_read=0.0,
                extra_written=0.0, meta=None, role=OpRole.COMMON) -> Op:
    """A memory-bound op over ``elements`` BF16 values (``reads``/``writes`` tensors of that size,
    plus ``extra_read``/``extra_written`` bytes in other layouts, e.g. the KV cache)."""
    meta = {"op": _memory_op_kind(name), **(meta or {})}
    return Op(
        name=name,
        kind=ELEMENTWISE,
        shape={"elements": int(elements)},
        flops=flops_per_elem * elements,
        bytes_read=reads * elements * ACT_BYTES + extra_read,
        bytes_written=writes * elements * ACT_BYTES + extra_written,
        dtype="bf16",
        count=count,
        layer=layer,
        meta=meta,
        role=role,
    )


def collective(name, kind, group, nbytes, *, layer, count, meta=None) -> Op:
    """A collective on the comm stream; ``nbytes`` is what each rank contributes."""
    return Op(
        name=name,
        kind=COLLECTIVE,
        shape={},
        flops=0.0,
        bytes_read=float(nbytes),
        bytes_written=float(nbytes),
        dtype="bf16",
        count=count,
        layer=layer,
        stream="comm",
        collective=kind,
        group_size=int(group),
        bytes_per_rank=float(nbytes),
        meta=dict(meta or {}),
    )


def _mean(xs) -> int:
    return _mean_of(sum(xs), len(xs))


def _mean_of(total: int, n: int) -> int:
    """``_mean`` of ``n`` values summing to ``total``."""
    return int(math.ceil(total / n)) if n else 0


def kv_heads_local(model: ModelConfig, attn_tp: int) -> int:
    """KV heads held per rank: ``kv/attn_tp``, or 1 (replicated) when attn_tp > kv heads."""
    a = model.attention
    if isinstance(a, MLAConfig):
        return 1  # one shared latent, replicated on every attention-TP rank
    return max(1, a.num_kv_heads // attn_tp)


def kv_bytes_local(c: BlockCtx) -> float:
    """KV-cache bytes per token per layer held on this rank."""
    full = kv_cache_bytes_per_token_per_layer(c.model, c.kv_dtype)
    a = c.model.attention
    if isinstance(a, MLAConfig):
        return full
    return full * kv_heads_local(c.model, c.attn_tp) / a.num_kv_heads


def attention_block(c: BlockCtx, layer: str, count: int, p: str) -> list[Op]:
    """Norm, projections, RoPE, KV write, attention, output projection, TP all-reduce.

    Built in three parts: the input side and the output side depend on the token count only
    and are memoised by it (``BlockCtx.memo``); the attention itself depends on every
    sequence's new and cached tokens, and is built afresh (a new shape rarely repeats it, and
    a memo of shapes that never come back only feeds the garbage collector)."""
    pre, post = attention_sides(c, layer, count, p)
    return [*pre, *attention_core(c, layer, count, p), *post]


def attention_sides(c: BlockCtx, layer: str, count: int, p: str) -> tuple:
    """``attention_block``'s input side and output side (memoised by the token count), without its core."""
    pre = block(c, ("attn_pre", layer, count, p, c.phase, c.tokens), _attention_in, c, layer, count, p)
    post = block(c, ("attn_post", layer, count, p, c.tokens), _attention_out, c, layer, count, p)
    return pre, post


def _attention_in(c: BlockCtx, layer: str, count: int, p: str) -> list[Op]:
    """Pre-norm, the Q/K/V projections, RoPE and the KV-cache write of ``c.tokens`` rows."""
    m, a, h, T = c.model, c.model.attention, c.model.hidden_size, c.tokens
    H = a.num_heads // c.attn_tp
    ops = [_norm(c, f"{p}attn_norm", layer, count), *quant_ops(c, f"{p}attn_in_quant", T, h, layer, count)]
    kv_local = c.kv_local
    kw = dict(dtype=c.dtype, layer=layer, count=count, impl=gemm_impl(c))
    if isinstance(a, MLAConfig):
        r, lat = a.qk_rope_head_dim, a.kv_lora_rank
        if a.q_lora_rank:
            ops.append(gemm(f"{p}qkv_a_proj", T, a.q_lora_rank + lat + r, h, **kw,
                            meta={"fuses": "wq_a+wkv_a"}))
            ops.append(elementwise(f"{p}q_a_norm", T * a.q_lora_rank, layer=layer, count=count,
                                   flops_per_elem=RMSNORM_FLOPS_PER_ELEM))
            ops += quant_ops(c, f"{p}q_b_quant", T, a.q_lora_rank, layer, count)
            ops.append(gemm(f"{p}q_b_proj", T, H * a.qk_head_dim, a.q_lora_rank, **kw))
        else:
            ops.append(gemm(f"{p}q_proj", T, H * a.qk_head_dim, h, **kw))
            ops.append(gemm(f"{p}kv_a_proj", T, lat + r, h, **kw))
        if c.eager:
            ops += _mla_eager_glue(c, layer, count, p, H, kv_local)
        else:
            ops.append(elementwise(f"{p}kv_a_norm", T * lat, layer=layer, count=count,
                                   flops_per_elem=RMSNORM_FLOPS_PER_ELEM))
            ops.append(_rope(c, f"{p}rope", T * (H + 1) * r, layer, count))
            ops.append(elementwise(f"{p}kv_cache_write", T * (lat + r), layer=layer, count=count, writes=0,
                                   flops_per_elem=0.0, extra_written=T * kv_local,
                                   meta={"kv_write_bytes": T * kv_local}))
        return ops
    Hkv = kv_heads_local(m, c.attn_tp)
    d = a.head_dim
    ops.append(gemm(f"{p}qkv_proj", T, (H + 2 * Hkv) * d, h, **kw,
                    bias=(H + 2 * Hkv) * d if a.qkv_bias else 0))
    if c.eager:  # q and k rotated by separate chains of kernels; K and V written by two copies
        ops.append(_rope(c, f"{p}rope", T * H * d, layer, count))
        ops.append(_rope(c, f"{p}rope_k", T * Hkv * d, layer, count))
        for part in ("k", "v"):
            ops.append(elementwise(f"{p}kv_cache_write_{part}", T * Hkv * d, layer=layer, count=count,
                                   writes=0, flops_per_elem=0.0, extra_written=T * kv_local / 2,
                                   meta={"kv_write_bytes": T * kv_local / 2, "op": "copy"}))
    else:
        ops.append(_rope(c, f"{p}rope", T * (H + Hkv) * d, layer, count))
        ops.append(elementwise(f"{p}kv_cache_write", T * 2 * Hkv * d, layer=layer, count=count, writes=0,
                               flops_per_elem=0.0, extra_written=T * kv_local,
                               meta={"kv_write_bytes": T * kv_local}))
    return ops


def attention_core(c: BlockCtx, layer: str, count: int, p: str) -> list[Op]:
    """The attention over every sequence's keys (with MLA's absorption or decompression GEMMs)
    and the sequence-parallel exchange."""
    m, a, T = c.model, c.model.attention, c.tokens
    H = a.num_heads // c.attn_tp
    kv_local = c.kv_local
    pairs = c.pair_sum / c.sp
    if isinstance(a, MLAConfig):
        if c.absorb:
            return _mla_absorbed(c, layer, count, p, H, pairs, kv_local)
        return _mla_prefill(c, layer, count, p, H, pairs, kv_local)
    Hkv = kv_heads_local(m, c.attn_tp)
    d = a.head_dim
    flops = c.flops_per_pair / c.attn_tp * pairs
    q_bytes, o_bytes = T * H * d * ACT_BYTES, T * H * d * ACT_BYTES
    if c.phase == "decode":
        kv_read = c.key_sum * kv_local / c.sp
        ops = [Op(f"{p}attn", ATTN_DECODE,
                  {"batch": len(c.new), "context": _mean_of(c.key_sum, len(c.new)), "heads_q": H, "heads_kv": Hkv,
                   "head_dim_qk": d, "head_dim_v": d},
                  flops, q_bytes + kv_read, o_bytes, dtype=_attn_dtype(c), count=count, layer=layer,
                  meta={"kv_read_bytes": kv_read, "q_per_seq": _mean_of(c.new_sum, len(c.new)),
                        "impl": c.kernel_set.attn_decode})]
    else:
        kv_read = c.ctx_sum * kv_local / c.sp
        fresh = c.new_sum * 2 * Hkv * d * ACT_BYTES / c.sp
        ops = [Op(f"{p}attn", ATTN_PREFILL,
                  {"batch": len(c.new), "seq": _mean_of(c.new_sum, len(c.new)), "heads_q": H, "heads_kv": Hkv,
                   "head_dim_qk": d, "head_dim_v": d, "causal": True, "context": _mean_of(c.ctx_sum, len(c.ctx))},
                  flops, q_bytes + kv_read + fresh, o_bytes, dtype="bf16", count=count, layer=layer,
                  meta={"kv_read_bytes": kv_read, **c.varlen})]
    return ops + _sp_kv_gather(c, layer, count, p, kv_local)


def _attention_out(c: BlockCtx, layer: str, count: int, p: str) -> list[Op]:
    """Output projection, the attention-TP all-reduce and (eager kernels) the residual add."""
    a, h, T = c.model.attention, c.model.hidden_size, c.tokens
    H = a.num_heads // c.attn_tp
    v_width = H * (a.v_head_dim if isinstance(a, MLAConfig) else a.head_dim)
    ops = [*quant_ops(c, f"{p}o_quant", T, v_width, layer, count),
           gemm(f"{p}o_proj", T, h, v_width, dtype=c.dtype, layer=layer, count=count, impl=gemm_impl(c))]
    if c.attn_tp > 1:
        ops.append(collective(f"{p}attn_all_reduce", "all_reduce", c.attn_tp, T * h * ACT_BYTES,
                              layer=layer, count=count))
    if c.eager:
        ops.append(residual_add(c, f"{p}attn_residual", layer, count))
    return ops


def _norm(c: BlockCtx, name: str, layer: str, count: int) -> Op:
    """Pre-norm of the hidden state: fused with the residual add, or a plain RMSNorm."""
    if c.eager:
        return elementwise(name, c.tokens * c.model.hidden_size, layer=layer, count=count,
                           flops_per_elem=RMSNORM_FLOPS_PER_ELEM, meta={"width": c.model.hidden_size})
    return elementwise(name, c.tokens * c.model.hidden_size, layer=layer, count=count, reads=2, writes=2,
                       flops_per_elem=RMSNORM_FLOPS_PER_ELEM, meta={"fused": "residual_add+rmsnorm"})


def residual_add(c: BlockCtx, name: str, layer: str, count: int) -> Op:
    """``x = x + f(x)`` as its own kernel (eager kernels only; fused into the next norm otherwise)."""
    return elementwise(name, c.tokens * c.model.hidden_size, layer=layer, count=count, reads=2,
                       meta={"op": "add"})


def _rope(c: BlockCtx, name: str, elements: int, layer: str, count: int) -> Op:
    """Rotary embedding over ``elements`` values: rotate-half in torch ops, or one fused kernel.

    Eager prefill applies it to ``[B, S, H, D]`` views with cos/sin broadcast over the batch
    (measured as ``rotary_bshd``); eager decode to ``[B, H, D]`` rows (``rotary``)."""
    kind = "rotary_bshd" if c.eager and c.phase == "prefill" else "rotary"
    return elementwise(name, elements, layer=layer, count=count, flops_per_elem=ROPE_FLOPS_PER_ELEM,
                       meta={"op": kind})


#: FLOPs per element of a per-row quantisation: |x|, the running max, the divide by the scale
QUANT_FLOPS_PER_ELEM = 3.0


def gemm_impl(c: BlockCtx) -> str | None:
    """The FP8 GEMM implementation of ``c``'s kernel set when a profile times it from a table of
    its own (the eager set's rowwise-scaled ``torch._scaled_mm``), else None (nothing named)."""
    impl = c.kernel_set.gemm_fp8
    return impl if impl == ROWWISE_FP8_GEMM and dtype_bytes(c.dtype) == 1 else None


def quant_ops(c: BlockCtx, name: str, rows: int, width: int, layer: str, count: int,
           role: OpRole = OpRole.COMMON) -> list[Op]:
    """The per-row FP8 quantisation of a BF16 ``rows x width`` activation that FP8 GEMMs read,
    as plain torch runs it (|x|, row amax, fp32 scale, divide, cast: the elementwise ``quant_fp8``
    the H200 profile measures): reads the BF16 values, writes e4m3 values and one fp32 scale per
    row. Only under the eager kernel set with FP8 GEMMs (nothing otherwise)."""
    if not c.eager or dtype_bytes(c.dtype) != 1:
        return []
    return [elementwise(name, rows * width, layer=layer, count=count, reads=1.0, writes=0.5,
                        extra_written=4.0 * rows, flops_per_elem=QUANT_FLOPS_PER_ELEM, meta={"op": "quant_fp8"},
                        role=role)]


def _act(name: str, elements: int, layer: str, count: int, role: OpRole = OpRole.COMMON) -> Op:
    """SwiGLU activation ``silu(gate) * up``, timed as the measured torch ``silu_mul`` in both sets."""
    return elementwise(name, elements, layer=layer, count=count, reads=2, flops_per_elem=SWIGLU_FLOPS_PER_ELEM,
                       role=role)


def _attn_dtype(c: BlockCtx) -> str:
    return "fp8" if c.kv_dtype.lower() == "fp8" else "bf16"


def _sp_kv_gather(c: BlockCtx, layer, count, p, kv_local) -> list[Op]:
    if c.sp <= 1:
        return []
    if c.phase == "decode":  # context split across sp ranks: combine partial outputs
        a = c.model.attention
        dv = a.kv_lora_rank if (c.absorb and isinstance(a, MLAConfig)) else a.v_head_dim
        H = a.num_heads // c.attn_tp
        return [collective(f"{p}sp_out_gather", "all_gather", c.sp, c.tokens * H * dv * ACT_BYTES,
                           layer=layer, count=count)]
    return [collective(f"{p}sp_kv_gather", "all_gather", c.sp, c.tokens * kv_local, layer=layer, count=count)]


def _glue_bytes(glue: str, a: MLAConfig, tokens: int, heads: int) -> float:
    """Bytes one MLA glue kernel moves (read + written) as ``calibration.bench.mla_glue`` counts
    them (a broadcast input read once, the cos/sin tables of RoPE included)."""
    nope, rope, lat, v = a.qk_nope_head_dim, a.qk_rope_head_dim, a.kv_lora_rank, a.v_head_dim
    T, H = tokens, heads
    elems = {"assemble_q": 2 * T * H * (nope + rope),
             "assemble_k": T * H * nope + T * rope + T * H * (nope + rope),
             "rope_q": 2 * T * H * rope + 2 * T * rope, "rope_k": 4 * T * rope,
             "latent_norm": 2 * T * lat, "write_cache": 2 * T * (lat + rope),
             "latent_query": 2 * T * H * (lat + rope), "merge_heads": 2 * T * H * v}[glue]
    return elems * ACT_BYTES


#: MLA glue kernels applied per head (the others act once per token on the shared latent)
_PER_HEAD_GLUE = ("assemble_q", "assemble_k", "rope_q", "latent_query", "merge_heads")


def mla_glue(c: BlockCtx, name: str, glue: str, layer: str, count: int, heads: int, meta: dict | None = None) -> Op:
    """One of MLA's split/concat/copy kernels as plain torch runs it (``calibration.groundtruth.mla``
    defines them, ``calibration.bench.mla_glue`` times them alone): ``glue`` at ``c.tokens`` rows
    of ``heads`` heads (1 for the per-token ones). Timed by the profile's ``mla_glue_bf16`` table,
    else as a copy of its bytes."""
    a = c.model.attention
    h = heads if glue in _PER_HEAD_GLUE else 1
    nbytes = _glue_bytes(glue, a, c.tokens, h)
    return Op(name=name, kind=ELEMENTWISE, shape={"elements": int(nbytes / (2 * ACT_BYTES))}, flops=0.0,
              bytes_read=nbytes / 2, bytes_written=nbytes / 2, dtype="bf16", count=count, layer=layer,
              meta={"op": "mla_glue", "glue": glue, "tokens": int(c.tokens), "heads": int(h), **(meta or {})})


def _mla_eager_glue(c: BlockCtx, layer: str, count: int, p: str, H: int, kv_local: float) -> list[Op]:
    """The plain-torch kernels between MLA's projections and attention: RMSNorm of the latent (a
    strided view of the ``kv_a`` output), RoPE of the shared key and of the query heads apart, the
    latent and the rotated key copied into the cache (two copies)."""
    T = c.tokens
    return [mla_glue(c, f"{p}kv_a_norm", "latent_norm", layer, count, 1),
            mla_glue(c, f"{p}rope_k", "rope_k", layer, count, 1),
            mla_glue(c, f"{p}kv_cache_write", "write_cache", layer, count, 1,
                     {"kv_write_bytes": T * kv_local}),
            mla_glue(c, f"{p}rope", "rope_q", layer, count, H)]


def _mla_prefill(c: BlockCtx, layer, count, p, H, pairs, kv_local) -> list[Op]:
    """Non-absorbed MLA: decompress latent of all keys to per-head K_nope/V, then MHA."""
    a, T = c.model.attention, c.tokens
    keys_rows = T + c.ctx_sum // c.sp if c.sp > 1 else T + c.ctx_sum
    ops = []
    if c.ctx_sum:
        cached = c.ctx_sum
        ops.append(elementwise(f"{p}kv_cache_gather", cached * (a.kv_lora_rank + a.qk_rope_head_dim),
                               layer=layer, count=count, reads=0, flops_per_elem=0.0,
                               extra_read=cached * kv_local, meta={"kv_read_bytes": cached * kv_local}))
    ops += quant_ops(c, f"{p}kv_b_quant", keys_rows, a.kv_lora_rank, layer, count)
    ops.append(gemm(f"{p}kv_b_proj", keys_rows, H * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank,
                    dtype=c.dtype, layer=layer, count=count, meta={"rows": "new + cached keys"}, impl=gemm_impl(c)))
    if c.eager:  # cat(q_nope, rope(q_pe)) and cat(k_nope, k_pe broadcast over heads)
        ops += [mla_glue(c, f"{p}q_assemble", "assemble_q", layer, count, H),
                mla_glue(c, f"{p}k_assemble", "assemble_k", layer, count, H)]
    dqk, dv = a.qk_head_dim, a.v_head_dim
    flops = c.flops_per_pair / c.attn_tp * pairs
    read = T * H * dqk * ACT_BYTES + keys_rows * H * (dqk + dv) * ACT_BYTES
    ops.append(Op(f"{p}attn", ATTN_PREFILL,
                  {"batch": len(c.new), "seq": _mean_of(c.new_sum, len(c.new)), "heads_q": H, "heads_kv": H,
                   "head_dim_qk": dqk, "head_dim_v": dv, "causal": True, "context": _mean_of(c.ctx_sum, len(c.ctx))},
                  flops, read, T * H * dv * ACT_BYTES, dtype="bf16", count=count, layer=layer,
                  meta={"mla": "non_absorbed", "kv_read_bytes": 0.0, **c.varlen}))
    ops += _sp_kv_gather(c, layer, count, p, kv_local)
    return ops


def _mla_absorbed(c: BlockCtx, layer, count, p, H, pairs, kv_local) -> list[Op]:
    """Absorbed MLA: q_nope x W_UK -> latent query; MQA over latent+rope; out x W_UV."""
    a, T = c.model.attention, c.tokens
    lat, dqk, dv = a.kv_lora_rank, a.absorbed_qk_head_dim, a.absorbed_v_head_dim
    kw = dict(dtype=c.dtype, layer=layer, count=count)
    ops = [gemm(f"{p}q_absorb_bmm", T, lat, a.qk_nope_head_dim, batch=H, **kw, meta={"weight": "W_UK"})]
    if c.eager:  # cat(q_lat^T, q_pe): the head-major bmm output back to [T, H, 576]
        ops.append(mla_glue(c, f"{p}q_latent_cat", "latent_query", layer, count, H))
    kv_read = c.key_sum * kv_local / c.sp
    flops = attention_flops_per_pair(c.model, absorbed=True) / c.attn_tp * pairs
    ops.append(Op(f"{p}attn", MLA_DECODE,
                  {"batch": len(c.new), "context": _mean_of(c.key_sum, len(c.new)), "heads_q": H, "head_dim_qk": dqk,
                   "head_dim_v": dv},
                  flops, T * H * dqk * ACT_BYTES + kv_read, T * H * dv * ACT_BYTES, dtype=_attn_dtype(c),
                  count=count, layer=layer,
                  meta={"mla": "absorbed", "kv_read_bytes": kv_read, "q_per_seq": _mean_of(c.new_sum, len(c.new)),
                        "impl": c.kernel_set.mla_decode}))
    ops += _sp_kv_gather(c, layer, count, p, kv_local)
    ops.append(gemm(f"{p}out_absorb_bmm", T, a.v_head_dim, lat, batch=H, **kw, meta={"weight": "W_UV"}))
    if c.eager:  # [H, T, v] -> [T, H*v] for the output projection (a view when T == 1)
        ops.append(mla_glue(c, f"{p}merge_heads", "merge_heads", layer, count, H))
    return ops


def dense_ffn_block(c: BlockCtx, layer: str, count: int, p: str, width: int, name: str = "ffn",
                    input_quantised: bool = False) -> list[Op]:
    """SwiGLU FFN of total width ``width`` split over ``c.tp``; all-reduce when tp > 1.
    ``input_quantised``: its input's FP8 copy is made elsewhere (an MoE layer's shared experts
    read the one the layer quantises for its dispatch)."""
    h, T = c.model.hidden_size, c.tokens
    w = width // c.tp
    return [
        *([] if input_quantised else quant_ops(c, f"{p}{name}_in_quant", T, h, layer, count)),
        gemm(f"{p}{name}_gate_up", T, 2 * w, h, dtype=c.dtype, layer=layer, count=count, impl=gemm_impl(c)),
        _act(f"{p}{name}_act", T * w, layer, count),
        *quant_ops(c, f"{p}{name}_act_quant", T, w, layer, count),
        gemm(f"{p}{name}_down", T, h, w, dtype=c.dtype, layer=layer, count=count, impl=gemm_impl(c)),
    ]


def ffn_norm(c: BlockCtx, layer: str, count: int, p: str) -> Op:
    return _norm(c, f"{p}ffn_norm", layer, count)


def tp_all_reduce(c: BlockCtx, layer: str, count: int, p: str) -> list[Op]:
    if c.tp <= 1:
        return []
    return [collective(f"{p}ffn_all_reduce", "all_reduce", c.tp, c.tokens * c.model.hidden_size * ACT_BYTES,
                       layer=layer, count=count)]


@lru_cache(maxsize=4096)
def expected_max_expert_load(tokens: int, num_experts: int, top_k: int, experts_considered: int) -> float:
    """Expected load of the busiest of ``experts_considered`` experts under uniform routing.

    Each of ``tokens`` tokens picks ``top_k`` distinct experts of ``num_experts`` uniformly, so
    one expert's load is Binomial(tokens, top_k/num_experts); loads are treated as independent
    (exact marginals, slight overestimate of the max). E[max] = sum_x>=1 P(max >= x).
    """
    if tokens <= 0:
        return 0.0
    import numpy as np

    q = top_k / num_experts
    mean, sd = tokens * q, math.sqrt(tokens * q * (1 - q))
    hi = int(min(tokens, math.ceil(mean + 12 * sd + 10)))
    # P(load <= x) for x < hi <= tokens (scipy's binom.cdf kernel, ``workloads.moe_routing``); the
    # terms are summed one after the other (libm's pow and double additions, as summing numpy
    # scalars did). ``tests/test_hot_path_exactness.py`` compares it with ``binom.cdf``. The first
    # ``lo`` terms are exactly 1.0 (``_unit_terms``): their sum is ``lo``, exactly, uncomputed.
    lo = _unit_terms(tokens, q, mean, sd, experts_considered)
    total = float(lo)
    for c in binom_cdf(np.arange(lo, hi, dtype=np.float64), tokens, q).tolist():
        total += 1.0 - c ** experts_considered
    return total


#: multiples of the standard deviation below the mean tried by ``_unit_terms``
_UNIT_Z = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 9.0, 13.0)


def _unit_terms(tokens: int, q: float, mean: float, sd: float, experts: int) -> int:
    """How many of ``expected_max_expert_load``'s first terms ``1.0 - P(load <= x) ** experts``
    (x = 0, 1, ...) are exactly 1.0: 0, or ``x0 + 1`` for the largest tried load ``x0`` (a few
    standard deviations below the mean) with ``P(load <= x0) ** experts < 2**-60``. A double
    ``1.0 - d`` is 1.0 for every ``d <= 2**-54``; the cdf grows with ``x`` and its kernel's
    relative error (about 1e-13) is far inside the margin of ``2**6``, so every load at or below
    ``x0`` gives exactly 1.0 (``tests/test_hot_path_exactness.py`` checks the sums bit for bit)."""
    xs = [x for x in dict.fromkeys(math.floor(mean - z * sd) for z in _UNIT_Z) if x >= 0]
    if not xs:
        return 0
    import numpy as np

    for x, c in zip(xs, binom_cdf(np.array(xs, dtype=np.float64), tokens, q).tolist()):
        if c ** experts < 2.0**-60:
            return x + 1
    return 0


def moe_block(c: BlockCtx, layer: str, count: int, p: str) -> list[Op]:
    """Router, EP dispatch, routed-expert grouped GEMMs, combine, shared experts."""
    e, h, T = c.model.moe, c.model.hidden_size, c.tokens
    assert e is not None
    E, k = e.num_routed_experts, e.top_k
    slots = c.expert_slots or E
    E_l, I_l = slots // c.ep, e.intermediate_size // c.moe_tp
    ops = [gemm(f"{p}router", T, E, h, dtype="bf16", w_dtype=param_dtype("router", c.dtype),
                bias=0, layer=layer, count=count)]
    if e.router_bias:  # correction bias read with the router GEMM
        rb = E * dtype_bytes(param_dtype("router", c.dtype))
        r = ops[0]
        ops[0] = replace(r, bytes_read=r.bytes_read + rb, meta={**r.meta, "weight_bytes": r.meta["weight_bytes"] + rb})
    ops.append(elementwise(f"{p}topk", T * E, layer=layer, count=count, writes=0, flops_per_elem=2.0,
                           meta={"op": "moe_topk" if c.eager else "copy"}))
    # the tokens' FP8 copy (eager FP8): what an FP8 dispatch sends and the shared experts read
    ops += quant_ops(c, f"{p}moe_quant", T, h, layer, count)
    # each attention-TP rank (and, in decode, each sp rank) dispatches its slice of the tokens
    send = math.ceil(T / (c.attn_tp * (c.sp if c.phase == "decode" else 1))) if c.ep > 1 else 0
    # destinations are expert slots: redundant replicas spread a token's choices like extra experts
    routing = {"top_k": k, "hidden": h, "num_experts": slots, "expert_groups": e.n_group,
               "max_groups_per_token": e.topk_group}
    if c.ep > 1:
        db = dtype_bytes(c.dispatch_dtype)
        scales = send * k * math.ceil(h / 128) * 4 if db < 2 else 0
        ops.append(collective(f"{p}dispatch", "dispatch", c.ep, send * k * h * db, layer=layer, count=count,
                              meta={**routing, "tokens": send, "dtype": c.dispatch_dtype,
                                    "scale_bytes_per_rank": scales}))
    mean_assign = c.moe_tokens_all * k / c.ep
    tokens_total = int(math.ceil(mean_assign * c.moe_imbalance - 1e-9))
    # with redundant replicas a hot expert's load is split over its copies (EPLB): the
    # routed pairs spread over ``slots`` experts' worth of replicas
    busiest = expected_max_expert_load(c.moe_tokens_all, slots, k, E_l) * c.moe_imbalance
    m_per_group = int(min(tokens_total, max(math.ceil(tokens_total / E_l - 1e-9), math.ceil(busiest - 1e-9))))
    # only the experts some token routes to are read (workloads.moe_routing); at least one when
    # any pair lands here, at most all local experts
    active = min(float(E_l), expected_active_experts(c.moe_tokens_all, slots, k, E_l)) if tokens_total else 0.0
    wb = dtype_bytes(c.dtype)
    ab = min(wb, ACT_BYTES)
    # tokens are permuted into expert order before the grouped GEMM and the weighted outputs
    # summed back per token after it (gather / scatter-add of tokens_total rows)
    expert = OpRole.ROUTED_EXPERT
    ops.append(elementwise(f"{p}experts_permute", tokens_total * h, layer=layer, count=count, flops_per_elem=0.0,
                           meta={"op": "copy"}, role=expert))
    for name, n_, k_ in (("experts_gate_up", 2 * I_l, h), ("experts_down", h, I_l)):
        resident = E_l * n_ * k_ * wb
        ops.append(Op(
            f"{p}{name}", GROUPED_GEMM,
            {"groups": E_l, "m_per_group": m_per_group, "n": n_, "k": k_, "tokens_total": tokens_total,
             "active_groups": round(active, 6)},
            2.0 * tokens_total * n_ * k_, active * n_ * k_ * wb + tokens_total * k_ * ab,
            tokens_total * n_ * ACT_BYTES, dtype=c.dtype, count=count, layer=layer,
            meta={"weight_bytes": resident, "weight_bytes_read": active * n_ * k_ * wb,
                  "active_groups": active, "mean_per_group": mean_assign / E_l,
                  "tokens_per_active": tokens_per_active_expert(tokens_total, active),
                  "moe_imbalance": c.moe_imbalance, "impl": c.kernel_set.grouped_gemm}, role=expert))
        if name == "experts_gate_up":
            ops.append(_act(f"{p}experts_act", tokens_total * I_l, layer, count, role=expert))
            ops += quant_ops(c, f"{p}experts_act_quant", tokens_total, I_l, layer, count, role=expert)
    if c.eager:  # out.zero_(); out.index_add_(0, src, ys * w): bf16 atomics into the received rows
        rows = min(tokens_total, math.ceil(c.moe_tokens_all * (1.0 - (1.0 - E_l / slots) ** k)))
        ops.append(elementwise(f"{p}experts_unpermute", tokens_total * h, layer=layer, count=count, reads=1.0,
                               writes=1.0, extra_read=tokens_total * ACT_BYTES + rows * h * ACT_BYTES,
                               extra_written=rows * h * ACT_BYTES, flops_per_elem=2.0,
                               meta={"op": "moe_scatter", "rows": rows}, role=expert))
    else:
        ops.append(elementwise(f"{p}experts_unpermute", tokens_total * h, layer=layer, count=count, reads=1.0,
                               writes=0.0, extra_written=T * h * ACT_BYTES, flops_per_elem=2.0, meta={"op": "copy"},
                               role=expert))
    if c.ep > 1 and c.moe_tp > 1:
        ops.append(collective(f"{p}experts_all_reduce", "all_reduce", c.moe_tp, tokens_total * h * ACT_BYTES,
                              layer=layer, count=count))
    if c.ep > 1:
        ops.append(collective(f"{p}combine", "combine", c.ep, send * k * h * dtype_bytes(c.combine_dtype),
                              layer=layer, count=count, meta={**routing, "tokens": send, "dtype": c.combine_dtype}))
    if e.num_shared_experts:
        ops += dense_ffn_block(c, layer, count, p, e.num_shared_experts * e.intermediate_size, name="shared",
                               input_quantised=True)
    return ops
