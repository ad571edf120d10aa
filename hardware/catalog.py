"""Hardware catalog: accelerators, network prices and named clusters, loaded from package YAML.

The YAML files under ``hardware/data`` (``devices.yaml``, ``prices.yaml``, ``clusters.yaml``)
use friendly units in their keys (``bf16_tflops``, ``hbm_gb``, ``latency_us``, ...) and carry a
source for every number. They are validated (pydantic, ``extra="forbid"``; ``hardware.catalog_yaml``)
and converted to SI exactly once, into the frozen types of ``hardware.types``. Parsed catalogs are
cached per process by ``functools.lru_cache`` on a pure loader, which reads the snapshot of that
parse (``hardware.catalog_snapshot``: JSON, used only while it matches the YAML files' hashes)
rather than validating the YAML again on every start; building a cluster allocates nothing per
device, so the 16,384-GPU ``h800-mpft`` costs the same as a single node.

Public API: ``list_devices``, ``get_device``, ``list_clusters``, ``get_cluster``,
``cluster_report``, ``get_network_prices``, ``UnknownNameError``; hardware names given by users
go through one rule (``lookup_hardware`` for what a name is, ``cluster_for`` where a cluster is
needed; hardware/README.md "Names"); for tests and tools,
``parse_devices``, ``parse_prices``, ``parse_clusters`` parse YAML text given a file name, and
raise ``ValueError("<file>: <dotted.field>: <problem>")`` on bad data (``hardware.catalog_yaml``,
re-exported here).
"""

from __future__ import annotations

import difflib
import functools
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from hardware import topology as topo
from hardware.types import Cluster, DeviceSpec, Tier

__all__ = [
    "UnknownNameError",
    "list_devices",
    "get_device",
    "die_device",
    "list_clusters",
    "get_cluster",
    "cluster_report",
    "get_network_prices",
    "lookup_hardware",
    "clusters_of",
    "cluster_for",
    "parse_devices",  # noqa: F822  (these three: ``__getattr__``)
    "parse_prices",  # noqa: F822
    "parse_clusters",  # noqa: F822
]

_PARSERS = ("parse_devices", "parse_prices", "parse_clusters")


def __getattr__(name: str):
    """The YAML parsers (``hardware.catalog_yaml``, pydantic), imported on first use."""
    if name in _PARSERS:
        from hardware import catalog_yaml

        return getattr(catalog_yaml, name)
    raise AttributeError(f"module 'hardware.catalog' has no attribute {name!r}")


class UnknownNameError(LookupError):
    """A device/cluster/price-set name that is not in the catalog; the message lists the known names."""

    def __init__(self, kind: str, name: str, known: list[str], aliases: list[str] | tuple[str, ...] = (),
                 note: str = ""):
        self.kind = kind
        self.name = name
        self.known = list(known)
        self.aliases = list(aliases)
        self.note = note
        guess = difflib.get_close_matches(str(name).strip().lower(), [*self.known, *self.aliases], n=1, cutoff=0.5)
        hint = note or (f"; did you mean '{guess[0]}'?" if guess else "")
        # args[0] is the one-line message (callers print it); __reduce__ keeps the error picklable
        super().__init__(f"unknown {kind} '{name}' (known: {', '.join(self.known)}){hint}")

    def __str__(self) -> str:  # LookupError subclasses such as KeyError would repr() the message
        return str(self.args[0])

    def __reduce__(self):
        return (type(self), (self.kind, self.name, self.known, self.aliases, self.note))


# ---------------------------------------------------------------------------------------------
# Cached catalog and lookups
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Catalog:
    devices: Mapping[str, DeviceSpec]
    device_aliases: Mapping[str, str]
    prices: Mapping[str, topo.NetworkPrices]
    clusters: Mapping[str, Cluster]
    cluster_aliases: Mapping[str, str]


@functools.lru_cache(maxsize=1)
def _catalog() -> _Catalog:
    """The packaged catalog, once per process (pure: same files, same result): the snapshot of
    its parse while that matches the YAML files, else the YAML parsed and validated."""
    from hardware import catalog_snapshot

    doc = catalog_snapshot.packaged()
    if doc is not None:
        parts = catalog_snapshot.catalog_parts(doc)
    else:
        from hardware.catalog_yaml import parse_catalog

        parts = parse_catalog(catalog_snapshot.read_data)
    return _Catalog(*(MappingProxyType(p) for p in parts))


