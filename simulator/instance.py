"""One serving instance's step time: a deployment pool mapped onto ops and the cost model.

``InstanceSpec`` holds the instance's ``workloads.layout.Layout`` (attention TP/DP/SP, MoE
EP/TP, PP, micro-batches) with what else fixes its cost (model, cluster, dtypes, MTP, draft
model, kernels); ``InstanceCost`` answers ``step(batch) -> StepCost`` from ``step_ops`` on that
layout through ``simulator.costmodel.CostModel``. The engine, ``clustersim estimate`` and the
planner's analytic ranking all call this one function.

Sequence parallelism follows ``attention.sp_kind`` through ``workloads.sequence_parallel``
(the model training uses too): a prefill step's per-layer K/V exchange is Ulysses' QKV and
output all-to-alls or ring attention's K/V passes (exposed only beyond each block's attention);
a decode step gathers every head's partial outputs (ring: tokens sharded) or each device's
``1 / sp`` of the heads (Ulysses: heads sharded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from hardware.catalog import die_device
from hardware.types import Cluster
from simulator.costmodel import CostModel, OpCost, StepCost
from workloads.deployment_rules import die_replicas
from workloads.layout import Layout
from workloads.models import ModelConfig, get_model
from workloads.op import COLLECTIVE, OpRole
from workloads.ops import BatchShape, step_ops
from workloads.ops_blocks import BlockMemo
from workloads.sequence_parallel import decode_combine_bytes, model_sp_attention, ring_exposed_s

_KV_GATHER, _OUT_GATHER, _RING_PASS = "sp_kv_gather", "sp_out_gather", "sp.kv_ring_pass"


@dataclass(frozen=True)
class InstanceSpec:
    """Everything that fixes an instance's per-step cost (hashable: used as a cache key)."""

    model: ModelConfig
    cluster: Cluster
    layout: Layout = Layout()
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    moe_imbalance: float = 1.0
    mtp_depth: int = 0
    draft_model: ModelConfig | None = None  # speculative decoding with a separate draft model
    draft_tokens: int = 0
    kernels: str = "fused"  # workloads.ops_blocks.KERNEL_SETS

    @property
    def devices(self) -> int:
        return self.layout.devices


def spec_from_pool(model: ModelConfig, cluster: Cluster, pool: Any, weight_dtype: str, kv_dtype: str) -> InstanceSpec:
    """InstanceSpec of a ``workloads.deployment.Pool`` (its ``layout``)."""
    return InstanceSpec(
        model=model, cluster=cluster, layout=pool.layout, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
        moe_imbalance=pool.moe.imbalance, mtp_depth=pool.mtp_depth,
        draft_model=get_model(pool.draft_model) if pool.draft_model else None,
        draft_tokens=pool.draft_tokens, kernels=pool.kernels,
    )


def _halves(batch: BatchShape, parts: int) -> list[BatchShape]:
    """Split a batch into ``parts`` micro-batches: by sequences, or a lone prefill's tokens.

    A batch that cannot be split runs as one micro-batch (no overlap), as serving engines do
    (SGLang's two-batch overlap falls back to one batch): a decode batch with fewer sequences
    than micro-batches (a decode sequence's draft tokens are one verification, never split),
    and a lone prefill sequence of one token.
    """
    if parts == 1:
        return [batch]
    if batch.num_seqs >= parts:
        return [b for b in batch.split(parts) if b.num_seqs]
    if batch.phase == "decode" or batch.num_seqs != 1 or batch.new_list[0] < parts:
        return [batch]
    n, c = batch.new_list[0], batch.context_list[0]
    # one long prefill: split its new tokens (the second part sees the first as context)
    first = n // 2
    return [BatchShape(phase=batch.phase, num_seqs=1, new_tokens=first, context_tokens=c, logits_for=batch.logits_for),
            BatchShape(phase=batch.phase, num_seqs=1, new_tokens=n - first, context_tokens=c + first,
                       logits_for=batch.logits_for)]


def _op_costs(cm: CostModel, ops: list) -> list[OpCost]:
    """``[cm.op_cost(o) for o in ops]``, reading the cost an op keeps (``Op.derived``) inline."""
    out = []
    for o in ops:
        d = o.derived
        out.append(d[1] if d is not None and d[0] is cm else cm.op_cost(o))
    return out


