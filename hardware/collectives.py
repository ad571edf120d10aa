"""Collective communication time models over a cluster's fabric tiers.

``collective_time(op, bytes_per_rank, group_size, cluster, algorithm="auto", placement=None)``
returns a frozen :class:`CollectiveCost` (seconds, algorithm, tiers used, bus bytes, breakdown,
source). Message-size convention is that of nccl-tests' "size": ``all_reduce`` the buffer on each
rank; ``all_gather`` the gathered output; ``reduce_scatter`` the input; ``all_to_all`` each
rank's whole send buffer (its share to itself included); ``send_recv`` the bytes sent.

Each algorithm is a list of phases (kernels): bytes at the per-rank bandwidth and pipeline
steps per tier; ``hardware.protocols`` prices every phase with NCCL's protocols (LL, LL128,
Simple: ``base + steps x hop(protocol, fabric) + bytes / (bw x payload)``) and the cheapest runs
(``protocol=`` pins one). p ranks, B bytes, bw the per-rank bandwidth:

* ring all-reduce ``2(p-1)/p * B/bw`` over ``2(p-1)`` steps; ring all-gather/reduce-scatter
  ``(p-1)/p * B/bw`` over ``p-1`` steps; as NCCL counts them, ``2(m-1)`` (``m-1``) of the steps
  cross the outer tier (m blocks), the rest the inner one. A ring leaves each block of tier t-1
  once; NCCL runs one ring (channel) per NIC, so the r ranks of a block drive its exits in
  parallel and the ring gets ``min(bw_0, r_{t-1} * bw_t, ...)`` per rank.
* double binary tree all-reduce (NCCL): ``2 B/bw`` over ``2 (ceil(log2 m)`` outer +
  ``(g-1)`` inner) steps, with m scale-up domains of g ranks.
* NVLS (NVLink SHARP) all-reduce inside one tier whose switches reduce
  (``Tier.switch_reduction_efficiency``): ``B (1 + 1/p) / (bw x efficiency)`` plus a fitted
  pipeline latency, Simple only.
* hierarchical (two-level): reduce-scatter inside the scale-up domain, all-reduce (or all-gather /
  reduce-scatter) of 1/g of the data across domains, each rank on its own NIC in parallel, then
  all-gather inside the domain; one kernel (base latency) per phase.
* all-to-all: flat -- each rank sends (p-1)/p of its buffer in one exchange step; the bytes a tier
  carries per rank follow from where the peers sit (placement), with the multi-plane rule that
  cross-plane traffic is forwarded over the scale-up fabric first; the most loaded tier sets the
  time, at ``nccl.all_to_all_bw_fraction`` of the link. Hierarchical -- an intra-domain
  exchange, then an inter-domain exchange of aggregated data.
* send_recv: ``B / min(bw on the path)``, one step per tier on the path.

Bandwidths are per-rank achievable figures: ``Tier.effective_bytes_per_s`` when the catalog
states an efficiency, otherwise nominal times ``link_achievable_fraction.<technology>`` from
``hardware/data/comm_calibration.yaml``, times a per-algorithm fraction from the same file. A
measured profile (duck-typed: ``profile.collective_seconds(op, group_size, bytes, fabric=, device=)``
with the technology of the outermost tier the group spans and the cluster's device name, returning
seconds or ``(seconds, source)``, or ``None``/raising ``LookupError`` when it does not cover the
case) overrides the model.

The group's placement is a sequence of global device ids (default: contiguous ranks 0..p-1, which
fills a node first). Device d sits in block ``d // tier.span_devices`` of each tier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from hardware.protocols import PROTOCOLS, Phase, bw_fraction, cheapest
from hardware.types import Cluster, Tier

__all__ = [
    "OPS",
    "ALGORITHMS",
    "CollectiveCost",
    "CommCalibration",
    "GroupGeometry",
    "load_comm_calibration",
    "achievable_bytes_per_s",
    "group_geometry",
    "collective_time",
]

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
ALGORITHMS = {
    "all_reduce": ("ring", "tree", "nvls", "hierarchical"),
    "all_gather": ("ring", "hierarchical"),
    "reduce_scatter": ("ring", "hierarchical"),
    "all_to_all": ("flat", "hierarchical"),
    "send_recv": ("direct",),
}
_CALIBRATION_PATH = Path(__file__).parent / "data" / "comm_calibration.yaml"


# ----------------------------------------------------------------------------- calibration


@dataclass(frozen=True, slots=True)
class CommCalibration:
    """Named, sourced communication parameters (``comm_calibration.yaml``), read-only."""

    values: Mapping[str, float]
    sources: Mapping[str, str]
    path: str = ""
    #: fitted parameters: the documented value their fit starts from (``fit_start``)
    fit_start: Mapping[str, float] = field(default_factory=dict)

    def get(self, name: str) -> float:
        try:
            return self.values[name]
        except KeyError:
            prefix = name.rsplit(".", 1)[0]
            near = sorted(k for k in self.values if k.startswith(prefix)) or sorted(self.values)
            raise KeyError(f"no communication parameter {name!r} (known: {', '.join(near)})") from None

    def get_or(self, name: str, default: float) -> float:
        return self.values.get(name, default)

    def with_values(self, overrides: Mapping[str, float]) -> "CommCalibration":
        """A copy with some parameters overridden (e.g. a fit of one's own); unknown names raise."""
        for name in overrides:
            self.get(name)
        values = {**self.values, **{k: float(v) for k, v in overrides.items()}}
        return CommCalibration(MappingProxyType(values), self.sources, self.path, self.fit_start)


@lru_cache(maxsize=4)
def load_comm_calibration(path: str | None = None) -> CommCalibration:
    """Parse ``comm_calibration.yaml`` (or ``path``); memoised, the result is immutable."""
    file = Path(path) if path else _CALIBRATION_PATH
    doc = None if path else _packaged_document()
    if doc is None:
        from hardware.yaml_io import safe_load

        with open(file, encoding="utf-8") as fh:
            doc = safe_load(fh)
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    starts: dict[str, float] = {}
    for name, entry in (doc.get("parameters") or {}).items():
        if not isinstance(entry, dict) or "value" not in entry or "source" not in entry:
            raise ValueError(f"{file}: parameter {name} needs 'value' and 'source'")
        if ("fit_start" in entry) != ("fitted_on" in entry):
            raise ValueError(f"{file}: parameter {name}: a fitted parameter needs both 'fitted_on' and 'fit_start'")
        values[name] = float(entry["value"])
        sources[name] = str(entry["source"])
        if "fit_start" in entry:
            starts[name] = float(entry["fit_start"])
    return CommCalibration(MappingProxyType(values), MappingProxyType(sources), str(file), MappingProxyType(starts))


def _packaged_document() -> Any:
    """The packaged file's parsed document from the hardware data snapshot (no YAML parser to
    import), or None when that is not fresh (``hardware.catalog_snapshot``)."""
    from hardware import catalog_snapshot

    return catalog_snapshot.document(_CALIBRATION_PATH.name)


def achievable_bytes_per_s(tier: Tier, calibration: CommCalibration | None = None) -> float:
    """Per-device achievable bandwidth of ``tier``.

    A tier whose catalog entry states an efficiency (anything but the default 1.0) is taken at
    ``effective_bytes_per_s``; otherwise the technology's ``link_achievable_fraction`` applies.
    """
    if tier.efficiency != 1.0:
        return tier.effective_bytes_per_s
    calib = calibration or load_comm_calibration()
    fraction = calib.get_or(f"link_achievable_fraction.{tier.technology}", 1.0)
    return tier.bandwidth_bytes_per_s * fraction / tier.oversubscription


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True, slots=True)
class GroupGeometry:
    """Where a group's ranks sit relative to the cluster's tiers.

    ``outer_tier``: index of the innermost tier holding the whole group. ``domains``: number of
    distinct tier-0 (scale-up) blocks; ``ranks_per_domain``: the largest number of ranks in one.
    ``ranks_per_block[t]``: mean number of the group's ranks sharing a rank's tier-t block.
    ``peer_share[t]``: mean fraction of a rank's p-1 peers whose innermost common tier is t.
    ``carried_share[t]``: fraction of a rank's uniform all-to-all bytes (to its peers) that
    load tier t's per-rank bandwidth (outer peers of the same technology load it too; cross-plane
    traffic of multi-plane tiers is forwarded over tier 0 first).
    """

    size: int
    outer_tier: int
    domains: int
    ranks_per_domain: int
    ranks_per_block: tuple[float, ...]
    peer_share: tuple[float, ...]
    carried_share: tuple[float, ...]


