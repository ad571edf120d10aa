"""What work one step does on ONE device: ``step_ops(model, batch, layout) -> list[Op]``.

This is the single source of truth for per-step work. The simulator's cost model times the
returned ops (compute from profiles/rooflines, collectives from the fabric), the planner ranks
layouts with it, and the tests check it against ``workloads.accounting``.

Scope and conventions (details in workloads/README.md):

* ``BatchShape`` is the batch one model replica runs in one step (all attention-DP ranks
  together). With ``dp > 1`` (attention DP) sequences are spread over the attention-DP ranks (greedy,
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
from dataclasses import replace
from typing import Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workloads.accounting import dtype_bytes, param_dtype
from workloads.layout import Layout, ParallelismError
from workloads.models import ModelConfig, get_model
from workloads.op import COLLECTIVE, EMBEDDING, GEMM, GROUPED_GEMM, Op
from workloads.ops_blocks import (
    ACT_BYTES,
    KERNEL_SETS,
    RMSNORM_FLOPS_PER_ELEM,
    BlockCtx,
    BlockMemo,
    attention_core,
    attention_sides,
    block,
    collective,
    dense_ffn_block,
    elementwise,
    gemm_impl,
    expected_max_expert_load,
    ffn_norm,
    quant_ops,
    gemm,
    moe_block,
    residual_add,
    tp_all_reduce,
)

__all__ = [
    "ParallelismError",
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
MOE_LAYER_OPS = ("router", "topk", "moe_quant", "dispatch", "experts_permute", "experts_gate_up", "experts_act",
                 "experts_act_quant", "experts_down", "experts_unpermute", "experts_all_reduce", "combine",
                 "shared_gate_up", "shared_act", "shared_act_quant", "shared_down")


def moe_layer_ops(ops: Iterable[Op]) -> list[Op]:
    """The ops of ONE MoE layer out of a step's op list (each with ``count`` 1)."""
    return [replace(o, count=1) for o in ops if o.layer == "moe" and o.name.split(".", 1)[1] in MOE_LAYER_OPS]


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
    def trusted(cls, phase: str, num_seqs: int, new_tokens: IntOrList, context_tokens: IntOrList,
                logits_for: str | None = None, *, with_logits_for: bool = False) -> "BatchShape":
        """The model of fields valid by construction (Python ints, ``num_seqs`` entries of each tuple,
        new >= 1, context >= 0), not validated: what ``model_construct`` makes of them (``logits_for``
        among the fields set when ``with_logits_for``, as when a caller passes it), without its lookup
        of every field's default (most of a step-cost miss's ``shape_of``, measured in-run).
        ``tests/test_hot_path_exactness.py`` and ``tests/test_miss_path_exactness.py`` compare it to
        the validated model."""
        shape = _new(cls)
        _set(shape, "__dict__", {"phase": phase, "num_seqs": num_seqs, "new_tokens": new_tokens,
                                 "context_tokens": context_tokens, "logits_for": logits_for})
        _set(shape, "__pydantic_fields_set__", set(_FIELDS_LOGITS if with_logits_for else _FIELDS))
        _set(shape, "__pydantic_extra__", None)
        _set(shape, "__pydantic_private__", None)
        return shape

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
            # uniform sequences: the greedy spread is an even split, busiest ranks first (two distinct
            # shapes, each built once: a 144-rank split is not 144 validations)
            base, extra = divmod(self.num_seqs, parts)
            big, small = (self._uniform(n) if count else None for n, count in ((base + 1, extra), (base, parts - extra)))
            return (big,) * extra + (small,) * (parts - extra)
        bins, order = self._spread(parts)
        return tuple(self._of(bins[j]) for j in order)

    def busiest(self, parts: int) -> "BatchShape":
        """``split(parts)[0]``, without building the other ranks' shapes."""
        if isinstance(self.new_tokens, int) and isinstance(self.context_tokens, int):
            return self._uniform(-(-self.num_seqs // parts))
        bins, order = self._spread(parts)
        return self._of(bins[order[0]])

    # a part of this (validated) batch is valid by construction: built ``trusted``, as the validated
    # ``BatchShape(phase=..., num_seqs=..., new_tokens=..., context_tokens=..., logits_for=...)``
    def _uniform(self, n: int) -> "BatchShape":
        return BatchShape.trusted(self.phase, n, self.new_tokens, self.context_tokens, self.logits_for,
                                  with_logits_for=True)

    def _of(self, seqs: list[tuple[int, int]]) -> "BatchShape":
        return BatchShape.trusted(self.phase, len(seqs), tuple(n for n, _ in seqs), tuple(c for _, c in seqs),
                                  self.logits_for, with_logits_for=True)

    def _spread(self, parts: int) -> tuple[list[list[tuple[int, int]]], list[int]]:
        """``split``'s greedy placement: the sequences of each rank, and the ranks busiest first."""
        seqs = sorted(zip(self.new_list, self.context_list), reverse=True)
        bins: list[list[tuple[int, int]]] = [[] for _ in range(parts)]
        load = [(0, 0)] * parts
        for n, c in seqs:
            i = min(range(parts), key=lambda j: load[j])
            bins[i].append((n, c))
            load[i] = (load[i][0] + n, load[i][1] + c)
        return bins, sorted(range(parts), key=lambda j: load[j], reverse=True)


_new, _set = object.__new__, object.__setattr__
#: the fields ``BatchShape.trusted`` sets (its ``model_fields_set``), without and with ``logits_for``
_FIELDS = ("phase", "num_seqs", "new_tokens", "context_tokens")
_FIELDS_LOGITS = (*_FIELDS, "logits_for")


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
    layout: Layout | None = None,
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
    memo: BlockMemo | None = None,
) -> list[Op]:
    """Operators one device runs for one step of ``batch`` on ``layout`` (a ``workloads.layout.Layout``,
    checked with ``Layout.check``; one copy of the experts, ``expert_dp`` 1; see module docstring).

    ``dtype``: GEMM weight/input dtype (router, embedding, LM head stay BF16 below 16 bits).
    ``kv_dtype``: KV-cache dtype ('fp8' = FlashMLA layout for MLA). ``include_mtp`` appends the
    MTP modules on the last stage. ``stage`` picks the pipeline stage when pp > 1.
    ``dispatch_dtype`` defaults to ``dtype``; combine is BF16. ``kernels``: a kernel set of
    ``workloads.kernel_sets`` - "fused" (a serving engine's kernels) or "eager" (the layer in plain
    torch ops); it decides the glue ops and names each attention / expert op's ``meta["impl"]``.
    ``memo``: a ``BlockMemo`` the blocks are built through (the same ops, built once per
    distinct input; a caller building many steps of one instance keeps one).
    """
    if memo is not None:
        key = (id(model), id(layout), dtype, moe_imbalance, kv_dtype, include_mtp, mla_absorb, stage, dispatch_dtype,
               combine_dtype, kernels)
        prep = memo.prepared(key, (model, layout), _prepare, model, layout, dtype, moe_imbalance, kv_dtype,
                             stage, dispatch_dtype, combine_dtype, kernels, memo)
    else:
        prep = _prepare(model, layout, dtype, moe_imbalance, kv_dtype, stage, dispatch_dtype, combine_dtype,
                        kernels, None)
    m, par, dense_n, moe_n, first, last, base = prep
    local = batch.busiest(par.dp) if par.dp > 1 else batch
    if local.num_seqs == 0:
        return []
    sp = par.seq_split
    new = local.new_list
    t_rank = sum(new)
    tokens = math.ceil(t_rank / sp) if batch.phase == "prefill" else t_rank
    ctx = BlockCtx.for_step(
        base, phase=batch.phase, new=new, ctx=local.context_list, tokens=tokens,
        absorb=(batch.phase == "decode") if mla_absorb is None else bool(mla_absorb and m.is_mla),
        moe_tokens_all=t_rank if local is batch else batch.total_new_tokens)
    n_logits = local.num_seqs if batch.logits_mode == "last" else tokens
    mtp_n = m.num_mtp_modules if include_mtp and last else 0
    shape = (first, dense_n, moe_n, last, n_logits, mtp_n)
    if memo is None:
        segments = _segments(ctx, *shape)
    else:  # every step field a segment reads is in the key (the cores read the rest, afresh)
        segments = memo.get((ctx.memo_id, "step", batch.phase, tokens, ctx.moe_tokens_all, *shape), _segments, ctx,
                            *shape)
    ops: list[Op] = []
    for seg in segments:
        if type(seg) is _Core:
            ops += attention_core(ctx, *seg)
        else:
            ops += seg
    return ops


class _Core(tuple):
    """A place in a step's segments where a layer's attention core goes: (layer, count, name prefix)."""


def _segments(c: BlockCtx, first: bool, dense_n: int, moe_n: int, last: bool, n_logits: int,
              mtp_n: int) -> list[tuple[Op, ...] | _Core]:
    """A step's op list as the blocks that depend on its token counts only (tuples of ops, the same
    for every step of these counts; ``step_ops`` keeps them per step key) and the places of the
    attention cores, which read every sequence's lengths and are built per step."""
    m, tokens = c.model, c.tokens
    segs: list = []
    if first:
        segs.append(tuple(_embedding(c, "embed", "embed.")))
    if dense_n:
        segs += _layer(c, "dense", dense_n, "dense.")
    if moe_n:
        segs += _layer(c, "moe", moe_n, "moe.")
    if not last:
        segs.append((collective("pp.send", "send_recv", 2, tokens * m.hidden_size * ACT_BYTES, layer="pp", count=1),))
        return segs
    segs.append(tuple(_head(c, n_logits, "head", "head.")))
    if mtp_n:
        segs.append(tuple(_embedding(c, "mtp", "mtp.", count=mtp_n)))
        segs.append(tuple(block(c, ("mtp_in", mtp_n, tokens), _mtp_in, c, mtp_n)))
        segs += _layer(c, "moe" if m.is_moe else "dense", mtp_n, "mtp.", layer="mtp")
        segs.append(tuple(_head(c, n_logits, "mtp", "mtp.head.", count=mtp_n)))
    return segs


def _prepare(model, layout, dtype, moe_imbalance, kv_dtype, stage, dispatch_dtype, combine_dtype, kernels,
             memo) -> tuple:
    """What ``step_ops`` derives from its per-instance arguments, checked once (``BlockMemo.prepared``
    keeps it per argument set): the model, the layout (checked), the stage's dense and MoE layers,
    whether it is the first and the last stage, and the ``BlockCtx`` fields every step shares
    (``BlockCtx.instance_fields``, with the memo's context id)."""
    m = get_model(model)
    par = layout or Layout()
    par.check(m)
    if m.moe is not None and par.expert_dp_eff != 1:
        raise ParallelismError(f"expert_dp: step_ops costs one copy of the experts, not {par.expert_dp_eff} "
                               f"(cost Layout.expert_group())")
    for d in (dtype, kv_dtype, combine_dtype, dispatch_dtype or dtype):
        dtype_bytes(d)
    if kernels not in KERNEL_SETS:
        raise ValueError(f"kernels {kernels!r} unknown (valid: {', '.join(KERNEL_SETS)})")
    if moe_imbalance < 1.0:
        raise ValueError(f"moe_imbalance must be >= 1.0 (busiest rank / mean), got {moe_imbalance}")
    dense_n, moe_n = stage_layers(m, par.pp, stage)
    base = BlockCtx.instance_fields(
        memo, model=m, dtype=dtype.lower(), kv_dtype=kv_dtype.lower(), attn_tp=par.tp, tp=par.tp, ep=par.ep,
        moe_tp=par.moe_tp_eff, sp=par.seq_split, moe_imbalance=float(moe_imbalance),
        dispatch_dtype=(dispatch_dtype or dtype).lower(), combine_dtype=combine_dtype.lower(),
        expert_slots=(m.moe.num_routed_experts + par.redundant_experts) if m.moe else 0, kernels=kernels)
    return m, par, dense_n, moe_n, stage == 0, stage == par.pp - 1, base


def _mtp_in(c: BlockCtx, n: int) -> list[Op]:
    """The MTP modules' input: norms of the embedding and the hidden state, their projection."""
    h, tokens = c.model.hidden_size, c.tokens
    return [elementwise("mtp.enorm_hnorm", 2 * tokens * h, layer="mtp", count=n, flops_per_elem=RMSNORM_FLOPS_PER_ELEM),
            *quant_ops(c, "mtp.eh_quant", tokens, 2 * h, "mtp", n),
            gemm("mtp.eh_proj", tokens, h, 2 * h, dtype=c.dtype, layer="mtp", count=n, impl=gemm_impl(c))]


def _embedding(c: BlockCtx, layer: str, p: str, count: int = 1) -> tuple[Op, ...] | list[Op]:
    return block(c, ("embed", layer, count, p, c.tokens), _embedding_ops, c, layer, p, count)


def _embedding_ops(c: BlockCtx, layer: str, p: str, count: int) -> list[Op]:
    h, T = c.model.hidden_size, c.tokens
    ops = [Op(f"{p}embedding", EMBEDDING, {"tokens": T, "hidden": h}, 0.0, T * h * ACT_BYTES,
              T * h * ACT_BYTES, dtype=param_dtype("embedding", c.dtype), count=count, layer=layer,
              meta={"weight_bytes": 0.0, "note": "row lookup; table not a GEMM weight"})]
    if c.tp > 1:  # vocab-parallel embedding
        ops.append(collective(f"{p}embed_all_reduce", "all_reduce", c.tp, T * h * ACT_BYTES, layer=layer, count=count))
    return ops


def _layer(c: BlockCtx, kind: str, count: int, p: str, layer: str | None = None) -> list:
    """A layer's segments: the attention's input side, its core's place, its output side with the FFN half."""
    layer = layer or kind
    pre, post = attention_sides(c, layer, count, p)
    ffn = block(c, ("ffn", kind, layer, count, p, c.phase, c.tokens, c.moe_tokens_all), _ffn_half, c, kind, count,
                p, layer)
    return [tuple(pre), _Core((layer, count, p)), (*post, *ffn)]


def _ffn_half(c: BlockCtx, kind: str, count: int, p: str, layer: str) -> list[Op]:
    """A layer after its attention: the FFN's norm, the dense FFN or the MoE block, the TP all-reduce."""
    ops = [ffn_norm(c, layer, count, p)]
    if kind == "dense":
        ops += dense_ffn_block(c, layer, count, p, c.model.dense_intermediate_size)
    else:
        ops += moe_block(c, layer, count, p)
    ops += tp_all_reduce(c, layer, count, p)
    if c.eager:
        ops.append(residual_add(c, f"{p}ffn_residual", layer, count))
    return ops


def _head(c: BlockCtx, n_logits: int, layer: str, p: str, count: int = 1) -> tuple[Op, ...] | list[Op]:
    return block(c, ("head", layer, count, p, n_logits), _head_ops, c, n_logits, layer, p, count)


def _head_ops(c: BlockCtx, n_logits: int, layer: str, p: str, count: int) -> list[Op]:
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
