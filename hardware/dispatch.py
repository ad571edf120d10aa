"""MoE expert-parallel dispatch/combine time (DeepEP-style kernels, unified-bus fused ops).

Mechanisms, in the order ``dispatch_combine_time`` applies them:

* **Bytes per token copy** (``token_bytes``): ``hidden * dtype_bytes`` plus quantisation scales.
  FP8 and INT8 carry one fp32 scale per ``scale_group_elements`` (128, DeepSeek-V3's 1x128 tiles)
  elements, i.e. ``ceil(hidden/128) * 4`` bytes; BF16 none.
* **Distinct destinations per token** (``expected_distinct_units``): under uniform random routing
  of top-k among E experts, optionally group-limited (M of G expert groups per token), the expected
  number of distinct ranks or nodes a token goes to is computed exactly by combinatorics.
* **DeepEP normal kernels**: a token crosses the network once per destination *node* (to the GPU
  with the same local index, i.e. on its own NIC/plane), then is forwarded over NVLink to the
  destination GPUs of that node. Time is the slower of the RDMA and NVLink legs. The reported
  "bottleneck bandwidth" follows DeepEP's own test (``tests/test_internode.py``): RDMA bytes count
  every distinct destination node *including the sender's own* (whose copy never touches the NIC),
  intranode bytes count every received copy including the one a rank sends itself.
* **DeepEP low-latency kernels**: one copy per (token, expert) -- T*topk copies. Release
  2025-02: pure RDMA (IBGDA), every copy through the GPU's own NIC, even to a peer in the node:
  ``t = latency + f(ep) * (copies * per_copy_s + bytes / wire_bw)`` with ``f(ep) = 1 + slowdown *
  log2(ep / ref)`` the measured loss of goodput as traffic spreads over more peers (more queue
  pairs, more switch hops). Release 2025-05 (DeepEP PR #173, on by default since 2025-05-23:
  ``allow_nvlink_for_low_latency_mode=True``): the copies to ranks of the sender's own NVLink
  domain (``g / ep`` of them under uniform routing, the sender's own included) are NVLink
  stores made by the sending warps themselves; the RDMA path is unchanged (2025-02's parameters).
  A store is synchronous (the warp moves the bytes) while an RDMA put is posted, so the NVLink
  leg adds to the RDMA leg: ``t = [RDMA leg of the remote copies] + nvl_copies * nvl_per_copy_s +
  nvl_bytes / (nvlink_bw * nvl_fraction)``.
* **Unified bus** (CloudMatrix384): non-blocking; every NPU reaches every other at UB bandwidth,
  so the fused AIV kernels follow the same latency form with their own named parameters.

Parameters live in ``hardware/data/comm_calibration.yaml`` (value, source, fitted on / validated
on). ``ep_decode_speed_limit`` is ISCA'25's back-of-envelope decode bound, as a function of its
inputs (no outputs are stored here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from math import comb
from typing import Sequence

from hardware.collectives import CommCalibration, achievable_bytes_per_s, load_comm_calibration
from hardware.dtypes import dtype_bytes
from hardware.types import Cluster, Tier

__all__ = [
    "PAYLOAD_DTYPES",
    "DispatchCost",
    "DecodeSpeedLimit",
    "token_bytes",
    "expected_distinct_units",
    "ep_decode_speed_limit",
    "dispatch_combine_time",
]

#: dtypes a token copy may travel in (their sizes: ``hardware.dtypes``)
PAYLOAD_DTYPES = ("fp8", "int8", "bf16", "fp16", "fp32")
#: dtypes that carry one fp32 scale per group of elements (fine-grained quantisation)
_SCALED_DTYPES = ("fp8", "int8")
_SCALE_BYTES = 4  # fp32 scale
_SCALE_UP_TECHNOLOGIES = ("nvlink", "ub")
KERNELS = ("normal", "low_latency")
_DEFAULT_RELEASE = {"deepep_normal": "2025-04", "deepep_low_latency": "2025-05", "ub_fused": "2025-06"}
#: low-latency releases: (release whose RDMA parameters time the NIC leg, NVLink for in-domain peers)
_LL_RELEASES = {"2025-02": ("2025-02", False), "2025-05": ("2025-02", True)}


def token_bytes(hidden: int, dtype: str, scale_group_elements: int = 128) -> float:
    """Bytes one token copy occupies on the wire: payload plus fp32 scales for FP8/INT8."""
    if dtype not in PAYLOAD_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} (valid: {', '.join(PAYLOAD_DTYPES)})")
    payload = hidden * dtype_bytes(dtype)
    scales = math.ceil(hidden / scale_group_elements) * _SCALE_BYTES if dtype in _SCALED_DTYPES else 0
    return float(payload + scales)


def _nests(groups: int, units: int) -> bool:
    """Whether expert groups and units (ranks or nodes) nest: one count divides the other."""
    return groups % units == 0 or units % groups == 0


def expected_distinct_units(
    units: int,
    num_experts: int,
    topk: int,
    groups: int | None = None,
    max_groups_per_token: int | None = None,
) -> float:
    """Expected number of distinct units (ranks or nodes) one token's top-k experts fall on.

    Experts are split evenly and contiguously over ``units`` and over ``groups``. The token picks
    ``max_groups_per_token`` (M) of the ``groups`` (G) uniformly, then ``topk`` distinct experts
    uniformly among the experts of its M groups (group-limited / node-limited routing). Exact:
    ``E[distinct] = units * (1 - P(a given unit gets none))``; P is a hypergeometric mixture
    when a unit holds whole groups, and ``(1 - M/G) + M/G * C(pool - E_u, k)/C(pool, k)`` when a
    group spans several units. Requires one of units/groups to divide the other.
    """
    if units < 1 or topk < 1 or num_experts < topk:
        raise ValueError(f"need units >= 1 and 1 <= topk <= num_experts (got {units}, {topk}, {num_experts})")
    if num_experts % units:
        raise ValueError(f"{units} units do not divide {num_experts} experts")
    if groups is None or max_groups_per_token is None or max_groups_per_token >= groups:
        groups, max_groups_per_token = 1, 1
    if num_experts % groups:
        raise ValueError(f"{groups} expert groups do not divide {num_experts} experts")
    experts_per_group = num_experts // groups
    pool = max_groups_per_token * experts_per_group
    if pool < topk:
        raise ValueError(f"{max_groups_per_token} groups of {experts_per_group} experts hold fewer than top-{topk}")
    total = comb(pool, topk)
    if groups % units == 0:  # each unit holds whole groups
        g_u = groups // units
        p_none = 0.0
        for j in range(0, min(g_u, max_groups_per_token) + 1):
            p_j = comb(g_u, j) * comb(groups - g_u, max_groups_per_token - j) / comb(groups, max_groups_per_token)
            p_none += p_j * comb(pool - j * experts_per_group, topk) / total
    elif units % groups == 0:  # each group spans several units
        chosen = max_groups_per_token / groups
        p_none = (1.0 - chosen) + chosen * comb(pool - num_experts // units, topk) / total
    else:
        raise ValueError(f"routing groups ({groups}) and units ({units}) must nest (one divides the other)")
    return units * (1.0 - p_none)


@dataclass(frozen=True, slots=True)
class DecodeSpeedLimit:
    """ISCA'25-style decode bound when EP all-to-all is the only cost (compute fully hidden)."""

    comm_per_ep_step_s: float
    per_layer_s: float
    tpot_s: float
    tokens_per_s: float