def _placement_array(group_size: int, cluster: Cluster, placement: Sequence[int] | None) -> Any:
    """The group's device ids, checked: ``placement`` as an int64 array (numpy is imported here
    only: contiguous groups, the common case, need none), or None for contiguous ranks 0..p-1."""
    if group_size < 1:
        raise ValueError(f"group size must be >= 1, got {group_size}")
    if placement is None:
        if group_size > cluster.num_devices:
            raise ValueError(
                f"cluster {cluster.name}: a group of {group_size} devices exceeds its {cluster.num_devices} devices"
            )
        return None
    import numpy as np

    arr = np.asarray(placement, dtype=np.int64)
    if arr.shape != (group_size,):
        raise ValueError(f"placement has {arr.size} devices, group size is {group_size}")
    if arr.min() < 0 or arr.max() >= cluster.num_devices or np.unique(arr).size != arr.size:
        raise ValueError(f"placement must name {group_size} distinct devices in 0..{cluster.num_devices - 1}")
    return arr


def group_geometry(group_size: int, cluster: Cluster, placement: Sequence[int] | None = None) -> GroupGeometry:
    """Tier geometry of a group (contiguous ranks unless ``placement`` gives device ids)."""
    devices = _placement_array(group_size, cluster, placement)
    tiers = tuple((t.span_devices, t.technology, t.planes) for t in cluster.tiers)  # all the geometry reads
    if devices is None:  # contiguous ranks: a function of the size and the tiers' shapes only
        geo = _contiguous_geometry(group_size, tiers)
    else:
        geo = _geometry(devices, tiers)
    if geo is None:
        raise ValueError(f"cluster {cluster.name}: tiers do not span the group's devices")
    return geo


