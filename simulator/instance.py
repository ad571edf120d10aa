"""One serving instance's step time: a deployment pool mapped onto ops and the cost model.

``InstanceCost`` turns a pool of a ``Deployment`` (attention TP/DP/SP, MoE EP/TP, PP,
micro-batches, MTP) into ``workloads.ops.Parallelism`` and answers ``step(batch) ->
StepCost`` through ``simulator.costmodel.CostModel``. The engine, ``clustersim estimate``
and the planner's analytic ranking all call this one function.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from hardware.catalog import die_device
from hardware.types import Cluster
from simulator.costmodel import CostModel, StepCost
from workloads.deployment_rules import die_replicas
from workloads.models import ModelConfig, get_model
from workloads.ops import EXPERT_OPS, BatchShape, Parallelism, step_ops


def _is_expert_op(op) -> bool:
    return op.name.split(".", 1)[-1] in EXPERT_OPS


@dataclass(frozen=True)
class InstanceSpec:
    """Everything that fixes an instance's per-step cost (hashable: used as a cache key)."""

    model: ModelConfig
    cluster: Cluster
    attn_tp: int = 1
    attn_dp: int = 1
    sp: int = 1
    ep: int = 1
    moe_tp: int = 1
    pp: int = 1
    micro_batches: int = 1
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    moe_imbalance: float = 1.0
    mtp_depth: int = 0
    redundant_experts: int = 0
    draft_model: ModelConfig | None = None  # speculative decoding with a separate draft model
    draft_tokens: int = 0
    kernels: str = "fused"  # workloads.ops_blocks.KERNEL_SETS

    @property
    def devices(self) -> int:
        return self.attn_tp * self.attn_dp * self.sp * self.pp

    def parallelism(self) -> Parallelism:
        stage = self.attn_tp * self.attn_dp * self.sp
        ep = self.ep if self.model.is_moe else 1
        moe_tp = (stage // ep) if self.model.is_moe else None
        return Parallelism(tp=self.attn_tp, ep=ep, pp=self.pp, sp=self.sp, attn_tp=self.attn_tp,
                           attn_dp=self.attn_dp, moe_tp=moe_tp,
                           redundant_experts=self.redundant_experts if self.model.is_moe else 0)


def spec_from_pool(model: ModelConfig, cluster: Cluster, pool: Any, weight_dtype: str, kv_dtype: str) -> InstanceSpec:
    """InstanceSpec of a ``workloads.deployment.Pool``."""
    return InstanceSpec(
        model=model, cluster=cluster, attn_tp=pool.attention.tp, attn_dp=pool.attention.dp, sp=pool.attention.sp,
        ep=pool.moe.ep, moe_tp=pool.moe.tp, pp=pool.pp, micro_batches=pool.micro_batches,
        weight_dtype=weight_dtype, kv_dtype=kv_dtype, moe_imbalance=pool.moe.imbalance, mtp_depth=pool.mtp_depth,
        redundant_experts=pool.moe.redundant_experts,
        draft_model=get_model(pool.draft_model) if getattr(pool, "draft_model", None) else None,
        draft_tokens=getattr(pool, "draft_tokens", 0),
        kernels=getattr(pool, "kernels", "fused"),
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
    n, c = batch.new_list[0], batch.context_list[0]
    if batch.phase == "decode" or batch.num_seqs != 1 or n < parts:
        return [batch]
    # one long prefill: split its new tokens (the second part sees the first as context)
    first = n // 2
    return [BatchShape(phase=batch.phase, num_seqs=1, new_tokens=first, context_tokens=c, logits_for=batch.logits_for),
            BatchShape(phase=batch.phase, num_seqs=1, new_tokens=n - first, context_tokens=c + first,
                       logits_for=batch.logits_for)]


class InstanceCost:
    """Step-time oracle of one instance (cached per batch shape)."""

    def __init__(self, spec: InstanceSpec, profile: Any = None):
        self.spec = spec
        # prefill steps use DeepEP-style normal (throughput) kernels, decode low-latency ones
        self.cost_model = CostModel(cluster=spec.cluster, profile=profile)
        self._decode_cost_model = replace(self.cost_model, dispatch_kernel="low_latency")
        self._par = spec.parallelism()
        self._par.validate_for(spec.model)
        self._cached = lru_cache(maxsize=65536)(self._step_uncached)
        # a multi-die package with one attention-DP rank per die (Ascend 910C, CloudMatrix-Infer):
        # the replicated (non-expert) ops run per die on its share of the sequences, each die
        # reading its own weight replica; expert ops and communication stay per package
        self.dies = die_replicas(spec.cluster.device, spec.attn_tp, spec.sp)
        if self.dies > 1:
            die_cm = CostModel(cluster=replace(spec.cluster, device=die_device(spec.cluster.device)), profile=profile)
            self._die_cms = {"prefill": die_cm, "decode": replace(die_cm, dispatch_kernel="low_latency")}
            p = self._par
            self._die_par = Parallelism(tp=1, ep=p.ep, pp=p.pp, sp=1, attn_tp=1, attn_dp=p.attn_dp * self.dies,
                                        moe_tp=p.moe_tp_eff * self.dies, redundant_experts=p.redundant_experts)
        self._draft = None
        if spec.draft_model is not None and spec.draft_tokens:
            # the draft runs on the same devices with the same attention layout, dense (no EP)
            self._draft = InstanceCost(replace(spec, model=spec.draft_model, ep=1, moe_tp=1, micro_batches=1,
                                               mtp_depth=0, redundant_experts=0, draft_model=None,
                                               draft_tokens=0), profile)

    def ops(self, batch: BatchShape, par: Parallelism | None = None) -> list[list]:
        """Op lists, one per micro-batch, for ``batch`` on the busiest device (or die, with the
        die-level ``par``)."""
        s = self.spec
        mtp = s.mtp_depth > 0 and batch.phase == "decode"
        return [
            step_ops(s.model, mb, par or self._par, dtype=s.weight_dtype, moe_imbalance=s.moe_imbalance,
                     kv_dtype=s.kv_dtype, include_mtp=mtp, kernels=s.kernels,
                     dispatch_dtype=s.weight_dtype if s.weight_dtype != "bf16" else "bf16")
            for mb in _halves(batch, s.micro_batches)
        ]

    def _per_die_costs(self, batch: BatchShape, cm: CostModel) -> list[list]:
        """Op costs per micro-batch: replicated compute ops per die (expert ops stay per package,
        partitioned over EP; communication stays per package, as its fabric model counts)."""
        die_cm = self._die_cms[batch.phase]
        return [[die_cm.op_cost(o) for o in die_ops if o.stream != "comm" and not _is_expert_op(o)]
                + [cm.op_cost(o) for o in pkg_ops if o.stream == "comm" or _is_expert_op(o)]
                for pkg_ops, die_ops in zip(self.ops(batch), self.ops(batch, self._die_par))]

    def _step_uncached(self, batch: BatchShape) -> StepCost:
        cm = self._decode_cost_model if batch.phase == "decode" else self.cost_model
        if self.dies > 1:
            target = cm.compose(self._per_die_costs(batch, cm))
        else:
            target = cm.step_cost(self.ops(batch))
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

    def step(self, batch: BatchShape) -> StepCost:
        """StepCost of one step of ``batch`` (the whole instance's batch, all DP ranks)."""
        return self._cached(batch)
