"""``clustersim estimate``: cost-model answers without a simulation.

Each function resolves hardware names by the catalog's one rule (``hardware.catalog.cluster_for``:
a cluster name is that cluster, a device name the smallest catalog cluster of that device
holding the group), builds the operator list in ``workloads`` and times it
with ``simulator.costmodel`` (compute) and ``hardware.collectives`` / ``hardware.dispatch``
(communication). Every answer is a plain dict with ``seconds`` and a breakdown that names the
source of each number.

``estimate_step`` and ``estimate_serving`` first run ``check_instance``: the deployment rules
``clustersim simulate`` applies (``workloads.deployment_rules``: dtype support, the layout's
rules, weights and one request in memory) on the instance they cost, plus the KV of the asked
batch; a violation is a ``ValueError`` naming the flag.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hardware import catalog
from hardware.types import Cluster

if TYPE_CHECKING:  # the cost model and the workloads are imported by the commands that use them
    from simulator.costmodel import StepCost
    from workloads.layout import Layout


def _profile(profile: Any, cluster: Cluster) -> tuple[Any, dict]:
    """The profile ``profile`` names for the cluster's device (``calibration.resolve``, the one
    resolver; "default": the device's shipped profile, else the H200 one transferred) and the
    record of it every estimate reports (name, path, GPU, date, transfer, fallback tables)."""
    from calibration.resolve import profile_info, resolve_profile

    prof = resolve_profile(profile, cluster.device.name)
    return prof, profile_info(prof, cluster.device.name)


#: ``Layout`` (and pool) fields of ``check_instance``'s problems -> the estimate flags that set them
_FLAGS = {"weight_dtype": "--dtype", "kv_dtype": "--kv-dtype",
          "tp": "--tp", "sp": "--tp", "dp": "--tp/--ep (devices)", "ep": "--ep", "moe_tp": "--ep",
          "redundant_experts": "--redundant-experts", "devices": "--tp/--ep (devices)",
          "micro_batches": "--micro-batches", "mtp_depth": "--mtp-acceptance", "mtp_acceptance": "--mtp-acceptance"}


def check_instance(m, cluster: Cluster, layout: Layout, *, dtype: str, kv_dtype: str = "bf16", mtp_depth: int = 0,
                   mtp_acceptance: float = 0.0, seqs_per_device: int = 1, tokens_per_seq: int = 1,
                   batch_flag: str = "--batch") -> None:
    """Refuse an estimate ``clustersim simulate`` would refuse: the deployment rules
    (``workloads.deployment_rules``: dtype support, ``serving_layout_problems`` of ``layout``
    as one instance, MTP, weights and one request of ``tokens_per_seq`` tokens in memory);
    then the KV of ``seqs_per_device`` such sequences on each device (``layout_memory``, as
    the engine sizes its KV) must fit beside the weights. Raises ``ValueError``: ``--flag
    value: problem``."""
    from workloads.deployment_rules import (
        dtype_problems,
        layout_memory,
        memory_problems,
        mtp_problems,
        serving_layout_problems,
    )
    from workloads.layout import Problem

    devices = layout.devices
    mem = layout_memory(m, layout, cluster.device, dtype, kv_dtype, mtp=mtp_depth > 0)
    found = (dtype_problems(cluster.device, weight_dtype=dtype)
             + serving_layout_problems(m, layout, cluster, devices) + mtp_problems(m, mtp_depth, mtp_acceptance))
    if devices > cluster.num_devices:
        found.append(Problem("devices", f"pool 1x{devices} = {devices} devices exceed cluster {cluster.name}'s "
                                        f"{cluster.num_devices}"))
    found += memory_problems(mem, cluster.device, max(1, tokens_per_seq) + 1)
    if found:
        field, problem = found[0]
        raise ValueError(f"{_FLAGS.get(field, field)}: {problem}")
    need = seqs_per_device * tokens_per_seq
    if need > mem.kv_capacity_tokens:
        most = int(mem.kv_capacity_tokens // max(tokens_per_seq, 1))
        raise ValueError(f"{batch_flag} {seqs_per_device}: {seqs_per_device} sequences x {tokens_per_seq} tokens need KV for {need:,} tokens "
                         f"per device, but after {mem.weight_bytes / 2**30:.1f} GiB of weights {cluster.device.name} "
                         f"holds {int(mem.kv_capacity_tokens):,} (valid: at most {most} sequences of that length)")


def _step_dict(cost: StepCost, **extra: Any) -> dict:
    return {**extra, "seconds": cost.seconds, "compute_s": cost.compute_s, "comm_s": cost.comm_s,
            "exposed_comm_s": cost.exposed_comm_s, "micro_batches": cost.micro_batches,
            "seconds_by_source": cost.sources(), "ops": cost.breakdown()}


def _kernel_set(name: str) -> dict:
    """What an estimate assumed about kernels: the set's name and, per operator family, the
    implementation (decode attention, MLA decode, experts, FP8 GEMMs, glue) and what times it."""
    from workloads.kernel_sets import kernel_set

    return kernel_set(name).describe()


def estimate_step(model: str, hardware: str, phase: str, batch: int, seq: int | None = None,
                  context: int | None = None, tp: int = 1, dtype: str = "bf16", profile: Any = "default",
                  kernels: str = "eager", lengths: str = "mixed") -> dict:
    """One forward step of the whole model (bf16 by default) on ``tp`` GPUs of one node; a prefill
    with ``context`` processes ``seq`` new tokens per sequence after ``context`` cached ones (a later
    chunk of chunked prefill, a prefix-cache hit).

    ``kernels="eager"`` costs the step as a plain PyTorch implementation runs it (separate norm,
    residual-add, rotary and activation kernels; what ``calibration.groundtruth`` measures);
    ``"fused"`` costs a serving engine's fused glue kernels (see ``workloads.ops_blocks``).
    ``lengths``: a decode batch's sequences, "mixed" (a serving batch at mean ``context``) or
    "equal" (every one at ``context``; ``simulator.costmodel.DECODE_LENGTHS``)."""
    from simulator.costmodel import CostModel
    from workloads.kernel_sets import kernel_set
    from workloads.layout import Layout
    from workloads.models import get_model
    from workloads.ops import BatchShape, step_ops

    m = get_model(model)
    kernel_set(kernels)  # an unknown set is a user error naming the valid ones
    _check_lengths(lengths)
    cluster = catalog.cluster_for(hardware, tp)
    if tp > cluster.tiers[0].span_devices:
        raise ValueError(f"--tp {tp} exceeds the {cluster.tiers[0].span_devices}-device scale-up domain of {cluster.name}")
    if phase == "prefill":
        if not seq:
            raise ValueError("prefill needs --seq S")
        shape = BatchShape.prefill(batch, seq, context_tokens=context or 0)  # a chunk after `context` cached
    elif phase == "decode":
        if context is None:
            raise ValueError("decode needs --context C")
        shape = BatchShape.decode(batch, context)
    else:
        raise ValueError(f"--phase {phase!r} (valid: prefill, decode)")
    lay = Layout(tp=tp, ep=tp if m.is_moe else 1, moe_tp=1)
    check_instance(m, cluster, lay, dtype=dtype, seqs_per_device=batch, tokens_per_seq=(seq or 0) + (context or 0))
    prof, info = _profile(profile, cluster)
    cm = CostModel(cluster=cluster, profile=prof, decode_lengths=lengths)
    cost = cm.step_cost([step_ops(m, shape, lay, dtype=dtype, kernels=kernels)])
    return _step_dict(cost, model=m.name, hardware=cluster.name, device=cluster.device.name, phase=phase,
                      batch=batch, seq=seq, context=context, tp=tp, kernels=kernels, lengths=lengths,
                      kernel_set=_kernel_set(kernels), profile=info)


def _check_lengths(lengths: str) -> None:
    from simulator.costmodel import DECODE_LENGTHS

    if lengths not in DECODE_LENGTHS:
        raise ValueError(f"--lengths {lengths!r} (valid: {', '.join(DECODE_LENGTHS)})")


def estimate_collective(hardware: str, op: str, gpus: int, bytes_per_rank: float, profile: Any = "default") -> dict:
    """One collective on ``gpus`` devices of a catalog cluster."""
    from hardware.collectives import collective_time

    cluster = catalog.cluster_for(hardware, gpus)
    if gpus > cluster.num_devices:
        raise ValueError(f"--gpus {gpus} exceeds {cluster.name}'s {cluster.num_devices} devices")
    prof, info = _profile(profile, cluster)  # its tables count only for this device's fabric
    cost = collective_time(op, bytes_per_rank, gpus, cluster, profile=prof)
    return {"hardware": cluster.name, "op": op, "gpus": gpus, "bytes_per_rank": bytes_per_rank,
            "seconds": cost.seconds, "algorithm": cost.algorithm, "protocol": cost.protocol, "tiers": list(cost.tiers),
            "bus_bytes_per_s": cost.bus_bytes_per_s, "breakdown": dict(cost.breakdown), "source": cost.source,
            "profile": info}


def estimate_dispatch(hardware: str, ep: int, tokens_per_rank: int, model: str = "deepseek-v3",
                      kernel: str = "low_latency", dispatch_dtype: str | None = None,
                      combine_dtype: str = "bf16", profile: Any = "default") -> dict:
    """MoE dispatch + combine on one EP rank (uniform routing; node-limited as the model says).

    Where the profile measured this shape on this device, fabric and EP size (``moe_dispatch.csv``:
    ``all_to_all_single`` of routed copies) the measurement replaces the modelled kernel."""
    from hardware.dispatch import dispatch_combine_time
    from simulator.costmodel import CostModel
    from workloads.models import get_model

    m = get_model(model)
    if m.moe is None:
        raise ValueError(f"{m.name} has no experts (choose an MoE model)")
    cluster = catalog.cluster_for(hardware, ep)
    if dispatch_dtype is None:
        dispatch_dtype = "int8" if "int8" in cluster.device.peak_flops_per_s and "fp8" not in cluster.device.peak_flops_per_s else "fp8"
    e = m.moe
    cost = dispatch_combine_time(tokens_per_rank, m.hidden_size, e.top_k, ep, cluster, num_experts=e.num_routed_experts,
                                 groups=e.n_group, max_groups_per_token=e.topk_group, dispatch_dtype=dispatch_dtype,
                                 combine_dtype=combine_dtype, kernel=kernel)
    prof, info = _profile(profile, cluster)
    cm = CostModel(cluster=cluster, profile=prof)
    shape = (tokens_per_rank, m.hidden_size, e.top_k, ep, e.num_routed_experts)
    meas = {d: cm.measured_dispatch(d, *shape, dt) for d, dt in (("dispatch", dispatch_dtype),
                                                                  ("combine", combine_dtype))}
    dispatch_s = meas["dispatch"][0] if meas["dispatch"] else cost.dispatch_s
    combine_s = meas["combine"][0] if meas["combine"] else cost.combine_s
    sources = {d: (meas[d][1] if meas[d] else f"{cost.source}:{d}") for d in meas}
    return {"hardware": cluster.name, "ep": ep, "tokens_per_rank": tokens_per_rank, "kernel": cost.kernel,
            "seconds": dispatch_s + combine_s, "dispatch_s": dispatch_s, "combine_s": combine_s,
            "dispatch_dtype": dispatch_dtype, "combine_dtype": combine_dtype,
            "bottleneck_tier": cost.bottleneck_tier, "nodes_per_token": cost.nodes_per_token,
            "dispatch_bytes_by_tier": dict(cost.dispatch_bytes_by_tier),
            "combine_bytes_by_tier": dict(cost.combine_bytes_by_tier),
            "source": cost.source if not any(meas.values()) else "; ".join(f"{d}: {v}" for d, v in sources.items()),
            "profile": info}


def estimate_moe_layer(model: str, hardware: str, ep: int, tokens_per_rank: int, dtype: str = "bf16",
                       kernel: str = "normal", imbalance: float = 1.0, profile: Any = "default",
                       kernels: str = "eager") -> dict:
    """One expert-parallel MoE layer per rank: router, dispatch, experts (+shared), combine."""
    from simulator.costmodel import CostModel
    from workloads.layout import Layout
    from workloads.models import get_model
    from workloads.ops import BatchShape, moe_layer_ops, step_ops

    m = get_model(model)
    if m.moe is None:
        raise ValueError(f"{m.name} is dense (choose an MoE model)")
    cluster = catalog.cluster_for(hardware, ep)
    prof, info = _profile(profile, cluster)
    shape = BatchShape.prefill(ep, tokens_per_rank)
    ops = moe_layer_ops(step_ops(m, shape, Layout(dp=ep, ep=ep, moe_tp=1), dtype=dtype, moe_imbalance=imbalance,
                                 kernels=kernels))
    cost = CostModel(cluster=cluster, profile=prof, dispatch_kernel=kernel).step_cost([ops], overlap=False)
    return _step_dict(cost, model=m.name, hardware=cluster.name, ep=ep, tokens_per_rank=tokens_per_rank,
                      kernels=kernels, kernel_set=_kernel_set(kernels), profile=info)


def estimate_attention(hardware: str, sp: int, sp_kind: str, seq: int, heads: int, head_dim: int,
                       batch: int = 1, kv_heads: int | None = None, profile: Any = "default") -> dict:
    """Sequence-parallel causal attention (prefill) of one layer: collectives plus attention."""
    from workloads.sequence_parallel import SpAttention, ring_exposed_s, ring_volume, ulysses_volume_per_link
    from simulator.costmodel import CostModel

    cluster = catalog.cluster_for(hardware, sp)
    prof, info = _profile(profile, cluster)
    layer = SpAttention(sp_kind, batch, seq, heads, head_dim, sp, kv_heads)
    cm = CostModel(cluster=cluster, profile=prof)
    costs = [cm.op_cost(o) for o in layer.ops()]
    compute = sum(c.total_s for c in costs if c.stream != "comm")
    comm = sum(c.total_s for c in costs if c.stream == "comm")
    if sp_kind == "ring" and sp > 1:
        # each ring step overlaps a block's attention with the next K,V pass
        block = next(c for c in costs if c.stream != "comm")
        send = next(c for c in costs if c.stream == "comm")
        seconds = compute + ring_exposed_s(block.seconds, send.seconds, sp)
        volume = ring_volume(batch, seq, heads, head_dim, sp, backward=False)
    else:
        seconds = compute + comm
        volume = ulysses_volume_per_link(seq, heads * head_dim, sp) * batch
    return {"hardware": cluster.name, "sp": sp, "sp_kind": sp_kind, "seq": seq, "heads": heads, "head_dim": head_dim,
            "seconds": seconds, "compute_s": compute, "comm_s": comm,
            "comm_elements_per_device_forward": volume,
            "ops": [{"name": c.name, "count": c.count, "seconds_each": c.seconds, "source": c.source} for c in costs],
            "profile": info}


def estimate_serving(model: str, hardware: str, phase: str, ep: int, batch_per_device: int, tp: int = 1,
                     seq: int | None = None, context: int | None = None, micro_batches: int = 1,
                     mtp_acceptance: float | None = None, dtype: str = "bf16", kv_dtype: str = "bf16",
                     imbalance: float = 1.0, redundant_experts: int = 0, profile: Any = "default",
                     kernels: str = "fused", lengths: str = "mixed") -> dict:
    """Steady state of one instance: attention DP x TP over ``ep`` devices, MoE EP ``ep``.

    Decode: ``batch_per_device`` sequences per device at ``context`` tokens; TPOT = step /
    tokens emitted per step (1 + MTP acceptance). Prefill: ``batch_per_device`` prompts of
    ``seq`` tokens per device. ``kernels``: the kernel set (a deployment's ``pool.kernels``,
    default "fused": a serving engine's kernels). ``lengths``: the decode batch's sequences, "mixed"
    (a serving batch at mean ``context``, default) or "equal" (a benchmark batch, every one at ``context``).
    """
    from simulator.instance import InstanceCost, InstanceSpec
    from workloads.kernel_sets import kernel_set
    from workloads.layout import Layout
    from workloads.models import get_model
    from workloads.ops import BatchShape

    m = get_model(model)
    kernel_set(kernels)
    _check_lengths(lengths)
    devices = ep if m.is_moe else tp
    if devices % tp:
        raise ValueError(f"--tp {tp} does not divide the {devices} devices of the instance")
    cluster = catalog.cluster_for(hardware, devices)
    prof, info = _profile(profile, cluster)
    mtp_depth = 1 if (mtp_acceptance and phase == "decode") else 0
    lay = Layout(tp=tp, dp=devices // tp, ep=ep if m.is_moe else 1, moe_tp=1,
                 redundant_experts=redundant_experts if m.is_moe else 0, micro_batches=micro_batches)
    if phase in ("prefill", "decode"):
        check_instance(m, cluster, lay, dtype=dtype, kv_dtype=kv_dtype, mtp_depth=mtp_depth,
                       mtp_acceptance=mtp_acceptance or 0.0, seqs_per_device=batch_per_device,
                       tokens_per_seq=(seq or 0) + (context or 0) + (1 + mtp_depth if phase == "decode" else 0),
                       batch_flag="--batch-per-device")
    spec = InstanceSpec(model=m, cluster=cluster, layout=lay, weight_dtype=dtype, kv_dtype=kv_dtype,
                        moe_imbalance=imbalance, mtp_depth=mtp_depth, kernels=kernels)
    inst = InstanceCost(spec, prof).with_decode_lengths(lengths)
    seqs = batch_per_device * devices // tp
    if phase == "decode":
        if context is None:
            raise ValueError("decode needs --context C")
        new = 1 + mtp_depth  # verifying MTP drafts processes the draft token too
        cost = inst.step(BatchShape.decode(seqs, context, new_tokens=new))
        per_step = 1.0 + (mtp_acceptance or 0.0) * mtp_depth
        tpot = cost.seconds / per_step
        out = {"tpot_s": tpot, "output_tokens_per_s_per_device": seqs * per_step / cost.seconds / devices,
               "tokens_per_s_per_user": 1.0 / tpot}
    elif phase == "prefill":
        if not seq:
            raise ValueError("prefill needs --seq S")
        cost = inst.step(BatchShape.prefill(seqs, seq))
        out = {"batch_time_s": cost.seconds, "input_tokens_per_s_per_device": seqs * seq / cost.seconds / devices}
    else:
        raise ValueError(f"--phase {phase!r} (valid: prefill, decode)")
    return _step_dict(cost, model=m.name, hardware=cluster.name, phase=phase, ep=ep, tp=tp, devices=devices,
                      batch_per_device=batch_per_device, step_s=cost.seconds, **out, kernels=spec.kernels,
                      lengths=lengths,
                      kernel_set=_kernel_set(spec.kernels), profile=info)