@lru_cache(maxsize=4096)
def _contiguous_geometry(group_size: int, tiers: tuple) -> GroupGeometry | None:
    """``_geometry`` of ranks ``0..group_size-1`` in closed form (memoised: collectives of a step
    ask it again): per tier of span s, q = p // s full blocks and one of r = p % s ranks, so a
    rank's mean block size is (q s^2 + r^2) / p -- the integer sum ``_geometry``'s float mean
    adds exactly, divided once, so the same float."""
    p = group_size
    blocks = []
    for span, _tech, _planes in tiers:
        q, r = divmod(p, span)
        blocks.append(((q * span * span + r * r) / p, q + (r > 0), span if q else r))
    return _assemble(p, blocks, tiers)


def _geometry(devices: Any, tiers: tuple) -> GroupGeometry | None:
    """Geometry of the group on ``devices`` (an int64 array) over ``tiers`` ((span devices,
    technology, planes) from the innermost tier out); None when the outermost tier does not span them."""
    import numpy as np

    blocks = []
    for span, _tech, _planes in tiers:
        _, inverse, counts = np.unique(devices // span, return_inverse=True, return_counts=True)
        blocks.append((float(counts[inverse].mean()), int(counts.size), int(counts.max())))
    return _assemble(len(devices), blocks, tiers)


def _assemble(p: int, blocks: list, tiers: tuple) -> GroupGeometry | None:
    """The geometry from each tier's (mean block size over the ranks, blocks, largest block)."""
    outer = None
    peers_within = []  # mean number of peers in the same block of tier t
    domains = ranks_per_domain = 1
    for t, (mean_block, num_blocks, largest) in enumerate(blocks):
        peers_within.append(mean_block - 1.0)
        if t == 0:
            domains, ranks_per_domain = num_blocks, largest
        if outer is None and num_blocks == 1:
            outer = t
    if outer is None:
        return None
    denom = max(p - 1, 1)
    peer_share = []
    prev = 0.0
    for t in range(len(tiers)):
        peer_share.append((peers_within[t] - prev) / denom)
        prev = peers_within[t]
    carried = []
    for t, (_span, tech, _planes) in enumerate(tiers):
        share = peer_share[t]
        for u in range(t + 1, len(tiers)):
            if tiers[u][1] == tech:
                share += peer_share[u]
            elif t == 0 and tiers[u][2] > 1:
                share += peer_share[u] * (tiers[u][2] - 1) / tiers[u][2]
        carried.append(share)
    ranks_per_block = tuple(w + 1.0 for w in peers_within)
    return GroupGeometry(p, outer, domains, ranks_per_domain, ranks_per_block, tuple(peer_share), tuple(carried))


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True, slots=True)
class CollectiveCost:
    """Time of one collective on one group, with how it was obtained.

    ``algorithm``: ring, tree, nvls, hierarchical, flat, direct (or "measured"); ``protocol``:
    the NCCL protocol it ran with (ll, ll128, simple; "native" on fabrics NCCL does not drive).
    """

    op: str
    seconds: float
    algorithm: str
    tiers: tuple[str, ...]  # names of the tiers the traffic crosses, innermost first
    bus_bytes: float  # nccl-tests bus bytes per rank (bus bandwidth = bus_bytes / seconds)
    breakdown: tuple[tuple[str, float], ...]  # (phase, seconds)
    source: str  # "model:<algorithm>" or "profile"
    protocol: str = ""

    @property
    def bus_bytes_per_s(self) -> float:
        return self.bus_bytes / self.seconds if self.seconds > 0 else math.inf