def _ring_hidden(costs: list[OpCost], degree: int) -> list[OpCost]:
    """Ring K/V passes charged only beyond the block attention they run under
    (``workloads.sequence_parallel.ring_exposed_s``): a layer's attention on this device is
    ``degree`` blocks, one per pass."""
    attn = {c.name[: -len("attn")]: c.seconds for c in costs if c.stream != "comm" and c.name.endswith("attn")}
    out = []
    for c in costs:
        if c.name.endswith(_RING_PASS):
            block = attn.get(c.name[: -len(_RING_PASS)], 0.0) / degree
            c = replace(c, seconds=ring_exposed_s(block, c.seconds, degree) / (degree - 1),
                        source=f"{c.source} (exposed beyond block attention)")
        out.append(c)
    return out


class InstanceCost:
    """Step-time oracle of one instance (cached per batch shape)."""

    def __init__(self, spec: InstanceSpec, profile: Any = None, cache_steps: bool = True):
        """``cache_steps``: keep each step's cost by batch shape (False: a caller that keeps its
        own, e.g. the engine's ``StepCostCache``, does not hold every op list twice)."""
        self.spec = spec
        # prefill steps use DeepEP-style normal (throughput) kernels, decode low-latency ones
        self.cost_model = CostModel(cluster=spec.cluster, profile=profile)
        self._decode_cost_model = replace(self.cost_model, dispatch_kernel="low_latency")
        lay = spec.layout
        lay.check(spec.model)
        # None: not cached here (a bound method kept on the instance would make it a reference cycle,
        # freed only by a full collection of the garbage collector)
        self._cached = lru_cache(maxsize=65536)(self._step_uncached) if cache_steps else None
        # the op lists of the blocks already built: a new shape rebuilds (and re-costs) only the
        # blocks whose inputs changed
        self._blocks = BlockMemo()
        # a multi-die package with one attention-DP rank per die (Ascend 910C, CloudMatrix-Infer):
        # the replicated (non-expert) ops run per die on its share of the sequences, each die
        # reading its own weight replica; expert ops and communication stay per package
        self.dies = die_replicas(spec.cluster.device, lay.tp, lay.sp)
        if self.dies > 1:
            die_cm = CostModel(cluster=replace(spec.cluster, device=die_device(spec.cluster.device)), profile=profile)
            self._die_cms = {"prefill": die_cm, "decode": replace(die_cm, dispatch_kernel="low_latency")}
            self._die_layout = replace(lay, dp=lay.dp * self.dies, moe_tp=lay.moe_tp_eff * self.dies)
        self._draft = None
        if spec.draft_model is not None and spec.draft_tokens:
            # the draft runs on the same devices with the same attention layout, dense (no EP)
            self._draft = InstanceCost(replace(spec, model=spec.draft_model, layout=lay.without_experts(),
                                               mtp_depth=0, draft_model=None, draft_tokens=0), profile)

    def ops(self, batch: BatchShape, layout: Layout | None = None) -> list[list]:
        """Op lists, one per micro-batch, for ``batch`` on the busiest device (or die, with the
        die-level ``layout``)."""
        s = self.spec
        mtp = s.mtp_depth > 0 and batch.phase == "decode"
        out: list[list] = []
        prev = None
        for mb in _halves(batch, s.layout.micro_batches):
            if out and (mb is prev or mb == prev):  # two equal micro-batches: the same ops (and op costs)
                out.append(list(out[-1]))
                continue
            prev = mb
            ops = step_ops(s.model, mb, layout or s.layout, dtype=s.weight_dtype, moe_imbalance=s.moe_imbalance,
                           kv_dtype=s.kv_dtype, include_mtp=mtp, kernels=s.kernels,
                           dispatch_dtype=s.weight_dtype if s.weight_dtype != "bf16" else "bf16", memo=self._blocks)
            out.append(self._sp_kind_ops(ops, mb) if s.layout.sp > 1 else ops)
        return out

    def _sp_kind_ops(self, ops: list, mb: BatchShape) -> list:
        """``ops`` with the sequence-parallel exchange of ``spec.sp_kind`` in place of the
        generic one: prefill's per-layer K/V all-gather becomes Ulysses' all-to-alls or ring
        attention's K/V passes, both over this step's new tokens (``SpAttention``: a prefill
        without cache; attention to cached tokens stays where they are kept, and the ring's
        combine of those partial outputs is not charged); decode's output gather shrinks to a
        device's heads under Ulysses."""
        s, lay = self.spec, self.spec.layout
        local = mb.busiest(lay.dp) if lay.dp > 1 else mb
        out = []
        for op in ops:
            if op.kind != COLLECTIVE or not op.name.endswith((_KV_GATHER, _OUT_GATHER)):
                out.append(op)
            elif op.name.endswith(_OUT_GATHER):
                nbytes = decode_combine_bytes(lay.sp_kind, op.bytes_per_rank, lay.sp)
                out.append(replace(op, bytes_read=nbytes, bytes_written=nbytes, bytes_per_rank=nbytes))
            else:
                prefix = op.name[: -len(_KV_GATHER)]
                seq = lay.sp * math.ceil(local.total_new_tokens / lay.sp)  # the last device's share padded
                layer = model_sp_attention(lay.sp_kind, s.model, 1, seq, lay.sp, lay.tp)
                out += [replace(x, name=prefix + x.name, layer=op.layer, count=x.count * op.count)
                        for x in layer.ops() if x.kind == COLLECTIVE]
        return out

    def _per_die_costs(self, batch: BatchShape, cm: CostModel) -> list[list]:
        """Op costs per micro-batch: replicated compute ops per die (expert ops stay per package,
        partitioned over EP; communication stays per package, as its fabric model counts)."""
        die_cm = self._die_cms[batch.phase]
        expert = OpRole.ROUTED_EXPERT
        return [[die_cm.op_cost(o) for o in die_ops if o.stream != "comm" and o.role is not expert]
                + [cm.op_cost(o) for o in pkg_ops if o.stream == "comm" or o.role is expert]
                for pkg_ops, die_ops in zip(self.ops(batch), self.ops(batch, self._die_layout))]

    def _step_uncached(self, batch: BatchShape) -> StepCost:
        cm = self._decode_cost_model if batch.phase == "decode" else self.cost_model
        if self.dies > 1:
            costs = self._per_die_costs(batch, cm)
        else:
            costs = [_op_costs(cm, mb) for mb in self.ops(batch)]
        lay = self.spec.layout
        if lay.sp > 1 and lay.sp_kind == "ring":
            costs = [_ring_hidden(mb, lay.sp) for mb in costs]
        target = cm.compose(costs)
        if self._draft is None or batch.phase != "decode":
            return target
        # speculative decoding: the draft proposes k tokens one decode step at a time, then the
        # target verifies them in one step of 1 + k tokens per sequence (``batch.new_tokens``)
        k = self.spec.draft_tokens
        draft = self._draft.step(BatchShape(phase="decode", num_seqs=batch.num_seqs, new_tokens=1,
                                            context_tokens=batch.context_tokens))
        ops = target.ops + tuple(replace(o, name=f"draft.{o.name}", count=o.count * k) for o in draft.ops)
        return StepCost(target.seconds + k * draft.seconds, target.compute_s + k * draft.compute_s,
                        target.comm_s + k * draft.comm_s, target.exposed_comm_s + k * draft.exposed_comm_s,
                        target.micro_batches, ops)

    def release(self) -> None:
        """Forget the op lists built so far (its ``BlockMemo``; a run that is over calls it, so they
        are freed by their reference counts rather than a full garbage collection)."""
        self._blocks.clear()

    def step(self, batch: BatchShape) -> StepCost:
        """StepCost of one step of ``batch`` (the whole instance's batch, all DP ranks)."""
        cached = self._cached
        return self._step_uncached(batch) if cached is None else cached(batch)

    def with_decode_lengths(self, lengths: str) -> "InstanceCost":
        """Cost decode batches as ``lengths`` (``simulator.costmodel.DECODE_LENGTHS``: "equal", sequences
        all at the batch's context, or "mixed", a serving batch read at its mean). Before any step
        is costed."""
        self.cost_model = replace(self.cost_model, decode_lengths=lengths)
        self._decode_cost_model = replace(self._decode_cost_model, decode_lengths=lengths)
        return self

    def share_cost_models(self, prefill: CostModel, decode: CostModel,
                          blocks: BlockMemo | None = None) -> "InstanceCost":
        """Cost this instance's steps with ``prefill`` and ``decode`` (the DeepEP low-latency
        one), cost models of its cluster and profile that several instances share (the
        planner's pool models), with whatever they memoise per op; ``blocks``: a ``BlockMemo``
        they share too (its keys name each instance's context, so instances whose blocks take
        the same inputs build them once). Before any step is costed."""
        self.cost_model, self._decode_cost_model = prefill, decode
        if blocks is not None:
            self._blocks = blocks
        return self