def ep_decode_speed_limit(
    model_hidden: int,
    layers: int,
    tokens_per_device: int,
    experts_per_token: int,
    bandwidth: float,
    dispatch_bytes: float = 1.0,
    combine_bytes: float = 2.0,
    micro_batches: int = 2,
) -> DecodeSpeedLimit:
    """Decode speed limit from communication alone.

    ``experts_per_token`` counts every expert a token visits (8 routed + 1 shared for
    DeepSeek-V3, one expert per device); ``bandwidth`` is bytes/s per device;
    ``dispatch_bytes``/``combine_bytes`` are bytes per element. One EP step moves
    ``(dispatch + combine) * tokens * experts * hidden`` bytes; a layer runs ``micro_batches``
    such steps back to back (the other micro-batch's compute hides under them).
    """
    if bandwidth <= 0:
        raise ValueError("bandwidth must be > 0 bytes/s")
    step_s = (dispatch_bytes + combine_bytes) * tokens_per_device * experts_per_token * model_hidden / bandwidth
    layer_s = step_s * micro_batches
    tpot_s = layer_s * layers
    return DecodeSpeedLimit(step_s, layer_s, tpot_s, 1.0 / tpot_s)


@dataclass(frozen=True, slots=True)
class DispatchCost:
    """Time of one MoE dispatch and one combine on one EP rank, with the bytes behind it.

    ``*_bytes_by_tier``: (tier name, bytes this rank pushes through its port into that tier).
    ``*_reported_bytes_per_s``: bandwidth as DeepEP's benchmarks count it (normal: RDMA bytes
    incl. the local node, or NVLink received bytes intranode; low-latency: copies * bytes / t).
    """

    dispatch_s: float
    combine_s: float
    kernel: str
    release: str
    dispatch_bytes_by_tier: tuple[tuple[str, float], ...]
    combine_bytes_by_tier: tuple[tuple[str, float], ...]
    bottleneck_tier: str
    dispatch_reported_bytes_per_s: float
    combine_reported_bytes_per_s: float
    nodes_per_token: float
    ranks_per_token: float
    source: str

    @property
    def total_s(self) -> float:
        return self.dispatch_s + self.combine_s