def _bus_bytes(op: str, nbytes: float, p: int) -> float:
    if p <= 1:
        return 0.0
    if op == "all_reduce":
        return 2.0 * (p - 1) / p * nbytes
    if op == "send_recv":
        return float(nbytes)
    return (p - 1) / p * nbytes


# ----------------------------------------------------------------------------- algorithms
# Each algorithm returns the phases (kernels) it runs: bytes as seconds at full payload
# bandwidth, and the sequential pipeline steps per tier; hardware.protocols prices them.


@dataclass(frozen=True, slots=True)
class _Ctx:
    op: str
    nbytes: float
    geo: GroupGeometry
    tiers: tuple[Tier, ...]
    bw: tuple[float, ...]  # achievable per-rank bandwidth per tier
    calib: CommCalibration
    cross_plane: bool = False  # send_recv only

    @property
    def p(self) -> int:
        return self.geo.size

    def crossed(self) -> range:
        return range(self.geo.outer_tier + 1)

    def path_bw(self, first: int = 0, last: int | None = None, parallel_rings: bool = True) -> float:
        """Per-rank bandwidth of a ring over tiers ``first..last``.

        A ring leaves each tier-(t-1) block once, and NCCL runs one ring (channel) per NIC, so
        the ranks of a block share its exits: the ring gets ``ranks_per_block[t-1] * bw[t]``
        on tier t (``parallel_rings=False`` for the one-rank-per-block inter-domain rings of
        the hierarchical algorithms, which run side by side, one per rail, instead).
        """
        last = self.geo.outer_tier if last is None else last
        bws = [self.bw[first]]
        for t in range(first + 1, last + 1):
            share = self.geo.ranks_per_block[t - 1] if parallel_rings else 1.0
            bws.append(self.bw[t] * share)
        return min(bws)

    def hops(self, *steps: tuple[int, int]) -> tuple[int, ...]:
        """Steps per tier index from ``(tier, steps)`` pairs (repeated tiers add up)."""
        out = [0] * len(self.tiers)
        for tier, n in steps:
            out[tier] += n
        return tuple(out)


