"""The layout space: pool choices, layouts and the picklable context every evaluation needs.

A *pool choice* fixes one pool's per-instance layout (devices, attention TP/DP/SP, PP, MoE
EP/TP, redundant experts, micro-batches, MTP, batch and chunk limits). A *layout* is a serving
mode plus one pool choice (colocated) or two (disaggregated: prefill, decode) with instance
counts. ``enumerate_layouts`` yields every layout of a ``SearchSpace`` within the device budget,
with point ids in a fixed order, so results never depend on worker order.

Objects here are small frozen dataclasses of plain values: they pickle cheaply to process-pool
workers and Ray tasks. Catalog objects (``Cluster`` holds mapping proxies that do not pickle)
are resolved in the worker from a ``ClusterRef``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from hardware.catalog import cluster_for, clusters_of, get_cluster, get_device, list_clusters
from hardware.types import Cluster

__all__ = ["ClusterRef", "PlanContext", "PoolChoice", "Layout", "Point", "context_from_plan", "pool_choices",
           "enumerate_layouts", "count_layouts", "workload_means"]


@dataclass(frozen=True)
class ClusterRef:
    """A catalog cluster by name, optionally with its device swapped (what-if sweeps) or scaled.

    ``device``: run the named cluster's fabric with another catalog device (used when the
    catalog has no cluster of a device large enough: the fabric is borrowed from a cluster
    whose device has the same scale-up and scale-out bandwidth, see ``cluster_for_device``).
    ``bandwidth_scale`` / ``hbm_scale`` multiply every fabric tier's bandwidth / the device's
    HBM capacity (one-parameter what-if sweeps).
    """

    name: str
    device: str | None = None
    bandwidth_scale: float = 1.0
    hbm_scale: float = 1.0

    @property
    def in_catalog(self) -> bool:
        return self.device is None and self.bandwidth_scale == 1.0 and self.hbm_scale == 1.0

    def resolve(self) -> Cluster:
        return _resolve(self)


@functools.lru_cache(maxsize=64)
def _resolve(ref: ClusterRef) -> Cluster:
    c = get_cluster(ref.name)
    if ref.device is not None:
        dev = get_device(ref.device)
        c = dataclasses.replace(c, device=dev, name=f"{c.name}[{dev.name}]")
    if ref.hbm_scale != 1.0:
        c = dataclasses.replace(c, device=dataclasses.replace(c.device, hbm_bytes=c.device.hbm_bytes * ref.hbm_scale))
    if ref.bandwidth_scale != 1.0:
        s = ref.bandwidth_scale
        c = dataclasses.replace(
            c, tiers=tuple(dataclasses.replace(t, bandwidth_bytes_per_s=t.bandwidth_bytes_per_s * s) for t in c.tiers),
            side_tiers=tuple(dataclasses.replace(t, bandwidth_bytes_per_s=t.bandwidth_bytes_per_s * s)
                             for t in c.side_tiers),
            device=dataclasses.replace(c.device, scale_up_bytes_per_s=c.device.scale_up_bytes_per_s * s,
                                       scale_out_bytes_per_s=c.device.scale_out_bytes_per_s * s))
    return c


def cluster_for_device(device: str, devices: int) -> ClusterRef:
    """The smallest catalog cluster of ``device`` with ``devices`` devices, else a borrowed fabric.

    Borrowing: a catalog cluster (the smallest big enough) whose device has the same scale-up
    (NVLink/UB) and scale-out (NIC) bandwidth per device and the same node size as the smallest
    catalog cluster of ``device``; only the device is swapped (e.g. H200 on ``h100-ib``'s
    NVLink 4 + 400G IB fat-tree). Such a cluster is not in the catalog, so a deployment that
    names it cannot be run by ``clustersim simulate`` until the catalog has one.
    """
    dev = get_device(device)
    try:  # the catalog's one name rule: the smallest cluster of the device that holds the budget
        return ClusterRef(cluster_for(dev.name, devices).name)
    except LookupError:
        pass
    clusters = [get_cluster(n) for n in list_clusters()]
    own = clusters_of(dev)
    node = own[0].devices_per_node if own else None
    same = [c for c in clusters if c.num_devices >= devices
            and c.device.scale_up_bytes_per_s == dev.scale_up_bytes_per_s
            and c.device.scale_out_bytes_per_s == dev.scale_out_bytes_per_s
            and (node is None or c.devices_per_node == node)]
    if not same:
        raise LookupError(f"no catalog cluster of {dev.name} has {devices} devices, and no catalog fabric of a "
                          f"device with the same NVLink/NIC bandwidth does either (clusters: {', '.join(list_clusters())})")
    return ClusterRef(min(same, key=lambda c: c.num_devices).name, device=dev.name)


@dataclass(frozen=True)
class PlanContext:
    """Everything an evaluation needs besides the layout (plain values; pickles small)."""

    model: str
    cluster: ClusterRef
    budget_devices: int
    weight_dtype: str
    kv_dtype: str
    prompt_tokens: float  # mean prompt length
    cached_tokens: float  # mean prefix-cache hit (not prefilled)
    output_tokens: float  # mean output length
    max_prompt_tokens: int
    max_output_tokens: int
    arrival_rate_per_s: float  # the target load
    arrival_cv: float  # coefficient of variation of inter-arrival times (1 = Poisson)
    ttft_slo_s: float
    tpot_slo_s: float
    percentile: float
    mtp_acceptance: float
    moe_imbalance: float
    kv_memory_fraction: float
    profile: str | None = "default"

    @property
    def prefill_tokens(self) -> float:
        """New tokens one request prefills (prompt minus its prefix-cache hit)."""
        return max(1.0, self.prompt_tokens - self.cached_tokens)

    def with_(self, **changes) -> "PlanContext":
        return dataclasses.replace(self, **changes)


def _mean_len(length) -> tuple[float, int]:
    kind = length.kind
    if kind == "fixed":
        return float(length.tokens), int(length.tokens)
    if kind == "uniform":
        return (length.min_tokens + length.max_tokens) / 2.0, int(length.max_tokens)
    return min(float(length.mean_tokens), float(length.max_tokens)), int(length.max_tokens)


def workload_means(workload) -> dict:
    """Mean prompt/output/cached tokens, their maxima, the arrival rate and its CV."""
    if workload.arrival.kind == "trace":
        from workloads.traces import workload_trace

        tr = workload_trace(workload)  # what the simulator replays: sliced, time-scaled, cut to num_requests
        arr = tr.arrival_s
        span = float(arr[-1] - arr[0]) if arr.size > 1 else 1.0
        rate = (arr.size - 1) / span if span > 0 else float(arr.size)
        gaps = np.diff(arr)
        mean_gap = float(gaps.mean()) if gaps.size else 1.0
        cv = float(gaps.std() / mean_gap) if gaps.size and mean_gap else 1.0
        return {"prompt": float(tr.prompt_tokens.mean()), "output": float(tr.output_tokens.mean()),
                "cached": float(tr.cached_tokens.mean()), "max_prompt": int(tr.prompt_tokens.max()),
                "max_output": int(tr.output_tokens.max()), "rate": rate, "cv": cv}
    p, pmax = _mean_len(workload.prompt_tokens)
    o, omax = _mean_len(workload.output_tokens)
    cv = workload.arrival.cv if workload.arrival.kind == "gamma" else 1.0
    return {"prompt": p, "output": o * workload.samples_per_request, "cached": p * workload.prefix_cache_hit_rate,
            "max_prompt": pmax, "max_output": omax, "rate": workload.arrival.rate_per_s, "cv": cv}


def resolve_hardware(plan) -> tuple[ClusterRef, int]:
    """(cluster reference, device budget) of a plan's ``hardware`` section."""
    hw = plan.hardware
    if hw.cluster is not None:
        c = get_cluster(hw.cluster)
        return ClusterRef(c.name), min(hw.devices or c.num_devices, c.num_devices)
    return cluster_for_device(hw.device, hw.devices), hw.devices


