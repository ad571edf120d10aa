"""The layout space: pool choices, serving layouts and the picklable context every evaluation needs.

A *pool choice* is one pool's per-instance ``workloads.layout.Layout`` (attention TP/DP/SP,
PP, MoE EP/TP, redundant experts, micro-batches) with its role, MTP depth and batch and chunk
limits. A *serving layout* (``ServingLayout``) is a serving mode plus one pool choice
(colocated) or two (disaggregated: prefill, decode) with instance counts. ``layouts_of`` is
the one enumerator of serving layouts (``count_layouts_of`` counts them without building
them); ``enumerate_layouts`` numbers every layout of a ``SearchSpace`` within the device
budget in a fixed order, so results never depend on worker order.

Objects here are small frozen dataclasses of plain values: they pickle cheaply to process-pool
workers and Ray tasks. Catalog objects (``Cluster`` holds mapping proxies that do not pickle)
are resolved in the worker from a ``ClusterRef``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from hardware.catalog import cluster_for, clusters_of, get_cluster, get_device, list_clusters
from hardware.types import Cluster
from workloads.layout import Layout

__all__ = ["ClusterRef", "PlanContext", "PoolChoice", "ServingLayout", "Point", "context_from_plan", "pool_choices",
           "all_pool_choices", "layouts_of", "count_layouts_of", "count_pairs", "pair_count", "enumerate_layouts",
           "count_layouts", "workload_means"]


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


@dataclass(frozen=True)
class PoolChoice:
    """One pool's per-instance layout. ``batch_per_rank``: most decode sequences per attention-DP
    rank; ``tokens_per_rank``: most new prefill tokens per attention-DP rank and iteration."""

    role: str  # "prefill", "decode" or "pool" (colocated)
    layout: Layout
    mtp_depth: int
    batch_per_rank: int
    tokens_per_rank: int

    # a choice keys many dicts of the ranking (10^5 layouts): its hash, instance size and cost
    # key are computed once (the hash is kept out of pickles: a string's hash differs between
    # processes)
    def __hash__(self) -> int:
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.role, self.layout, self.mtp_depth, self.batch_per_rank, self.tokens_per_rank))
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    @functools.cached_property
    def devices_per_instance(self) -> int:
        return self.layout.devices

    @functools.cached_property
    def cost_key(self) -> tuple:
        """The fields that fix per-step costs (role, batch and chunk limits excluded)."""
        lay = self.layout
        return (lay.devices, lay.tp, lay.dp, lay.sp, lay.pp, lay.ep, lay.moe_tp_eff, lay.redundant_experts,
                lay.micro_batches, self.mtp_depth)

    @property
    def sort_key(self) -> tuple:
        """The enumeration order: role, then the cost key, then the batch and chunk limits."""
        return (self.role,) + self.cost_key + (self.batch_per_rank, self.tokens_per_rank)

    @property
    def max_batch_size(self) -> int:
        """Decode/colocated: the batch limit; prefill: no limit beyond the token budget."""
        if self.role == "prefill":
            return self.max_tokens_per_iteration
        return self.batch_per_rank * self.layout.dp * self.layout.pp

    @property
    def max_tokens_per_iteration(self) -> int:
        """Prefill/colocated: the chunk budget; decode: room for every decode token of a full batch."""
        if self.role == "decode":
            return max(8192, self.max_batch_size * (1 + self.mtp_depth))
        return self.tokens_per_rank * self.layout.dp

    def label(self, instances: int) -> str:
        """Short text of this choice with ``instances`` instances, e.g.
        ``decode 1x8 tp1 dp8 ep8 mtp1 bs1024`` (``Layout.label``; defaults such as sp1, pp1 left out)."""
        parts = [f"{self.role} {instances}x{self.devices_per_instance}", self.layout.label()]
        parts += [f"mtp{self.mtp_depth}"] * (self.mtp_depth > 0)
        if self.role != "prefill":
            parts.append(f"bs{self.max_batch_size}")
        if self.role != "decode":
            parts.append(f"tok{self.max_tokens_per_iteration}")
        return " ".join(parts)

    def to_pool(self, instances: int, ctx: PlanContext):
        """The ``workloads.deployment.Pool`` of this choice (``Pool.from_layout``)."""
        from workloads.deployment import Pool

        return Pool.from_layout(
            self.layout, instances=instances, moe_imbalance=ctx.moe_imbalance, max_batch_size=self.max_batch_size,
            max_tokens_per_iteration=self.max_tokens_per_iteration, mtp_depth=self.mtp_depth,
            mtp_acceptance=ctx.mtp_acceptance if self.mtp_depth else 0.0, kv_memory_fraction=ctx.kv_memory_fraction,
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
                lay = Layout(tp=tp, dp=dp, sp=sp, ep=ep, moe_tp=moe_tp if is_moe else 1, redundant_experts=red,
                             pp=pp, micro_batches=mb)
                out.append(PoolChoice(role, lay, mtp, b, c))
    return sorted(set(out), key=lambda c: c.sort_key)


@dataclass(frozen=True)
class ServingLayout:
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
    """One point of the sweep: an id (its position in the enumeration), a serving layout, and
    (for ``planner.evaluate(point, seed)`` on its own) the context it is evaluated in."""

    id: int
    layout: ServingLayout
    ctx: PlanContext | None = None


def count_pairs(dp: int, dd: int, budget: int, max_n: int) -> Iterator[tuple[int, int]]:
    """(prefill instances, decode instances) of a disaggregated layout with instances of ``dp``
    and ``dd`` devices within ``budget`` devices and ``max_n`` instances a pool, in order."""
    for n_p in range(1, min(max_n, (budget - dd) // dp) + 1):
        for n_d in range(1, min(max_n, (budget - n_p * dp) // dd) + 1):
            yield n_p, n_d


def pair_count(dp: int, dd: int, budget: int, max_n: int) -> int:
    """``len(list(count_pairs(...)))`` in O(max_n), not O(max_n ** 2)."""
    return sum(min(max_n, (budget - n_p * dp) // dd) for n_p in range(1, min(max_n, (budget - dd) // dp) + 1))


def layouts_of(ctx: PlanContext, space, choices: dict[str, list[PoolChoice]]) -> Iterator[ServingLayout]:
    """Every serving layout of the pool ``choices`` (by role: "pool", "prefill", "decode")
    within the device budget and ``space.max_instances``: colocated first (each choice, then
    its instance counts), then disaggregated (each decode choice, each prefill choice, then the
    instance-count pairs)."""
    budget, cap = ctx.budget_devices, space.max_instances
    if "colocated" in space.modes:
        for c in choices.get("pool", []):
            for n in range(1, min(cap, budget // c.devices_per_instance) + 1):
                yield ServingLayout("colocated", ((c, n),))
    if "disaggregated" in space.modes:
        for d in choices.get("decode", []):
            for p in choices.get("prefill", []):
                for n_p, n_d in count_pairs(p.devices_per_instance, d.devices_per_instance, budget, cap):
                    yield ServingLayout("disaggregated", ((p, n_p), (d, n_d)))


def count_layouts_of(ctx: PlanContext, space, choices: dict[str, list[PoolChoice]]) -> int:
    """How many layouts ``layouts_of`` yields, counted per instance size without building them."""
    budget, cap = ctx.budget_devices, space.max_instances
    total = 0
    if "colocated" in space.modes:
        total += sum(min(cap, budget // c.devices_per_instance) for c in choices.get("pool", []))
    if "disaggregated" in space.modes:
        pre = Counter(c.devices_per_instance for c in choices.get("prefill", []))
        dec = Counter(c.devices_per_instance for c in choices.get("decode", []))
        total += sum(n_p * n_d * pair_count(dp_, dd, budget, cap)
                     for dp_, n_p in pre.items() for dd, n_d in dec.items())
    return total


def instance_sizes(ctx: PlanContext, space) -> list[int]:
    if space.devices_per_instance is not None:
        return sorted({d for d in space.devices_per_instance if d <= ctx.budget_devices})
    return default_instance_sizes(ctx.cluster.resolve(), ctx.budget_devices)


def all_pool_choices(ctx: PlanContext, space, model) -> dict[str, list[PoolChoice]]:
    """Every pool choice of ``space`` by role ("pool" when colocated, "prefill" and "decode" when disaggregated)."""
    sizes = instance_sizes(ctx, space)
    roles = (["pool"] if "colocated" in space.modes else []) + (
        ["prefill", "decode"] if "disaggregated" in space.modes else [])
    return {r: pool_choices(r, space, model, sizes) for r in roles}


def count_layouts(ctx: PlanContext, space, model) -> int:
    """Number of layouts ``enumerate_layouts`` would yield (without building them)."""
    return count_layouts_of(ctx, space, all_pool_choices(ctx, space, model))


def enumerate_layouts(ctx: PlanContext, space, model) -> Iterator[Point]:
    """Every serving layout of ``space`` within the budget, ids in enumeration order (``layouts_of``)."""
    for i, layout in enumerate(layouts_of(ctx, space, all_pool_choices(ctx, space, model))):
        yield Point(i, layout)
