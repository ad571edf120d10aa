"""Per-micro-batch costs of each pipeline stage: forward, backward-input, backward-weight.

Forward work is ``workloads.ops.step_ops`` of one micro-batch on one device (the training
forward is a prefill with logits for every token), timed by ``CostModel.op_cost``. Backward
is derived from the same ops:

* GEMMs and grouped GEMMs: backward-input (dgrad) and backward-weight (wgrad) each repeat the
  forward FLOPs on transposed shapes; each is timed as the forward op.
* Attention (FlashAttention-style, scores recomputed): backward = ``ATTN_BWD_FACTOR`` x
  forward, all of it backward-input: 2.5 x the FLOPs (FlashAttention-2, Dao, arXiv 2307.08691
  §3.1: the forward runs 2 matmuls per tile (QK^T, PV), the backward 5 (QK^T again, dV, dP, dQ,
  dK)) at a lower FLOP rate (atomic dQ accumulation, less reuse per tile): on H100, head dim
  128, causal, 4K, FlashAttention-2 runs the forward at 319 TFLOPS and forward + backward at
  294 TFLOPS (flash-attention README figures), so the backward runs at 285 TFLOPS, 0.89 of the
  forward rate, and takes 2.80 x the forward time (``attention_backward_factor``).
* Elementwise ops (norms, activations, RoPE): backward = 2 x forward bytes (read input and
  output gradient, write input gradient), backward-input.
* Embedding: the backward is a scatter-add into the table, timed as the forward, backward-weight.
* Recomputation (``job.recompute``): ``selective`` reruns the elementwise ops and MLA's
  up-projections (q_b_proj, kv_b_proj) in the backward (DeepSeek-V3 §3.2.3); ``full`` reruns
  the whole forward compute.
* Communication: every forward collective (TP all-reduce, EP dispatch/combine, CP KV
  all-gather, Ulysses all-to-alls) has a backward twin of the same size (the combine's
  backward is a dispatch-sized exchange and vice versa); ring attention's backward passes
  3 x the forward volume (2105.13120: 6(N-1) vs 2(N-1) B Z (L/N) A).

Overlap: a lone chunk (every chunk of 1F1B/ZB1P, DualPipe's warm-up and cool-down chunks)
runs its communication exposed. DualPipe's F&B pairs run one micro-batch's communication
under the other's compute: ``max(compute x SMs/(SMs - comm_sms), comm) + fill``, where fill is
one layer's worth of the shorter stream that cannot hide (the first layer's compute before
any communication exists, the last layer's communication after compute ends).
Ring attention's K/V passes overlap the block attention of the same layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

from hardware.catalog import get_cluster
from hardware.collectives import collective_time
from hardware.types import Cluster
from simulator.costmodel import CostModel
from workloads.accounting import ACT_BYTES, dtype_bytes
from workloads.models import ModelConfig, get_model
from workloads.op import ATTN_PREFILL, COLLECTIVE, ELEMENTWISE, EMBEDDING, GEMM, GROUPED_GEMM, Op
from workloads.layout import Layout
from workloads.ops import BatchShape
from workloads.sequence_parallel import model_sp_attention, ring_exposed_s
from workloads.training import TrainingJob

from simulator.training.layers import LayerTemplates, balanced_split, even_split
from simulator.training.memory import data_parallel_groups, stage_params
from simulator.training.pipeline import StageTimes, pipeline_stages
from simulator.training.recipe import fp8_cast_ops, loss_ops
from simulator.training.schedules import get_schedule

__all__ = ["ATTN_BWD_FACTOR", "ELEMENTWISE_BWD_FACTOR", "OPTIMIZER_HBM_FRACTION", "SharedCosts", "StageCost",
           "StageInputs", "TrainingPlan", "stage_inputs", "stage_cost", "plan_job", "dp_tail_phases", "dp_tails",
           "held_stages"]

#: achievable fraction of HBM bandwidth for the (memory-bound, fused) AdamW update
OPTIMIZER_HBM_FRACTION = 0.8

#: FlashAttention-2 on H100 SXM5, head dim 128, causal, sequence 4K (Dao-AILab/flash-attention
#: README @ 0251105: assets/flash3_fp16_fwd.png panel d, forward; assets/flash2_h100_fwd_bwd_benchmark.png
#: panel d, forward + backward), TFLOP/s; backward FLOPs = 2.5 x forward
FA2_H100_FWD_TFLOPS = 319.0
FA2_H100_FWD_BWD_TFLOPS = 294.0
ATTN_BWD_FLOPS_RATIO = 2.5


def attention_backward_factor(fwd_tflops: float = FA2_H100_FWD_TFLOPS,
                              fwd_bwd_tflops: float = FA2_H100_FWD_BWD_TFLOPS,
                              flops_ratio: float = ATTN_BWD_FLOPS_RATIO) -> float:
    """Backward / forward time of FlashAttention from its published forward and forward+backward
    rates: per forward FLOP the pair takes (1 + ratio) / fwd_bwd, the forward 1 / fwd, the
    backward the rest."""
    backward_time = (1.0 + flops_ratio) / fwd_bwd_tflops - 1.0 / fwd_tflops
    return backward_time * fwd_tflops


#: attention backward / forward time
ATTN_BWD_FACTOR = attention_backward_factor()
#: elementwise backward / forward (reads input + grad, writes grad: 2x the traffic)
ELEMENTWISE_BWD_FACTOR = 2.0
# ops that exist only for inference (KV-cache writes/gathers)
_INFERENCE_ONLY = ("kv_cache_write", "kv_cache_gather")
_SELECTIVE_RECOMPUTE_GEMMS = ("q_b_proj", "kv_b_proj")


@dataclass(frozen=True)
class StageCost:
    """One micro-batch on one pipeline stage (one device), in seconds / bytes.

    ``fwd``, ``bwd_input``, ``bwd_weight``, ``recompute``: compute seconds.
    ``fwd_comm_s``, ``bwd_comm_s``: communication that lies inside the chunk (TP, EP, SP/CP).
    ``act_bytes``: activations kept from the F to the B. ``layers``: layers on the stage.
    """

    stage: int
    layers: int
    fwd: float
    bwd_input: float
    bwd_weight: float
    recompute: float
    fwd_comm_s: float
    bwd_comm_s: float
    act_bytes: float
    flops_fwd: float
    ops: tuple[Op, ...] = field(default=(), repr=False)

    @property
    def f_s(self) -> float:
        """A lone forward chunk: compute then exposed communication."""
        return self.fwd + self.fwd_comm_s

    @property
    def bi_s(self) -> float:
        return self.bwd_input + self.recompute + self.bwd_comm_s

    @property
    def w_s(self) -> float:
        return self.bwd_weight


def ops_parallelism(job: TrainingJob, model: ModelConfig) -> tuple[Layout, int]:
    """The ``Layout`` ``step_ops`` costs, one EP group of one stage (``Layout.expert_group``) over
    the job's layer slices, and how many data-parallel ranks (each with its own micro-batch)
    that group spans."""
    group = job.parallelism.layout.expert_group()
    return replace(group, pp=job.parallelism.pipeline_stages), group.dp


def _split(ops: list[Op], cm: CostModel, recompute: str) -> dict[str, float]:
    out = dict(fwd=0.0, bwd_input=0.0, bwd_weight=0.0, recompute=0.0, comm=0.0, flops=0.0, attn=0.0)
    for op in ops:
        if any(op.name.endswith(s) for s in _INFERENCE_ONLY) or op.name == "pp.send":
            continue
        if op.kind == COLLECTIVE:
            out["comm"] += cm.op_cost(op).total_s
            continue
        t = cm.op_cost(op).total_s
        out["fwd"] += t
        out["flops"] += op.total_flops
        if op.kind in (GEMM, GROUPED_GEMM):
            out["bwd_input"] += t
            out["bwd_weight"] += t
            if recompute == "selective" and op.name.endswith(_SELECTIVE_RECOMPUTE_GEMMS):
                out["recompute"] += t
        elif op.kind == ATTN_PREFILL:
            out["bwd_input"] += ATTN_BWD_FACTOR * t
            out["attn"] += t
        elif op.kind == EMBEDDING:
            out["bwd_weight"] += t
        else:  # elementwise
            out["bwd_input"] += ELEMENTWISE_BWD_FACTOR * t
            if recompute == "selective" and op.kind == ELEMENTWISE:
                out["recompute"] += t
    if recompute == "full":
        out["recompute"] = out["fwd"]
    return out


def activation_bytes(ops: list[Op], recompute: str, hidden: int, tokens: int, layers: int) -> float:
    """Bytes one micro-batch leaves on a stage between its forward and its backward.

    ``none``: every GEMM input (BF16, or FP8 when the GEMM is FP8), attention Q/K/V/O and every
    elementwise input. ``selective`` (DeepSeek-V3 §3.2.3/§3.3): GEMM inputs in the GEMM's dtype,
    SwiGLU inputs in the GEMM dtype, attention output; norms, SwiGLU outputs (the down
    projections' inputs) and MLA up-projected Q/K/V are recomputed. ``full``: layer inputs only.
    Logits of the LM head (BF16) are kept in every mode.
    """
    if recompute == "full":
        extra = sum(op.bytes_written * op.count for op in ops if op.name.endswith("lm_head"))
        return layers * tokens * hidden * ACT_BYTES + extra
    total = 0.0
    for op in ops:
        if any(op.name.endswith(s) for s in _INFERENCE_ONLY) or op.kind == COLLECTIVE:
            continue
        s, c = op.shape, op.count
        in_b = min(dtype_bytes(op.dtype), ACT_BYTES)
        if op.kind == GEMM:
            rows = s["m"] * s.get("batch", 1) * s["k"]
            if recompute == "selective" and op.name.endswith("_down"):
                continue
            total += rows * in_b * c
            if op.name.endswith("lm_head"):
                total += op.bytes_written * c
        elif op.kind == GROUPED_GEMM:
            if recompute == "selective" and op.name.endswith("_down"):
                continue
            total += s["tokens_total"] * s["k"] * in_b * c
        elif op.kind == ATTN_PREFILL:
            total += (op.bytes_written if recompute == "selective" else op.bytes_read + op.bytes_written) * c
        elif op.kind == ELEMENTWISE:
            if recompute == "selective":
                if op.name.endswith("_act"):
                    gemm_b = min([ACT_BYTES] + [dtype_bytes(o.dtype) for o in ops if o.kind in (GEMM, GROUPED_GEMM)])
                    total += op.bytes_read / ACT_BYTES * gemm_b * c
                continue
            total += op.bytes_read * c
    return total


@dataclass(frozen=True)
class TrainingPlan:
    """Everything the schedule needs for one job: per-stage costs, p2p and overlap rules."""

    job: TrainingJob
    model: ModelConfig
    cluster: Cluster
    cost_model: CostModel
    stages: tuple[StageCost, ...]
    p2p_s: float
    sm_fraction: float
    ranks_per_group: int
    split: tuple[tuple[int, int], ...] = ()  # (dense, moe) layers per stage

    @cached_property
    def schedule(self) -> str:
        return self.job.parallelism.pp_schedule

    def fb_phases(self, sf: int, sb: int) -> dict[str, float]:
        """An F of stage ``sf`` overlapped with a full B of stage ``sb`` (DualPipe's F&B)."""
        f, b = self.stages[sf], self.stages[sb]
        comp = {"forward": f.fwd, "backward_input": b.bwd_input, "backward_weight": b.bwd_weight,
                "recompute": b.recompute}
        compute = sum(comp.values())
        comm = f.fwd_comm_s + b.bwd_comm_s
        if comm <= 0:
            return comp
        slowed = compute / (1.0 - self.sm_fraction)
        layers = max(1, max(f.layers, b.layers))
        total = max(slowed, comm) + min(slowed, comm) / (2 * layers)
        return {**comp, "comm_sm_slowdown": slowed - compute, "exposed_comm": total - slowed}

    def stage_times(self) -> StageTimes:
        st = self.stages
        fph = [{"forward": s.fwd, "exposed_comm": s.fwd_comm_s} for s in st]
        biph = [{"backward_input": s.bwd_input, "recompute": s.recompute, "exposed_comm": s.bwd_comm_s} for s in st]
        wph = [{"backward_weight": s.bwd_weight} for s in st]
        bph = [{**bi, "backward_weight": s.bwd_weight} for bi, s in zip(biph, st)]
        pp = self.job.parallelism.pp
        sched = get_schedule(self.schedule)

        def p2p(d: int, s: int) -> float:  # a hop that stays on one device (DualPipeV's fold) is free
            return 0.0 if sched.free_hop(pp, s) else self.p2p_s

        return StageTimes(fph, bph, biph, wph, self.fb_phases, p2p, [s.act_bytes for s in st])


def _sp_ops(job: TrainingJob, model: ModelConfig, layers: int) -> tuple[list[Op], float]:
    """Sequence-parallel attention collectives of one micro-batch on one stage (forward), and
    the backward multiple of their volume (1 for Ulysses, 3 for ring)."""
    p = job.parallelism
    if p.sp <= 1 or layers == 0:
        return [], 1.0
    sp = model_sp_attention(p.sp_kind, model, job.micro_batch_size, job.seq_len // p.cp, p.sp, p.tp)
    ops = [op for op in sp.ops() if op.kind == COLLECTIVE]
    ops = [replace(op, count=op.count * layers) for op in ops]
    return ops, (3.0 if p.sp_kind == "ring" else 1.0)


def _extras(job: TrainingJob, model: ModelConfig, ops: list[Op], cm: CostModel) -> dict[str, float]:
    """Training-only work of a stage (``recipe``): FP8 casts around every FP8 GEMM, the loss."""
    fwd, b_in, b_w = fp8_cast_ops(ops, model.moe.top_k if model.moe else 1) if job.precision == "fp8" else ([], [], [])
    l_fwd, l_bwd = loss_ops(ops)
    t = lambda xs: sum(cm.op_cost(op).total_s for op in xs)  # noqa: E731
    return {"fwd": t(fwd) + t(l_fwd), "bwd_input": t(b_in) + t(l_bwd), "bwd_weight": t(b_w)}


def _stage_parts(job: TrainingJob, model: ModelConfig, cm: CostModel, ops: list[Op]) -> dict[str, float]:
    parts = _split(ops, cm, job.recompute)
    for k, v in _extras(job, model, ops, cm).items():
        parts[k] += v
    return parts


def _layer_split(job: TrainingJob, model: ModelConfig, cm: CostModel, templates: LayerTemplates,
                 stages: int) -> tuple[tuple[int, int], ...]:
    """Layers per stage: ``even`` (contiguous, extra layers first) or ``balanced`` (the end
    stages' counts that minimise the busiest device, ``layers.balanced_split``)."""
    if job.layer_split == "even":
        return even_split(model, stages)
    # DualPipe hides a chunk's communication under the other chunk's compute: its devices are
    # as busy as their compute; the other schedules run it exposed
    comm_weight = 0.0 if get_schedule(job.parallelism.pp_schedule).overlaps_chunk_comm() else 2.0
    work = {}
    for g in ("embed", "dense", "moe", "head", "mtp"):
        parts = _stage_parts(job, model, cm, list(templates.groups[g]))
        work[g] = parts["fwd"] + parts["bwd_input"] + parts["bwd_weight"] + parts["recompute"] + comm_weight * parts["comm"]

    def load(dense: int, moe: int, first: bool, last: bool) -> float:
        return (dense * work["dense"] + moe * work["moe"] + first * work["embed"]
                + last * (work["head"] + work["mtp"]))

    return balanced_split(model, stages, held_stages(job), load)


@dataclass(frozen=True)
class StageInputs:
    """What costing a stage of ``job`` needs: its model and cluster, the cost model, the
    per-layer operator templates of one micro-batch and the (dense, MoE) layers per stage."""

    job: TrainingJob
    model: ModelConfig
    cluster: Cluster
    cost_model: CostModel
    templates: LayerTemplates
    split: tuple[tuple[int, int], ...]
    ranks_per_group: int
    shared: SharedCosts

    @property
    def profile(self):
        return self.shared.profile

    def key(self, stage: int) -> tuple:
        """What a stage's cost depends on: its layers and whether it is the first or the last."""
        return (*self.split[stage], stage == 0, stage == len(self.split) - 1)


@dataclass(frozen=True)
class SharedCosts:
    """What the layouts of one batch (``simulate_trainings``) share, built on first use: one
    cost model per (cluster, reserved SMs, EP kernel release), so that its op-time memo serves
    every layout; one ``LayerTemplates`` per per-layer shape (layouts that differ only in pp or
    schedule have the same layers); every distinct stage (``stage_cost``) and the time of every
    distinct collective (gradient sync, parameter gathers, point-to-point) of the profile.
    Owned by its caller; no state outlives it."""

    profile: object = None
    models: dict = field(default_factory=dict, repr=False)
    layers: dict = field(default_factory=dict, repr=False)
    stages: dict = field(default_factory=dict, repr=False)
    collectives: dict = field(default_factory=dict, repr=False)

    def stage_cost(self, inp: StageInputs, s: int) -> StageCost:
        """``stage_cost(inp, s)``, once per distinct stage of the batch. A stage's cost reads
        its job's schedule only through the ZeRO-3 gathers (whose data-parallel groups count
        DualPipe's mirror copy), so below ZeRO-3 layouts that differ only in their schedule
        share the stages with the same layers and ends (``StageInputs.key``)."""
        job, p = inp.job, inp.job.parallelism
        if p.zero_stage < 3:
            job = job.model_copy(update={"parallelism": p.model_copy(update={"pp_schedule": "1f1b"})})
        key = (job, inp.key(s))
        if key not in self.stages:
            self.stages[key] = stage_cost(inp, s)
        return self.stages[key]

    def collective_s(self, kind: str, nbytes: float, group: int, cluster: Cluster,
                     placement: list[int] | None = None) -> float:
        """``hardware.collectives.collective_time(...).seconds`` with this profile, each distinct
        call once."""
        key = (kind, nbytes, group, cluster.name, None if placement is None else tuple(placement))
        if key not in self.collectives:
            self.collectives[key] = collective_time(kind, nbytes, group, cluster, placement=placement,
                                                    profile=self.profile).seconds
        return self.collectives[key]

    def cost_model(self, job: TrainingJob, cluster: Cluster) -> CostModel:
        key = (cluster.name, job.comm_sms, job.ep_kernel_release)
        if key not in self.models:
            sms = job.comm_sms
            kw = {} if sms is None else {"comm_sm_fraction": sms / cluster.device.compute_units}
            self.models[key] = CostModel(cluster, profile=self.profile, dispatch_release=job.ep_kernel_release, **kw)
        return self.models[key]

    def templates(self, job: TrainingJob, model: ModelConfig, batch: BatchShape, par: Layout) -> LayerTemplates:
        key = (model.name, batch, replace(par, pp=1), job.precision, job.moe_imbalance, job.include_mtp)
        if key not in self.layers:
            self.layers[key] = LayerTemplates.build(model, batch, par, job.precision, job.moe_imbalance,
                                                    job.include_mtp, dispatch_dtype=job.precision)
        return self.layers[key]


def _shared(shared: SharedCosts | None, profile) -> SharedCosts:
    """``shared``, or a fresh ``SharedCosts`` of ``profile`` (refusing one of another profile)."""
    if shared is None:
        return SharedCosts(profile)
    if shared.profile is not profile:
        raise ValueError("the shared costs were built for another profile")
    return shared


def stage_inputs(job: TrainingJob, profile=None, shared: SharedCosts | None = None) -> StageInputs:
    """The cost model, layer templates and layer split of ``job`` (``stage_cost``'s inputs);
    ``shared``: the batch's cost models and templates (None: ``job``'s own)."""
    shared = _shared(shared, profile)
    model = get_model(job.model)
    cluster = get_cluster(job.cluster)
    cm = shared.cost_model(job, cluster)
    par, group_ranks = ops_parallelism(job, model)
    batch = BatchShape.prefill(group_ranks * job.micro_batch_size, job.seq_len, logits_for="all")
    stages = pipeline_stages(job.parallelism.pp_schedule, job.parallelism.pp)
    templates = shared.templates(job, model, batch, par)
    split = _layer_split(job, model, cm, templates, stages)
    return StageInputs(job, model, cluster, cm, templates, split, group_ranks, shared)


def stage_cost(inp: StageInputs, s: int) -> StageCost:
    """One micro-batch on pipeline stage ``s``: compute, the communication inside the chunk
    (TP/EP, SP/CP, ZeRO-3 gathers) and the activations it keeps."""
    job, model, cm = inp.job, inp.model, inp.cost_model
    p = job.parallelism
    stages = len(inp.split)
    dense_n, moe_n = inp.split[s]
    ops = inp.templates.stage_ops(dense_n, moe_n, s == 0, s == stages - 1)
    layers = dense_n + moe_n
    keep = [op for op in ops if not (op.kind == COLLECTIVE and op.name.endswith("sp_kv_gather"))]
    sp_ops, ring_bwd = _sp_ops(job, model, layers)
    if p.cp > 1:  # context parallel: K/V all-gathered per layer over the cp ranks
        kv = [op for op in ops if op.name.endswith("sp_kv_gather")]
        keep += [replace(op, group_size=p.cp, name=op.name.replace("sp_kv_gather", "cp_kv_gather"),
                         bytes_per_rank=op.bytes_per_rank * p.cp / (p.sp * p.cp)) for op in kv]
    parts = _stage_parts(job, model, cm, keep)
    sp_fwd = sum(cm.op_cost(op).total_s for op in sp_ops)
    sp_bwd = sp_fwd * ring_bwd
    if p.sp_kind == "ring" and sp_ops:  # K/V passes hide under the block attention
        passes, block = layers * (p.sp - 1), parts["attn"] / (layers * p.sp)
        sp_fwd = layers * ring_exposed_s(block, sp_fwd / passes, p.sp)
        sp_bwd = layers * ring_exposed_s(ATTN_BWD_FACTOR * block, sp_bwd / passes, p.sp)
    zero3 = _zero3_gather_s(job, model, inp.cluster, s, stages, inp.shared, inp.split)
    tokens_local = job.micro_batch_size * job.seq_len // p.seq_split
    act = activation_bytes(keep, job.recompute, model.hidden_size, tokens_local, layers)
    return StageCost(
        stage=s, layers=layers, fwd=parts["fwd"], bwd_input=parts["bwd_input"], bwd_weight=parts["bwd_weight"],
        recompute=parts["recompute"], fwd_comm_s=parts["comm"] + sp_fwd + zero3,
        bwd_comm_s=parts["comm"] + sp_bwd + zero3, act_bytes=act, flops_fwd=parts["flops"], ops=tuple(keep))


def plan_job(job: TrainingJob, profile=None, shared: SharedCosts | None = None) -> TrainingPlan:
    """Cost every pipeline stage of ``job`` for one micro-batch: each distinct stage (its
    ``StageInputs.key``) once, the stages that share it as copies. ``shared``: what a batch of
    layouts shares (``SharedCosts`` of the same ``profile``; None: nothing)."""
    inp = stage_inputs(job, profile, shared)
    model, cluster, p = inp.model, inp.cluster, job.parallelism
    stages = len(inp.split)
    costed: dict[tuple, StageCost] = {}
    out = []
    for s in range(stages):
        key = inp.key(s)
        if key not in costed:
            costed[key] = inp.shared.stage_cost(inp, s)
        out.append(replace(costed[key], stage=s))
    # point-to-point activations between adjacent stages (TP ranks each send their 1/tp slice)
    tokens_local = job.micro_batch_size * job.seq_len // p.seq_split
    nbytes = tokens_local * model.hidden_size * 2.0 / p.tp
    sd = p.stage_devices
    if 2 * sd <= cluster.num_devices and stages > 1:
        p2p = inp.shared.collective_s("send_recv", nbytes, 2, cluster, placement=[0, sd])
    else:
        p2p = inp.shared.collective_s("send_recv", nbytes, 2, cluster) if stages > 1 else 0.0
    cm = inp.cost_model
    return TrainingPlan(job, model, cluster, cm, tuple(out), p2p, cm.sm_fraction, inp.ranks_per_group, inp.split)


def held_stages(job: TrainingJob) -> list[tuple[int, ...]]:
    """Stages each pipeline device holds (two for DualPipe / DualPipeV)."""
    p = job.parallelism
    return get_schedule(p.pp_schedule).held_stages(p.pp)


def _groups_placement(job: TrainingJob, cluster: Cluster, size: int, stride: int, mirror: bool) -> list[int] | None:
    """Device ids of a data-parallel group (stage-major layout; DualPipe's copy in the mirror
    stage block). None falls back to contiguous ranks when the layout does not fit the cluster."""
    sd = job.parallelism.stage_devices
    half = size // 2 if mirror else size
    ids = [k * stride for k in range(half)]
    if mirror:
        off = (job.parallelism.pp - 1) * sd if job.parallelism.pp > 1 else sd
        ids += [off + i for i in ids]
    if len(set(ids)) != len(ids) or max(ids) >= cluster.num_devices:
        return None
    return ids


def _zero3_gather_s(job: TrainingJob, model: ModelConfig, cluster: Cluster, stage: int, stages: int,
                    shared: SharedCosts, split: tuple[tuple[int, int], ...]) -> float:
    """ZeRO-3: all-gather of one stage's BF16 parameters before its forward (and backward)."""
    if job.parallelism.zero_stage < 3:
        return 0.0
    g_dense, g_expert = data_parallel_groups(job)
    sp = stage_params(job, model, stage, stages, split[stage])
    t = 0.0
    for n, g in ((sp.dense, g_dense), (sp.expert, g_expert)):
        if g > 1 and n > 0:
            t += shared.collective_s("all_gather", 2.0 * n, g, cluster)
    return t


def _held_params(plan: TrainingPlan, device: int) -> tuple[float, float]:
    """(dense, expert) parameters on ``device``: those of the stages it holds."""
    job = plan.job
    stages = job.parallelism.pipeline_stages
    held = held_stages(job)[device]
    sp = [stage_params(job, plan.model, s, stages, plan.split[s] if plan.split else None) for s in held]
    return sum(x.dense for x in sp), sum(x.expert for x in sp)


def dp_tails(plan: TrainingPlan, profile=None, shared: SharedCosts | None = None) -> list[list[tuple[str, float]]]:
    """``dp_tail_phases`` of every pipeline device, computed once per distinct parameter count
    (a device's tail depends on the job and on its parameters only)."""
    shared = _shared(shared, profile)
    tails: dict[tuple[float, float], list[tuple[str, float]]] = {}
    out = []
    for d in range(plan.job.parallelism.pp):
        key = _held_params(plan, d)
        if key not in tails:
            tails[key] = dp_tail_phases(plan, d, profile, shared)
        out.append(tails[key])
    return out


def dp_tail_phases(plan: TrainingPlan, device: int, profile=None,
                   shared: SharedCosts | None = None) -> list[tuple[str, float]]:
    """What device ``device`` does after its last backward: gradient reduction over data
    parallelism, the optimizer update of its shard, the parameter all-gather (ZeRO 1/2)."""
    shared = _shared(shared, profile)
    job, cluster = plan.job, plan.cluster
    p = job.parallelism
    dense, expert = _held_params(plan, device)
    g_dense, g_expert = data_parallel_groups(job)
    mirror = get_schedule(p.pp_schedule).stage_replicas() == 2  # DualPipe's copy in the mirror stage block
    inner = p.tp * p.sp * p.cp
    grad_b = dtype_bytes(job.grad_dtype)
    comm, gather = 0.0, 0.0
    for n, g, stride in ((dense, g_dense, p.tp), (expert, g_expert, max(p.ep, inner))):
        if g <= 1 or n <= 0:
            continue
        place = _groups_placement(job, cluster, g, stride, mirror)
        if p.zero_stage == 0:
            comm += shared.collective_s("all_reduce", grad_b * n, g, cluster, placement=place)
        else:
            comm += shared.collective_s("reduce_scatter", grad_b * n, g, cluster, placement=place)
            if p.zero_stage < 3:
                gather += shared.collective_s("all_gather", 2.0 * n, g, cluster, placement=place)
    shard = (dense / g_dense + expert / g_expert) if p.zero_stage >= 1 else dense + expert
    mom_b = dtype_bytes(job.optimizer_moment_dtype)
    nbytes = shard * (grad_b + 2 * 4.0 + 2 * 2 * mom_b + 2.0)
    opt = nbytes / (cluster.device.hbm_bytes_per_s * OPTIMIZER_HBM_FRACTION)
    return [("dp_grad_sync", comm), ("optimizer", opt), ("dp_param_gather", gather)]