def context_from_plan(plan) -> PlanContext:
    """The evaluation context of a validated PlanConfig."""
    ref, budget = resolve_hardware(plan)
    w = workload_means(plan.workload)
    s = plan.search
    return PlanContext(
        model=plan.model, cluster=ref, budget_devices=budget, weight_dtype=plan.weight_dtype,
        kv_dtype=plan.kv_dtype, prompt_tokens=w["prompt"], cached_tokens=w["cached"], output_tokens=w["output"],
        max_prompt_tokens=w["max_prompt"], max_output_tokens=w["max_output"], arrival_rate_per_s=w["rate"],
        arrival_cv=w["cv"], ttft_slo_s=plan.slo.ttft_ms / 1e3, tpot_slo_s=plan.slo.tpot_ms / 1e3,
        percentile=plan.slo.percentile, mtp_acceptance=s.mtp_acceptance, moe_imbalance=s.moe_imbalance,
        kv_memory_fraction=s.kv_memory_fraction, profile=plan.profile,
    )


# ------------------------------------------------------------------------------ pool choices


@dataclass(frozen=True, order=True)
class PoolChoice:
    """One pool's per-instance layout. ``batch_per_rank``: most decode sequences per attention-DP
    rank; ``tokens_per_rank``: most new prefill tokens per attention-DP rank and iteration."""

    role: str  # "prefill", "decode" or "pool" (colocated)
    devices_per_instance: int
    attn_tp: int
    attn_dp: int
    attn_sp: int
    pp: int
    moe_ep: int
    moe_tp: int
    redundant_experts: int
    micro_batches: int
    mtp_depth: int
    batch_per_rank: int
    tokens_per_rank: int

    @property
    def cost_key(self) -> tuple:
        """The fields that fix per-step costs (role, batch and chunk limits excluded)."""
        return (self.devices_per_instance, self.attn_tp, self.attn_dp, self.attn_sp, self.pp, self.moe_ep,
                self.moe_tp, self.redundant_experts, self.micro_batches, self.mtp_depth)

    @property
    def max_batch_size(self) -> int:
        """Decode/colocated: the batch limit; prefill: no limit beyond the token budget."""
        if self.role == "prefill":
            return self.max_tokens_per_iteration
        return self.batch_per_rank * self.attn_dp * self.pp

    @property
    def max_tokens_per_iteration(self) -> int:
        """Prefill/colocated: the chunk budget; decode: room for every decode token of a full batch."""
        if self.role == "decode":
            return max(8192, self.max_batch_size * (1 + self.mtp_depth))
        return self.tokens_per_rank * self.attn_dp

    def label(self, instances: int) -> str:
        """Short text of this choice with ``instances`` instances, e.g.
        ``decode 1x8 tp1 dp8 ep8 mtp1 bs1024`` (defaults such as sp1, pp1 left out)."""
        parts = [f"{'pool' if self.role == 'pool' else self.role} {instances}x{self.devices_per_instance}",
                 f"tp{self.attn_tp}", f"dp{self.attn_dp}"]
        parts += [f"sp{self.attn_sp}"] * (self.attn_sp > 1) + [f"pp{self.pp}"] * (self.pp > 1)
        parts += [f"ep{self.moe_ep}"] * (self.moe_ep > 1) + [f"etp{self.moe_tp}"] * (self.moe_tp > 1)
        parts += [f"+{self.redundant_experts}e"] * (self.redundant_experts > 0)
        parts += [f"mb{self.micro_batches}"] * (self.micro_batches > 1) + [f"mtp{self.mtp_depth}"] * (self.mtp_depth > 0)
        if self.role != "prefill":
            parts.append(f"bs{self.max_batch_size}")
        if self.role != "decode":
            parts.append(f"tok{self.max_tokens_per_iteration}")
        return " ".join(parts)

    def to_pool(self, instances: int, ctx: PlanContext):
        """The ``workloads.deployment.Pool`` of this choice."""
        from workloads.deployment import Pool

        return Pool(
            instances=instances, devices_per_instance=self.devices_per_instance, pp=self.pp,
            attention={"tp": self.attn_tp, "dp": self.attn_dp, "sp": self.attn_sp},
            moe={"ep": self.moe_ep, "tp": self.moe_tp, "redundant_experts": self.redundant_experts,
                 "imbalance": ctx.moe_imbalance},
            micro_batches=self.micro_batches, max_batch_size=self.max_batch_size,
            max_tokens_per_iteration=self.max_tokens_per_iteration,
            mtp_depth=self.mtp_depth, mtp_acceptance=ctx.mtp_acceptance if self.mtp_depth else 0.0,
            kv_memory_fraction=ctx.kv_memory_fraction,
        )