def _ring(ctx: _Ctx, name: str, passes: int, nbytes: float, p: int, first: int = 0,
          last: int | None = None, units: int | None = None) -> Phase:
    """A ring over ``p`` ranks on tiers ``first..last`` (``passes`` = 2 all-reduce, 1 gather/scatter).

    NCCL's step count: ``passes (p-1)`` steps, ``passes (units-1)`` of them cross the outer
    tier (``units`` = blocks of the inner tier the ring visits), the rest the inner tier.
    """
    last = ctx.geo.outer_tier if last is None else last
    if p <= 1:
        return Phase(name, 0.0, ctx.hops())
    bw = ctx.path_bw(first, last, parallel_rings=first == 0) * ctx.calib.get("nccl.ring_bus_bw_fraction")
    steps = passes * (p - 1)
    units = p if units is None else units
    inter = passes * (units - 1) if last > first else 0
    hops = ctx.hops((first, steps - inter), (last, inter))
    return Phase(name, passes * (p - 1) / p * nbytes / bw, hops)


def _flat_ring(ctx: _Ctx) -> list[Phase]:
    passes = 2 if ctx.op == "all_reduce" else 1
    return [_ring(ctx, "ring", passes, ctx.nbytes, ctx.p, units=ctx.geo.domains)]


def _tree(ctx: _Ctx) -> list[Phase]:
    geo = ctx.geo
    # chain inside the domain, trees across domains; a domain's ranks drive its NICs in parallel
    bw = ctx.path_bw() * ctx.calib.get("nccl.tree_bus_bw_fraction")
    depth = math.ceil(math.log2(geo.domains)) if geo.domains > 1 else 0
    hops = ctx.hops((0, 2 * (geo.ranks_per_domain - 1)), (geo.outer_tier, 2 * depth))
    return [Phase("tree", 2.0 * ctx.nbytes / bw, hops)]


def _nvls(ctx: _Ctx) -> list[Phase] | None:
    """NVLink SHARP (NCCL's NVLS): the switch reduces and multicasts. Each rank sends its buffer
    once into the switch and receives the 1/p slice it reduces plus everyone's results: about
    ``B (1 + 1/p)`` per direction on its links, at the tier's in-switch reduction efficiency.
    Needs the whole group in one tier whose switches reduce; Simple protocol only."""
    tier = ctx.tiers[0]
    if ctx.op != "all_reduce" or ctx.geo.outer_tier != 0 or tier.switch_reduction_efficiency <= 0:
        return None
    bw = ctx.bw[0] * tier.switch_reduction_efficiency
    beta = ctx.nbytes * (1.0 + 1.0 / ctx.p) / bw
    return [Phase("nvls", beta, ctx.hops(), fixed_latency_s=ctx.calib.get("nccl.nvls_latency_s"), simple_only=True)]


def _hierarchical(ctx: _Ctx) -> list[Phase]:
    geo = ctx.geo
    g, m = geo.ranks_per_domain, geo.domains
    if m <= 1 or g <= 1:
        return _flat_ring(ctx)
    outer = geo.outer_tier
    b = ctx.nbytes
    if ctx.op == "all_reduce":
        return [_ring(ctx, "intra_reduce_scatter", 1, b, g, 0, 0), _ring(ctx, "inter_all_reduce", 2, b / g, m, 1, outer),
                _ring(ctx, "intra_all_gather", 1, b, g, 0, 0)]
    if ctx.op == "all_gather":  # across domains first (1/g of the output per rail), then inside
        return [_ring(ctx, "inter_all_gather", 1, b / g, m, 1, outer), _ring(ctx, "intra_all_gather", 1, b, g, 0, 0)]
    # reduce_scatter: inside first, then across domains
    return [_ring(ctx, "intra_reduce_scatter", 1, b, g, 0, 0), _ring(ctx, "inter_reduce_scatter", 1, b / g, m, 1, outer)]