def _ep_tiers(cluster: Cluster, ep: int, placement: Sequence[int] | None) -> tuple[int, int]:
    """(outer tier index, scale-up domain ranks) for a contiguous EP group."""
    if placement is not None:
        raise NotImplementedError("dispatch models assume contiguous EP ranks (placement=None)")
    if ep > cluster.num_devices:
        raise ValueError(f"cluster {cluster.name}: EP {ep} exceeds its {cluster.num_devices} devices")
    outer = next(t for t, tier in enumerate(cluster.tiers) if ep <= tier.span_devices)
    return outer, min(cluster.tiers[0].span_devices, ep)


def _min_nominal(tiers: Sequence[Tier]) -> float:
    return min(t.bandwidth_bytes_per_s / t.oversubscription for t in tiers)


def _normal_deepep(T, b, ep, outer, g, d_node, d_rank, tiers, calib, release):
    """(seconds, bytes by tier, reported bytes/s, bottleneck tier name) for one direction."""
    pre = f"deepep_normal.{release}."
    nvl_bw = tiers[0].bandwidth_bytes_per_s * calib.get(pre + "nvlink_fraction_of_nominal")
    if outer == 0:  # the whole group in one scale-up domain
        nvl_bytes = T * d_rank * b * (ep - 1) / ep
        seconds = nvl_bytes / nvl_bw + tiers[0].latency_s
        return seconds, ((tiers[0].name, nvl_bytes),), T * d_rank * b / seconds, tiers[0].name
    nodes = ep // g
    rdma_bytes = T * d_node * (nodes - 1) / nodes * b
    nvl_bytes = T * d_rank * b * (g - 1) / g  # forwarded from the rail GPU to the destination GPU
    rdma_bw = _min_nominal(tiers[1 : outer + 1]) * calib.get(pre + "rdma_fraction_of_nominal")
    rdma_s, nvl_s = rdma_bytes / rdma_bw, nvl_bytes / nvl_bw
    seconds = max(rdma_s, nvl_s) + tiers[outer].latency_s
    bottleneck = tiers[1].name if rdma_s >= nvl_s else tiers[0].name
    by_tier = ((tiers[0].name, nvl_bytes), (tiers[1].name, rdma_bytes))
    return seconds, by_tier, T * d_node * b / seconds, bottleneck


def _latency_form(copies, nbytes, ep, tier_latency_s, wire_bw, calib, family, release):
    pre = f"{family}.{release}."
    ref = calib.get(pre + "peer_reference_ranks")
    spread = 1.0 + calib.get(pre + "peer_doubling_slowdown") * math.log2(max(ep, ref) / ref)
    work = copies * calib.get(pre + "per_copy_s") + nbytes / (wire_bw * calib.get(pre + "wire_fraction_of_nominal"))
    return tier_latency_s + spread * work