def default_instance_sizes(cluster: Cluster, budget: int) -> list[int]:
    """1, 2, 4 ... up to a node, then whole multiples of a node by powers of two, up to the budget."""
    node = cluster.devices_per_node
    sizes = [2**i for i in range(0, 64) if 2**i < node and 2**i <= budget]
    k = 1
    while node * k <= budget:
        sizes.append(node * k)
        k *= 2
    return sizes or [budget]


def pool_choices(role: str, space, model, sizes: list[int]) -> list[PoolChoice]:
    """Every pool choice of ``role`` in ``space`` (divisibility is checked later, with reasons)."""
    out = []
    is_moe = model.is_moe
    mtps = sorted({1 if m else 0 for m in space.mtp}) if role != "prefill" else [0]
    if not model.num_mtp_modules:
        mtps = [0]
    batches = space.decode_batch_per_rank if role != "prefill" else [1]
    chunks = space.prefill_tokens_per_rank if role != "decode" else [1]
    for d, pp, tp, sp in itertools.product(sizes, space.pp, space.attention_tp, space.attention_sp):
        if d % pp or (d // pp) % (tp * sp):
            continue
        stage = d // pp
        dp = stage // (tp * sp)
        moe_tps = [t for t in space.moe_tp if stage % t == 0] if is_moe else [1]
        reds = space.redundant_experts if is_moe else [0]
        for moe_tp in moe_tps:
            ep = stage // moe_tp if is_moe else 1
            for red, mb, mtp, b, c in itertools.product(reds, space.micro_batches, mtps, batches, chunks):
                out.append(PoolChoice(role, d, tp, dp, sp, pp, ep, moe_tp if is_moe else 1, red, mb, mtp, b, c))
    return sorted(set(out))


@dataclass(frozen=True)
class Layout:
    """A serving layout: ``pools`` is ((choice, instances),) colocated or (prefill, decode)."""

    mode: str
    pools: tuple[tuple[PoolChoice, int], ...]

    @functools.cached_property
    def devices(self) -> int:
        return sum(c.devices_per_instance * n for c, n in self.pools)

    @property
    def label(self) -> str:
        """Short text of the layout (``PoolChoice.label`` of each pool, joined by ``+``)."""
        return " + ".join(c.label(n) for c, n in self.pools)


@dataclass(frozen=True)
class Point:
    """One point of the sweep: an id (its position in the enumeration), a layout, and (for
    ``planner.evaluate(point, seed)`` on its own) the context it is evaluated in."""

    id: int
    layout: Layout
    ctx: PlanContext | None = None


def _count_pairs(dp: int, dd: int, budget: int, max_n: int) -> Iterator[tuple[int, int]]:
    for n_p in range(1, min(max_n, (budget - dd) // dp) + 1):
        for n_d in range(1, min(max_n, (budget - n_p * dp) // dd) + 1):
            yield n_p, n_d


def pair_count(dp: int, dd: int, budget: int, max_n: int) -> int:
    """``len(list(_count_pairs(...)))`` in O(max_n), not O(max_n ** 2)."""
    return sum(min(max_n, (budget - n_p * dp) // dd) for n_p in range(1, min(max_n, (budget - dd) // dp) + 1))


def _counts(d: int, budget: int, max_n: int) -> range:
    return range(1, min(max_n, budget // d) + 1)


def count_layouts(ctx: PlanContext, space, model) -> int:
    """Number of layouts ``enumerate_layouts`` would yield (without building them)."""
    sizes = instance_sizes(ctx, space)
    total = 0
    if "colocated" in space.modes:
        for c in pool_choices("pool", space, model, sizes):
            total += len(_counts(c.devices_per_instance, ctx.budget_devices, space.max_instances))
    if "disaggregated" in space.modes:
        pre = pool_choices("prefill", space, model, sizes)
        dec = pool_choices("decode", space, model, sizes)
        by_d_pre: dict[int, int] = {}
        for c in pre:
            by_d_pre[c.devices_per_instance] = by_d_pre.get(c.devices_per_instance, 0) + 1
        by_d_dec: dict[int, int] = {}
        for c in dec:
            by_d_dec[c.devices_per_instance] = by_d_dec.get(c.devices_per_instance, 0) + 1
        for dp_, npre in by_d_pre.items():
            for dd, ndec in by_d_dec.items():
                total += npre * ndec * pair_count(dp_, dd, ctx.budget_devices, space.max_instances)
    return total


def instance_sizes(ctx: PlanContext, space) -> list[int]:
    if space.devices_per_instance is not None:
        return sorted({d for d in space.devices_per_instance if d <= ctx.budget_devices})
    return default_instance_sizes(ctx.cluster.resolve(), ctx.budget_devices)


def enumerate_layouts(ctx: PlanContext, space, model) -> Iterator[Point]:
    """Every layout within the budget, ids in enumeration order (colocated first)."""
    sizes = instance_sizes(ctx, space)
    ids = itertools.count()
    if "colocated" in space.modes:
        for c in pool_choices("pool", space, model, sizes):
            for n in _counts(c.devices_per_instance, ctx.budget_devices, space.max_instances):
                yield Point(next(ids), Layout("colocated", ((c, n),)))
    if "disaggregated" in space.modes:
        pre = pool_choices("prefill", space, model, sizes)
        dec = pool_choices("decode", space, model, sizes)
        for d in dec:
            for p in pre:
                for n_p, n_d in _count_pairs(p.devices_per_instance, d.devices_per_instance, ctx.budget_devices,
                                             space.max_instances):
                    yield Point(next(ids), Layout("disaggregated", ((p, n_p), (d, n_d))))