def _all_to_all_flat(ctx: _Ctx) -> list[Phase]:
    """One exchange with every peer at once (NCCL's grouped send/recv): the bytes each tier
    carries per rank follow from where the peers sit; the most loaded tier sets the time."""
    geo = ctx.geo
    sent = ctx.nbytes * (ctx.p - 1) / ctx.p
    frac = ctx.calib.get("nccl.all_to_all_bw_fraction")
    per_tier = tuple((ctx.tiers[t].name, sent * geo.carried_share[t] / (ctx.bw[t] * frac)) for t in ctx.crossed())
    beta = max(s for _, s in per_tier)
    return [Phase("exchange", beta, ctx.hops((geo.outer_tier, 1)), detail=per_tier)]


def _all_to_all_hierarchical(ctx: _Ctx) -> list[Phase]:
    geo = ctx.geo
    g, m = geo.ranks_per_domain, geo.domains
    if m <= 1 or g <= 1:
        return _all_to_all_flat(ctx)
    frac = ctx.calib.get("nccl.all_to_all_bw_fraction")
    net_bw = min(ctx.bw[1 : geo.outer_tier + 1]) * frac
    return [Phase("intra_exchange", ctx.nbytes * (g - 1) / g / (ctx.bw[0] * frac), ctx.hops((0, 1))),
            Phase("inter_exchange", ctx.nbytes * (m - 1) / m / net_bw, ctx.hops((geo.outer_tier, 1)))]


def _send_recv(ctx: _Ctx) -> list[Phase]:
    outer = ctx.geo.outer_tier
    # a peer on another plane of a multi-plane tier is reached over tier 0 first (NVLink forwarding)
    path = [0] if (outer == 0 or ctx.cross_plane) else []
    path += list(range(1, outer + 1))
    hops = [0] * len(ctx.tiers)
    for t in path:
        hops[t] += 1
    return [Phase("direct", ctx.nbytes / min(ctx.bw[t] for t in path), tuple(hops))]


def _cross_plane(devices: Any, cluster: Cluster, outer: int) -> bool:
    """Whether two devices (ids; None: ranks 0 and 1) sit on different planes of a multi-plane
    tier they communicate over."""
    planes = max((t.planes for t in cluster.tiers[1 : outer + 1]), default=1)
    if planes <= 1:
        return False
    first, second = (0, 1) if devices is None else (int(devices[0]), int(devices[1]))
    span = cluster.tiers[0].span_devices
    return (first % span) % planes != (second % span) % planes


_MODELS = {
    ("all_reduce", "ring"): _flat_ring,
    ("all_reduce", "tree"): _tree,
    ("all_reduce", "nvls"): _nvls,
    ("all_reduce", "hierarchical"): _hierarchical,
    ("all_gather", "ring"): _flat_ring,
    ("all_gather", "hierarchical"): _hierarchical,
    ("reduce_scatter", "ring"): _flat_ring,
    ("reduce_scatter", "hierarchical"): _hierarchical,
    ("all_to_all", "flat"): _all_to_all_flat,
    ("all_to_all", "hierarchical"): _all_to_all_hierarchical,
    ("send_recv", "direct"): _send_recv,
}


def _priced(ctx: _Ctx, name: str, protocol: str) -> tuple[float, str, tuple] | None:
    """(seconds, protocol, breakdown) of algorithm ``name``; None when it does not apply."""
    phases = _MODELS[(ctx.op, name)](ctx)
    if phases is None:
        return None
    tiers = ctx.tiers[: ctx.geo.outer_tier + 1]
    allowed = None if protocol == "auto" else (protocol,)
    seconds, proto, parts = cheapest(phases, tiers, ctx.calib, allowed)
    if len(parts) == 1:
        _, beta, lat = parts[0]
        frac = bw_fraction(proto, ctx.calib)
        detail = tuple((n, s / frac) for n, s in phases[0].detail)  # e.g. each tier of an all-to-all
        breakdown = (detail or (("bandwidth", beta),)) + (("latency", lat),)
    else:
        breakdown = tuple((pname, beta + lat) for pname, beta, lat in parts)
    return seconds, proto, breakdown