def _lookup(kind: str, name: str, table: Mapping[str, Any], aliases: Mapping[str, str]) -> Any:
    key = str(name).strip().lower()
    if key in table:
        return table[key]
    if key in aliases:
        return table[aliases[key]]
    raise UnknownNameError(kind, name, sorted(table), sorted(aliases))


def list_devices() -> list[str]:
    """Canonical device names, sorted."""
    return sorted(_catalog().devices)


def get_device(name: str) -> DeviceSpec:
    """Device by name or alias (case-insensitive); raises UnknownNameError listing the known names."""
    cat = _catalog()
    return _lookup("device", name, cat.devices, cat.device_aliases)


def die_device(device: DeviceSpec) -> DeviceSpec:
    """One die of a multi-die package: the catalog's per-die entry when there is one (it derives
    from this package), else the package with every additive quantity divided by its dies."""
    if device.dies <= 1:
        return device
    named = [d for d in _catalog().devices.values() if d.package == device.name]
    if named:
        return named[0]
    from hardware.catalog_yaml import per_die

    return per_die(f"{device.name}-die", device, "")


def list_clusters() -> list[str]:
    """Canonical cluster names, sorted."""
    return sorted(_catalog().clusters)


def get_cluster(name: str) -> Cluster:
    """Cluster by name or alias (case-insensitive); raises UnknownNameError listing the known names
    (and, for a device name, that device's clusters: a device is not a cluster)."""
    cat = _catalog()
    try:
        return _lookup("cluster", name, cat.clusters, cat.cluster_aliases)
    except UnknownNameError as exc:
        key = str(name).strip().lower()
        if key not in cat.devices and key not in cat.device_aliases:
            raise
        dev = get_device(key)
        own = ", ".join(c.name for c in clusters_of(dev)) or "none"
        raise UnknownNameError("cluster", name, exc.known, exc.aliases,
                               note=f"; '{name}' is a device ({dev.name}), its clusters: {own}") from None


def get_network_prices(name: str) -> topo.NetworkPrices:
    """Network component price set by name (see prices.yaml)."""
    cat = _catalog()
    return _lookup("price set", name, cat.prices, {})


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _tier_row(tier: Tier) -> dict[str, Any]:
    return {
        "name": tier.name,
        "technology": tier.technology,
        "span_devices": tier.span_devices,
        "bandwidth_bytes_per_s": tier.bandwidth_bytes_per_s,
        "efficiency": tier.efficiency,
        "oversubscription": tier.oversubscription,
        "effective_bytes_per_s": tier.effective_bytes_per_s,
        "latency_s": tier.latency_s,
        "planes": tier.planes,
        "switch_reduction_efficiency": tier.switch_reduction_efficiency,
    }


def cluster_report(cluster: Cluster | str) -> dict[str, Any]:
    """Headline numbers of a cluster as a plain dict (SI units; JSON-friendly).

    * counts and cost from ``cluster.topology`` (switch-to-switch ``links``; cost of the network
      only, plus ``devices_cost_usd`` from the assumed device price);
    * ``tiers``: one row per tier with its uniform all-to-all traffic share and bound;
    * ``bisection_bytes_per_s``: unidirectional, (N/2) x per-device bandwidth of the innermost
      tier spanning more than half the cluster (see ``hardware.topology.bisection``);
    * ``all_to_all_bytes_per_s_per_device``: uniform all-to-all send rate per device, min over
      tiers of effective bandwidth / share of traffic loading it (``topology.uniform_all_to_all``).
    """
    c = get_cluster(cluster) if isinstance(cluster, str) else cluster
    n = c.num_devices
    a2a, shares = topo.uniform_all_to_all(c.tiers, n)
    bis, bis_eff, bis_tier = topo.bisection(c.tiers, n)
    rows = []
    bottleneck = ""
    for tier, share in zip(c.tiers, shares or [None] * len(c.tiers)):
        row = _tier_row(tier)
        if share is not None:
            row["a2a_destination_share"] = share.destination_share
            row["a2a_carried_share"] = share.carried_share
            row["a2a_bound_bytes_per_s"] = share.bound_bytes_per_s
            if share.bound_bytes_per_s == a2a and not bottleneck:
                bottleneck = tier.name
        rows.append(row)
    t = c.topology
    return {
        "name": c.name,
        "description": c.description,
        "device": c.device.name,
        "devices": n,
        "nodes": c.num_nodes,
        "devices_per_node": c.devices_per_node,
        "topology_kind": t.kind,
        "endpoints": t.endpoints,
        "switches": t.switches,
        "links": t.links,
        "endpoint_links": t.endpoint_links,
        "cost_usd": t.cost_usd,
        "cost_per_endpoint_usd": t.cost_per_endpoint_usd,
        "cost_notes": t.notes,
        "devices_cost_usd": c.device.price_usd * n,
        "tiers": rows,
        "side_tiers": [_tier_row(s) for s in c.side_tiers],
        "bisection_bytes_per_s": bis,
        "bisection_effective_bytes_per_s": bis_eff,
        "bisection_tier": bis_tier,
        "all_to_all_bytes_per_s_per_device": a2a if math.isfinite(a2a) else 0.0,
        "all_to_all_bottleneck_tier": bottleneck,
    }