@dataclass(frozen=True)
class _Traffic:
    """What one EP rank sends: ``tokens`` x ``topk`` routed copies over ``ep`` ranks, reaching
    ``d_rank`` distinct ranks and ``d_node`` distinct nodes per token, at ``b_dispatch`` /
    ``b_combine`` bytes per token; ``suffix`` marks unrestricted routing in the source."""

    tokens: int
    topk: int
    ep: int
    d_rank: float
    d_node: float
    b_dispatch: float
    b_combine: float
    suffix: str


def _unified_bus_cost(t: _Traffic, crossed: Sequence[Tier], kernel: str, release: str | None,
                      calib: CommCalibration) -> DispatchCost:
    """Dispatch and combine over a unified bus: the fused low-latency kernel (latency form), or a
    bandwidth-bound all-to-all over the non-blocking UB."""
    T, ep = t.tokens, t.ep
    if kernel == "low_latency":
        family = "ub_fused"
        release = release or _DEFAULT_RELEASE[family]
        copies = T * t.topk
        lat, ub_bw = crossed[-1].latency_s, _min_nominal(crossed)
        d_s = _latency_form(copies, copies * t.b_dispatch, ep, lat, ub_bw, calib, family, release)
        c_s = _latency_form(copies, copies * t.b_combine, ep, lat, ub_bw, calib, family, release)
        d_bytes, c_bytes = copies * t.b_dispatch, copies * t.b_combine
        reported = (d_bytes / d_s, c_bytes / c_s)
        source = f"model:{family}[{release}]{t.suffix}"
    else:  # bandwidth-bound all-to-all over the non-blocking UB
        release = release or "link"
        bw = min(achievable_bytes_per_s(tier, calib) for tier in crossed)
        d_bytes = T * t.d_rank * t.b_dispatch * (ep - 1) / ep
        c_bytes = T * t.d_rank * t.b_combine * (ep - 1) / ep
        d_s = d_bytes / bw + crossed[-1].latency_s
        c_s = c_bytes / bw + crossed[-1].latency_s
        reported = (T * t.d_rank * t.b_dispatch / d_s, T * t.d_rank * t.b_combine / c_s)
        source = f"model:ub_all_to_all{t.suffix}"
    name = crossed[-1].name
    return DispatchCost(d_s, c_s, kernel, release, ((name, d_bytes),), ((name, c_bytes),), name,
                        reported[0], reported[1], t.d_node, t.d_rank, source)


def _low_latency_cost(t: _Traffic, tiers: Sequence[Tier], outer: int, g: int, release: str | None,
                      calib: CommCalibration) -> DispatchCost:
    """DeepEP's low-latency kernels: one copy per routed expert, through the NIC (latency form),
    and from release 2025-05 over NVLink to the ranks of the sender's own domain."""
    family = "deepep_low_latency"
    release = release or _DEFAULT_RELEASE[family]
    if release not in _LL_RELEASES:
        raise ValueError(f"unknown {family} release {release!r} (valid: {', '.join(_LL_RELEASES)})")
    rdma_release, nvlink = _LL_RELEASES[release]
    copies = t.tokens * t.topk
    if len(tiers) == 1:  # one scale-up domain, no NIC: 2025-02 is timed at NVLink speed in its latency form
        local = float(copies) if nvlink else 0.0
        path = tiers[:1]
    else:
        local = copies * g / t.ep if nvlink else 0.0  # expected in-domain copies (uniform routing)
        path = tiers[1 : max(outer, 1) + 1]
    remote = copies - local
    wire_bw, lat = _min_nominal(path), path[-1].latency_s
    if nvlink and remote == 0:
        lat = tiers[0].latency_s
    if local:  # the NVLink leg's parameters (this release's; the NIC leg keeps rdma_release's)
        pre = f"{family}.{release}."
        nvl_per_copy_s = calib.get(pre + "nvlink_per_copy_s")
        nvl_bytes_per_s = tiers[0].bandwidth_bytes_per_s * calib.get(pre + "nvlink_fraction_of_nominal")
    out = []
    for b in (t.b_dispatch, t.b_combine):
        s = _latency_form(remote, remote * b, t.ep, lat, wire_bw, calib, family, rdma_release) if remote else lat
        if local:
            s += local * nvl_per_copy_s + local * b / nvl_bytes_per_s
        out.append(s)
    d_s, c_s = out
    d_bytes, c_bytes = copies * t.b_dispatch, copies * t.b_combine
    if local:
        d_by, c_by = (tuple((name, n * b) for name, n in ((tiers[0].name, local), (path[0].name, remote)) if n)
                      for b in (t.b_dispatch, t.b_combine))
        bottleneck = path[0].name if remote else tiers[0].name
    else:
        d_by, c_by, bottleneck = ((path[0].name, d_bytes),), ((path[0].name, c_bytes),), path[0].name
    return DispatchCost(d_s, c_s, "low_latency", release, d_by, c_by, bottleneck,
                        d_bytes / d_s, c_bytes / c_s, t.d_node, t.d_rank, f"model:{family}[{release}]{t.suffix}")