def _from_profile(profile: Any, op: str, group_size: int, nbytes: float, fabric: Tier,
                  device: str) -> tuple[float, str] | None:
    """A measured time for (op, group size, bytes) on this fabric tier and device, if the profile has one."""
    if profile is None:
        return None
    try:
        found = profile.collective_seconds(op, group_size, nbytes, fabric=fabric.technology or fabric.name,
                                           device=device)
    except (LookupError, ValueError):
        return None
    if found is None:
        return None
    seconds, source = found if isinstance(found, tuple) else (found, "profile")
    return float(seconds), source


def collective_time(
    op: str,
    bytes_per_rank: float,
    group_size: int,
    cluster: Cluster,
    algorithm: str = "auto",
    placement: Sequence[int] | None = None,
    *,
    profile: Any = None,
    calibration: CommCalibration | None = None,
    protocol: str = "auto",
) -> CollectiveCost:
    """Time of collective ``op`` on a group of ``group_size`` ranks of ``cluster``.

    ``algorithm="auto"`` takes the fastest modelled (algorithm, protocol) for ``op`` (what a
    tuned NCCL picks); otherwise one of ``ALGORITHMS[op]``. ``protocol`` ("auto" or one of
    ``hardware.protocols.PROTOCOLS``) restricts NCCL's protocol. ``profile`` (duck-typed) wins
    when it covers ``(op, group_size, bytes)``. Raises ``ValueError`` with the valid choices.
    """
    if op not in ALGORITHMS:
        raise ValueError(f"unknown collective {op!r} (valid: {', '.join(OPS)})")
    if algorithm != "auto" and algorithm not in ALGORITHMS[op]:
        raise ValueError(f"{op}: unknown algorithm {algorithm!r} (valid: auto, {', '.join(ALGORITHMS[op])})")
    if protocol != "auto" and protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (valid: auto, {', '.join(PROTOCOLS)})")
    if bytes_per_rank < 0:
        raise ValueError(f"bytes_per_rank must be >= 0, got {bytes_per_rank}")
    if op == "send_recv" and group_size != 2:
        raise ValueError(f"send_recv is between 2 ranks (placement gives their devices), got group size {group_size}")
    geo = group_geometry(group_size, cluster, placement)
    tier_names = tuple(t.name for t in cluster.tiers[: geo.outer_tier + 1])
    bus = _bus_bytes(op, bytes_per_rank, group_size)
    measured = _from_profile(profile, op, group_size, bytes_per_rank, cluster.tiers[geo.outer_tier],
                             cluster.device.name) if group_size > 1 else None
    if measured is not None:
        seconds, source = measured
        return CollectiveCost(op, seconds, "measured", tier_names, bus, (("measured", seconds),), source)
    if group_size == 1:
        return CollectiveCost(op, 0.0, "none", (), 0.0, (), "model:trivial")
    calib = calibration or load_comm_calibration()
    cross_plane = op == "send_recv" and _cross_plane(_placement_array(2, cluster, placement), cluster, geo.outer_tier)
    ctx = _Ctx(op, float(bytes_per_rank), geo, cluster.tiers,
               tuple(achievable_bytes_per_s(t, calib) for t in cluster.tiers), calib, cross_plane)
    candidates = ALGORITHMS[op] if algorithm == "auto" else (algorithm,)
    best = None
    for name in candidates:
        priced = _priced(ctx, name, protocol)
        if priced is None:
            continue
        if best is None or priced[0] < best[0]:
            best = (*priced, name)
    if best is None:
        raise ValueError(f"{op}: algorithm {algorithm!r} does not apply to this group "
                         f"(valid here: {', '.join(n for n in ALGORITHMS[op] if _MODELS[(op, n)](ctx) is not None)})")
    seconds, proto, breakdown, name = best
    return CollectiveCost(op, seconds, name, tier_names, bus, tuple(breakdown), f"model:{name}", proto)