def device_report(device: DeviceSpec | str) -> dict[str, Any]:
    """A device's catalog figures in report units (TFLOP/s, GB, GB/s) with their sources."""
    d = get_device(device) if isinstance(device, str) else device
    return {
        "name": d.name,
        "vendor": d.vendor,
        "dies": d.dies,
        "compute_units": d.compute_units,
        "peak_tflops": {k: v / 1e12 for k, v in d.peak_flops_per_s.items()},
        "hbm_gb": d.hbm_bytes / 1e9,
        "hbm_gb_per_s": d.hbm_bytes_per_s / 1e9,
        "l2_mb": d.l2_bytes / 1e6,
        "scale_up_gb_per_s_unidir": d.scale_up_bytes_per_s / 1e9,
        "scale_out_gb_per_s_unidir": d.scale_out_bytes_per_s / 1e9,
        "price_usd": d.price_usd,
        "sources": dict(d.sources),
    }


# ---------------------------------------------------------------------------------------------
# Hardware names: the one rule (hardware/README.md "Names")
# ---------------------------------------------------------------------------------------------


def lookup_hardware(name: str) -> Cluster | DeviceSpec:
    """What a hardware name means: a cluster name or alias names that cluster, a device name or
    alias that device (the catalogs share no name; the loader enforces it). Case-insensitive;
    an unknown name raises ``UnknownNameError`` listing both catalogs. ``hardware show`` uses it."""
    cat = _catalog()
    key = str(name).strip().lower()
    if key in cat.clusters or key in cat.cluster_aliases:
        return get_cluster(key)
    if key in cat.devices or key in cat.device_aliases:
        return get_device(key)
    raise UnknownNameError("hardware", name, sorted(cat.clusters) + sorted(cat.devices),
                           sorted(cat.cluster_aliases) + sorted(cat.device_aliases))


def clusters_of(device: DeviceSpec | str) -> list[Cluster]:
    """Catalog clusters built of ``device``, smallest first (then by name)."""
    dev = get_device(device) if isinstance(device, str) else device
    own = [c for c in _catalog().clusters.values() if c.device.name == dev.name]
    return sorted(own, key=lambda c: (c.num_devices, c.name))


def cluster_for(name: str, devices: int = 1) -> Cluster:
    """The cluster a hardware name stands for where a cluster is needed (``estimate``, what-if
    ``--compare``, a plan's ``hardware.device``): a cluster name or alias is that cluster; a
    device name or alias is the smallest catalog cluster of that device with at least
    ``devices`` devices (ties: by name). Raises ``LookupError`` naming the device's clusters
    when none is big enough."""
    hw = lookup_hardware(name)
    if isinstance(hw, Cluster):
        return hw
    own = clusters_of(hw)
    for c in own:
        if c.num_devices >= devices:
            return c
    have = ", ".join(f"{c.name} ({c.num_devices:,})" for c in own) or "none"
    raise LookupError(f"no catalog cluster of {hw.name} has {devices:,} devices (its clusters: {have})")
