"""Switch/link/endpoint counts of network topologies, their cost, and tier-level accounting.

Everything here is a pure function of its parameters:

* Counting functions (``fat_tree2``, ``fat_tree3``, ``multi_plane_fat_tree2``,
  ``multi_rail_fat_tree2``, ``slim_fly``, ``dragonfly``, ``nvswitch_domain``,
  ``unified_bus_two_layer``) return a :class:`TopologyCounts`. With 64-port switches they
  reproduce the counts of Table 3 of "Insights into DeepSeek-V3" (ISCA'25, arXiv 2505.09343);
  the tests compare them with the published rows in ``tests/data/reference``.
* ``network_cost_usd`` prices a topology linearly from component prices
  (:class:`NetworkPrices`: per switch, per switch-to-switch link with its optics, per endpoint
  NIC+cable) and ``calibrate_prices`` derives two of those prices from published cost totals.
  The paper gives no unit prices; see ``hardware/README.md`` for which rows were used to derive
  the prices and which rows are validations.
* ``bisection`` and ``uniform_all_to_all`` turn a cluster's tiers into two headline bandwidths.

"Links" always means switch-to-switch links (the quantity of Table 3); endpoint-to-switch links
are counted separately in ``endpoint_links``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from hardware.types import Tier

__all__ = [
    "TopologyCounts",
    "NetworkPrices",
    "fat_tree2",
    "fat_tree3",
    "multi_plane_fat_tree2",
    "multi_rail_fat_tree2",
    "slim_fly",
    "slim_fly_for_radix",
    "dragonfly",
    "dragonfly_for_radix",
    "nvswitch_domain",
    "unified_bus_two_layer",
    "network_cost_usd",
    "calibrate_prices",
    "TierShare",
    "bisection",
    "uniform_all_to_all",
]


@dataclass(frozen=True, slots=True)
class TopologyCounts:
    """Counts of one topology instance. ``links`` are switch-to-switch links only."""

    kind: str
    endpoints: int
    switches: int
    links: int
    endpoint_links: int
    levels: int  # switch layers an endpoint's traffic may climb (1 for a single switch layer)
    params: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NetworkPrices:
    """Linear component prices (USD) for one switch generation (e.g. 64-port 400G IB).

    cost = endpoints * endpoint_usd + switches * switch_usd + links * switch_link_usd
    """

    name: str
    switch_usd: float
    switch_link_usd: float
    endpoint_usd: float = 0.0
    notes: str = ""


def _even_radix(k: int) -> None:
    if k < 2 or k % 2:
        raise ValueError(f"switch radix must be an even integer >= 2, got {k}")


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def fat_tree2(k: int, endpoints: int | None = None) -> TopologyCounts:
    """Two-layer non-blocking fat-tree (leaf/spine) of k-port switches.

    Full build: k leaves with k/2 endpoints each (k^2/2 endpoints), k/2 spines (3k/2 switches),
    k^2/2 leaf-spine links. A partial build for ``endpoints`` < k^2/2 keeps every leaf
    non-blocking: ceil(E/(k/2)) leaves, each with k/2 uplinks spread over ceil(leaves/2) spines.
    """
    _even_radix(k)
    half = k // 2
    full = k * half
    e = full if endpoints is None else endpoints
    _positive("endpoints", e)
    if e > full:
        raise ValueError(f"a two-layer fat-tree of {k}-port switches holds at most {full} endpoints, asked {e}")
    leaves = math.ceil(e / half)
    spines = math.ceil(leaves * half / k)
    return TopologyCounts("fat_tree2", e, leaves + spines, leaves * half, e, 2, {"switch_radix": k})


def fat_tree3(k: int, endpoints: int | None = None) -> TopologyCounts:
    """Three-layer non-blocking fat-tree (edge/aggregation/core) of k-port switches.

    Full build (k pods): k^3/4 endpoints, k^2/2 edge + k^2/2 aggregation + k^2/4 core
    = 5k^2/4 switches, k^3/4 edge-aggregation + k^3/4 aggregation-core = k^3/2 links.
    A partial build fills pods of (k/2)^2 endpoints and sizes the core to the aggregation uplinks.
    """
    _even_radix(k)
    half = k // 2
    full = k * half * half
    e = full if endpoints is None else endpoints
    _positive("endpoints", e)
    if e > full:
        raise ValueError(f"a three-layer fat-tree of {k}-port switches holds at most {full} endpoints, asked {e}")
    edges = math.ceil(e / half)
    pods = math.ceil(edges / half)
    aggs = pods * half
    cores = math.ceil(aggs * half / k)
    links = edges * half + aggs * half
    return TopologyCounts("fat_tree3", e, edges + aggs + cores, links, e, 3, {"switch_radix": k})


def multi_plane_fat_tree2(k: int, planes: int, endpoints_per_plane: int | None = None) -> TopologyCounts:
    """DeepSeek's multi-plane fat-tree: ``planes`` independent two-layer fat-trees.

    Each endpoint (GPU + its one NIC) sits on exactly one plane, so counts are ``planes`` times
    those of ``fat_tree2``: with k=64 and 8 planes, 16,384 endpoints, 768 switches, 16,384 links.
    """
    _positive("planes", planes)
    one = fat_tree2(k, endpoints_per_plane)
    return TopologyCounts(
        "multi_plane_fat_tree2",
        one.endpoints * planes,
        one.switches * planes,
        one.links * planes,
        one.endpoint_links * planes,
        2,
        {"switch_radix": k, "planes": planes},
    )


def multi_rail_fat_tree2(k: int, rails: int, endpoints: int | None = None) -> TopologyCounts:
    """Rail-optimised two-layer fat-tree: NIC i of every node goes to a leaf of rail i.

    The switch counts are those of one ``fat_tree2`` (rails share the spine layer, so cross-rail
    traffic can stay in the network); only the leaf-to-endpoint wiring differs. Each rail's
    leaves must be whole switches, so the leaf count must divide evenly among the rails.
    """
    _positive("rails", rails)
    base = fat_tree2(k, endpoints)
    if base.endpoints % rails:
        raise ValueError(f"{base.endpoints} endpoints do not split evenly over {rails} rails")
    leaves = math.ceil(base.endpoints / (k // 2))
    if leaves % rails:
        raise ValueError(f"{leaves} leaves do not split evenly over {rails} rails")
    return TopologyCounts(
        "multi_rail_fat_tree2",
        base.endpoints,
        base.switches,
        base.links,
        base.endpoint_links,
        2,
        {"switch_radix": k, "rails": rails, "leaves_per_rail": leaves // rails},
    )


def _slim_fly_delta(q: int) -> int:
    """q = 4w + delta with delta in {-1, 0, 1} (MMS construction); q = 4w + 2 has none."""
    r = q % 4
    if r == 2:
        raise ValueError(f"slim fly needs q = 4w + delta with delta in (-1, 0, 1); q={q} has none")
    return {0: 0, 1: 1, 3: -1}[r]


def slim_fly(q: int, concentration: int | None = None) -> TopologyCounts:
    """Slim Fly (MMS graph, Besta & Hoefler SC'14) with parameter q.

    2q^2 routers of network radix k' = (3q - delta)/2, concentration p = ceil(k'/2) endpoints
    per router (the SC'14 balance rule), q^2 k' router-router links. The MMS construction
    needs q to be a prime power; these are the formula counts only (ISCA'25 uses q = 28,
    which is not a prime power).
    """
    _positive("q", q)
    delta = _slim_fly_delta(q)
    net_radix = (3 * q - delta) // 2
    p = math.ceil(net_radix / 2) if concentration is None else concentration
    routers = 2 * q * q
    return TopologyCounts(
        "slim_fly",
        routers * p,
        routers,
        routers * net_radix // 2,
        routers * p,
        1,
        {"q": q, "network_radix": net_radix, "concentration": p},
    )


def slim_fly_for_radix(radix: int) -> TopologyCounts:
    """Largest slim fly whose routers (k' network ports + ceil(k'/2) endpoints) fit ``radix`` ports."""
    best = None
    for q in range(2, radix + 1):
        try:
            net = (3 * q - _slim_fly_delta(q)) // 2
        except ValueError:
            continue
        if net + math.ceil(net / 2) <= radix:
            best = q
    if best is None:
        raise ValueError(f"no slim fly fits {radix}-port switches")
    return slim_fly(best)


def dragonfly(p: int, a: int, h: int, groups: int | None = None) -> TopologyCounts:
    """Dragonfly (Kim et al. ISCA'08): groups of ``a`` all-to-all routers, ``p`` endpoints and
    ``h`` global ports per router.

    Switches g*a, endpoints g*a*p, links g*a*(a-1)/2 intra-group plus g*a*h/2 global (every
    global port wired). The default g = a*h + 1 is the largest group count with one global link
    per pair of groups.
    """
    for name, v in (("p", p), ("a", a), ("h", h)):
        _positive(name, v)
    g = a * h + 1 if groups is None else groups
    _positive("groups", g)
    if g > a * h + 1:
        raise ValueError(f"dragonfly with a*h={a * h} global ports per group supports at most {a * h + 1} groups, asked {g}")
    if (g * a * h) % 2:
        raise ValueError("dragonfly global ports must pair up (g*a*h even)")
    intra = g * a * (a - 1) // 2
    glob = g * a * h // 2
    return TopologyCounts(
        "dragonfly",
        g * a * p,
        g * a,
        intra + glob,
        g * a * p,
        1,
        {"p": p, "a": a, "h": h, "groups": g},
    )


def dragonfly_for_radix(radix: int, groups: int | None = None) -> TopologyCounts:
    """Balanced dragonfly (a = 2p = 2h) with the largest p whose router uses p + a - 1 + h <= radix ports."""
    p = (radix + 1) // 4
    _positive("p", p)
    return dragonfly(p, 2 * p, p, groups)


def nvswitch_domain(endpoints: int, switches: int, links_per_endpoint: int) -> TopologyCounts:
    """Single-layer NVSwitch domain (HGX node, NVL72 rack): every GPU links to every switch chip.

    No switch-to-switch links; ``endpoint_links`` = endpoints * links_per_endpoint.
    """
    for name, v in (("endpoints", endpoints), ("switches", switches), ("links_per_endpoint", links_per_endpoint)):
        _positive(name, v)
    return TopologyCounts(
        "nvswitch_domain",
        endpoints,
        switches,
        0,
        endpoints * links_per_endpoint,
        1,
        {"links_per_endpoint": links_per_endpoint},
    )


def unified_bus_two_layer(
    nodes: int,
    devices_per_node: int,
    l1_switches_per_node: int,
    l2_subplanes: int,
    l2_switches_per_subplane: int,
    links_per_device: int,
) -> TopologyCounts:
    """CloudMatrix384-style two-layer UB fabric.

    Each node has ``l1_switches_per_node`` L1 switch chips; L1 chip i of every node belongs to
    sub-plane i, whose ``l2_switches_per_subplane`` L2 chips each take one link from every L1 chip
    of that sub-plane (so one L2 port per node). Requires one sub-plane per L1 chip of a node.
    """
    for name, v in (
        ("nodes", nodes),
        ("devices_per_node", devices_per_node),
        ("l1_switches_per_node", l1_switches_per_node),
        ("l2_subplanes", l2_subplanes),
        ("l2_switches_per_subplane", l2_switches_per_subplane),
        ("links_per_device", links_per_device),
    ):
        _positive(name, v)
    if l2_subplanes != l1_switches_per_node:
        raise ValueError(
            f"unified bus: one L2 sub-plane per L1 switch of a node expected "
            f"({l2_subplanes} sub-planes vs {l1_switches_per_node} L1 switches per node)"
        )
    l1 = nodes * l1_switches_per_node
    l2 = l2_subplanes * l2_switches_per_subplane
    return TopologyCounts(
        "unified_bus",
        nodes * devices_per_node,
        l1 + l2,
        l1 * l2_switches_per_subplane,
        nodes * devices_per_node * links_per_device,
        2,
        {"l1_switches": l1, "l2_switches": l2, "links_per_device": links_per_device},
    )


def network_cost_usd(counts: TopologyCounts, prices: NetworkPrices) -> float:
    """Linear network cost: endpoints * endpoint_usd + switches * switch_usd + links * switch_link_usd."""
    return (
        counts.endpoints * prices.endpoint_usd
        + counts.switches * prices.switch_usd
        + counts.links * prices.switch_link_usd
    )


def calibrate_prices(
    rows: Sequence[tuple[TopologyCounts, float]],
    *,
    endpoint_usd: float = 0.0,
    name: str = "calibrated",
) -> NetworkPrices:
    """Solve per-switch and per-link prices from published (counts, total cost USD) rows.

    With two rows (e.g. ISCA'25 Table 3 FT2 and FT3) the 2x2 system is solved exactly; with
    more rows it is a least-squares fit. ``endpoint_usd`` is held fixed: Table 3's rows cannot
    separate an endpoint price from the switch price (in a full fat-tree every endpoint uses
    exactly one leaf port), so the default 0 folds the endpoint-facing ports into the switch price.
    """
    if len(rows) < 2:
        raise ValueError("calibrate_prices needs at least two (counts, cost) rows")
    import numpy as np  # only here: importing the catalog needs no numpy

    a = np.array([[c.switches, c.links] for c, _ in rows], dtype=float)
    b = np.array([cost - c.endpoints * endpoint_usd for c, cost in rows], dtype=float)
    if np.linalg.matrix_rank(a) < 2:
        raise ValueError("rows are proportional (e.g. FT2 and MPFT); pick rows with different switch/link ratios")
    (switch_usd, link_usd), *_ = np.linalg.lstsq(a, b, rcond=None)
    kinds = ", ".join(c.kind for c, _ in rows)
    return NetworkPrices(name, float(switch_usd), float(link_usd), endpoint_usd, f"calibrated on: {kinds}")


# ---------------------------------------------------------------------------------------------
# Tier-level accounting: bisection and uniform all-to-all bandwidth of a nested tier hierarchy.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierShare:
    """Uniform all-to-all over N devices, seen from one tier.

    ``destination_share``: fraction of a device's peers whose innermost common tier is this one.
    ``carried_share``: fraction of a device's all-to-all bytes that load this tier's per-device
    bandwidth (see ``uniform_all_to_all``). ``bound_bytes_per_s``: the all-to-all send rate per
    device this tier alone would allow (effective bandwidth / carried share; inf if unused).
    """

    tier: str
    destination_share: float
    carried_share: float
    bound_bytes_per_s: float


def _spans(tiers: Sequence[Tier], n: int) -> list[int]:
    return [min(t.span_devices, n) for t in tiers]


def bisection(tiers: Sequence[Tier], num_devices: int) -> tuple[float, float, str]:
    """Unidirectional bisection bandwidth (nominal, effective) in bytes/s and the tier it cuts.

    A balanced cut can keep every group of a tier whose span is <= N/2 on one side, so the
    minimum bisection crosses the innermost tier t* whose span exceeds N/2; every device on
    one side then pushes at most its per-device bandwidth into t*:

        bisection = (N / 2) * bandwidth(t*) / oversubscription(t*)     (nominal)
        bisection_effective = (N / 2) * effective_bytes_per_s(t*)

    For a multi-plane tier the per-device bandwidth is already that of its one NIC, so this is
    the sum over planes. Bidirectional bisection is twice these values.
    """
    if num_devices < 2:
        return 0.0, 0.0, ""
    half = num_devices / 2
    for tier, span in zip(tiers, _spans(tiers, num_devices)):
        if span > half:
            nominal = half * tier.bandwidth_bytes_per_s / tier.oversubscription
            return nominal, half * tier.effective_bytes_per_s, tier.name
    raise ValueError(f"tiers span {max(_spans(tiers, num_devices), default=0)} of {num_devices} devices")


def uniform_all_to_all(tiers: Sequence[Tier], num_devices: int) -> tuple[float, list[TierShare]]:
    """Per-device send rate (bytes/s) of a uniform all-to-all over the whole cluster.

    Each device sends equal bytes to each of the N-1 others. Tier u carries the peers whose
    innermost common tier is u: share d_u = (S_u - S_{u-1}) / (N - 1), with S the spans capped
    at N and S_{-1} = 1. The bytes that load tier t's per-device bandwidth are

    * its own peers (d_t);
    * the peers of any outer tier u > t of the same technology (an IB leaf port carries the
      traffic bound for the spine too, a UB L1 port that bound for L2);
    * for the innermost tier, the cross-plane fraction (planes_u - 1)/planes_u of every outer
      multi-plane tier u's peers: a GPU's NIC sits on one plane, so traffic to another plane is
      forwarded over the scale-up fabric first (DeepSeek MPFT / DeepEP).

    The all-to-all rate is min over tiers of effective_bytes_per_s / carried_share, which for a
    multi-plane fabric is bounded by the single NIC.
    """
    n = num_devices
    if n < 2 or not tiers:
        return 0.0, []
    spans = _spans(tiers, n)
    dest = []
    prev = 1
    for s in spans:
        dest.append(max(s - prev, 0) / (n - 1))
        prev = max(prev, s)
    shares: list[TierShare] = []
    best = math.inf
    for t, tier in enumerate(tiers):
        carried = dest[t]
        for u in range(t + 1, len(tiers)):
            outer = tiers[u]
            if outer.technology == tier.technology:
                carried += dest[u]
            elif t == 0 and outer.planes > 1:
                carried += dest[u] * (outer.planes - 1) / outer.planes
        bound = tier.effective_bytes_per_s / carried if carried > 0 else math.inf
        best = min(best, bound)
        shares.append(TierShare(tier.name, dest[t], carried, bound))
    return best, shares