def dispatch_combine_time(
    tokens_per_rank: int,
    hidden: int,
    topk: int,
    ep: int,
    cluster: Cluster,
    *,
    num_experts: int,
    groups: int | None = None,
    max_groups_per_token: int | None = None,
    dispatch_dtype: str = "fp8",
    combine_dtype: str = "bf16",
    kernel: str = "normal",
    release: str | None = None,
    placement: Sequence[int] | None = None,
    calibration: CommCalibration | None = None,
) -> DispatchCost:
    """Dispatch and combine time of one EP rank sending ``tokens_per_rank`` tokens.

    ``groups``/``max_groups_per_token`` describe group-limited routing (DeepSeek-V3: 8 groups,
    4 per token; DeepEP's benchmark: one group per node, min(nodes, 4) per token).
    ``kernel``: ``"normal"`` (throughput: NVLink forwarding of one RDMA copy per node) or
    ``"low_latency"`` (one RDMA copy per expert). On a unified-bus group the unified-bus models
    apply instead. ``release`` picks a calibration set (default: the newest); for the low-latency
    kernels "2025-02" is pure RDMA, "2025-05" (the default) sends to peers of the sender's own
    NVLink domain over NVLink.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown dispatch kernel {kernel!r} (valid: {', '.join(KERNELS)})")
    if tokens_per_rank < 0 or ep < 1:
        raise ValueError("tokens_per_rank must be >= 0 and ep >= 1")
    calib = calibration or load_comm_calibration()
    tiers = cluster.tiers
    outer, g = _ep_tiers(cluster, ep, placement)
    crossed = tiers[: outer + 1]
    b_dispatch = token_bytes(hidden, dispatch_dtype)
    b_combine = token_bytes(hidden, combine_dtype)
    T = tokens_per_rank
    nodes = max(1, ep // g)
    if outer > 0 and ep % g:
        raise ValueError(f"EP {ep} spanning domains must be a multiple of the domain size {g}")
    suffix = ""
    if groups and not (_nests(groups, ep) and _nests(groups, nodes)):
        # expert groups that do not line up with ranks or nodes (e.g. 8 groups over 20 nodes):
        # group-limited routing cannot bound the destinations, so count them as unrestricted
        groups, max_groups_per_token, suffix = None, None, ":unrestricted-routing"
    d_rank = expected_distinct_units(ep, num_experts, topk, groups, max_groups_per_token)
    d_node = expected_distinct_units(nodes, num_experts, topk, groups, max_groups_per_token)
    traffic = _Traffic(T, topk, ep, d_rank, d_node, b_dispatch, b_combine, suffix)
    if all(t.technology == "ub" for t in crossed):
        return _unified_bus_cost(traffic, crossed, kernel, release, calib)
    if kernel == "normal":
        family = "deepep_normal"
        release = release or _DEFAULT_RELEASE[family]
        args = (ep, outer, g, d_node, d_rank, tiers, calib, release)
        d_s, d_by, d_rep, bottleneck = _normal_deepep(T, b_dispatch, *args)
        c_s, c_by, c_rep, _ = _normal_deepep(T, b_combine, *args)
        return DispatchCost(d_s, c_s, kernel, release, d_by, c_by, bottleneck, d_rep, c_rep,
                            d_node, d_rank, f"model:{family}[{release}]{suffix}")

    return _low_latency_cost(traffic, tiers, outer, g, release, calib)
