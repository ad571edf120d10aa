"""Typed, frozen descriptions of accelerators, fabric tiers and clusters.

These are the contracts that the rest of clustersim reads; the catalog YAML under
``hardware/data`` is parsed into them by ``hardware.catalog``. All quantities are SI
(seconds, bytes, bytes/s, FLOP/s) and every name carries its unit.

A fabric is described as an ordered list of *tiers* (innermost first), in the spirit of
astra-sim's dimensions: a tier says how many devices a group confined to it can span, the
per-device unidirectional bandwidth into that tier, its latency and how many parallel planes
it has. Switch/link counts and cost (for topology reports) live in ``Topology``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Mapping


def _getstate(self) -> tuple:
    """Pickle state of a slotted frozen dataclass whose read-only mappings (``MappingProxyType``,
    which does not pickle) travel as dicts: (values, names of the fields to re-wrap)."""
    values = [getattr(self, f.name) for f in fields(self)]
    proxied = tuple(f.name for f, v in zip(fields(self), values) if isinstance(v, MappingProxyType))
    return tuple(dict(v) if isinstance(v, MappingProxyType) else v for v in values), proxied


def _setstate(self, state: tuple) -> None:
    values, proxied = state
    for f, v in zip(fields(self), values):
        object.__setattr__(self, f.name, MappingProxyType(v) if f.name in proxied else v)


def _picklable(cls: Any) -> Any:
    """Give a class read-only-mapping-aware pickling (worker pools pickle profiles holding devices)."""
    cls.__getstate__, cls.__setstate__ = _getstate, _setstate
    return cls


@_picklable
@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One accelerator package (per-GPU figures; per-die figures where the package has several)."""

    name: str
    vendor: str
    peak_flops_per_s: Mapping[str, float]  # dense peak by dtype: "bf16", "fp8", "int8", "fp32"
    hbm_bytes: float
    hbm_bytes_per_s: float
    compute_units: int  # SMs (NVIDIA) or AI cores (Ascend), per package
    scale_up_bytes_per_s: float  # unidirectional, per device (NVLink / UB)
    scale_out_bytes_per_s: float  # unidirectional, per device (IB/RoCE NIC(s))
    dies: int = 1
    # compute units (of ``compute_units``' kind) that EP dispatch/combine kernels occupy while
    # they overlap compute; None = not known for this device (DeepEP's 20 SMs of 132 assumed)
    comm_compute_units: float | None = None
    package: str = ""  # for one die of a multi-die package: the package's name
    l2_bytes: float = 0.0
    price_usd: float = 0.0
    sources: Mapping[str, str] = field(default_factory=dict)

    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype``; raises KeyError naming the supported dtypes."""
        try:
            return self.peak_flops_per_s[dtype]
        except KeyError:
            known = ", ".join(sorted(self.peak_flops_per_s))
            raise KeyError(f"device {self.name} has no {dtype} peak (valid: {known})") from None


@dataclass(frozen=True, slots=True)
class Tier:
    """One level of a fabric, innermost first (e.g. NVLink node, then IB leaf, then IB spine).

    ``span_devices`` is the largest group that stays inside this tier (8 for an NVLink node,
    72 for NVL72, 384 for the CloudMatrix384 unified bus, the whole cluster for the top tier).
    ``bandwidth_bytes_per_s`` is the nominal unidirectional bandwidth one device can inject
    into this tier (all its links/planes together); ``efficiency`` is the achievable fraction
    (with a source); ``latency_s`` the one-way small-message latency across this tier.
    ``planes`` > 1 means the tier is split into independent planes and a device's NIC sits
    on exactly one of them (DeepSeek's multi-plane fat-tree).
    ``switch_reduction_efficiency`` > 0 means the tier's switches reduce and multicast in the
    fabric (NVLink SHARP, NCCL's NVLS algorithm): the achievable fraction of the tier's
    ``effective_bytes_per_s`` that such an all-reduce sustains; 0 = no in-switch reduction.
    """

    name: str
    span_devices: int
    bandwidth_bytes_per_s: float
    latency_s: float
    efficiency: float = 1.0
    planes: int = 1
    oversubscription: float = 1.0
    technology: str = ""  # "nvlink", "ub", "ib", "roce"
    switch_reduction_efficiency: float = 0.0

    @property
    def effective_bytes_per_s(self) -> float:
        return self.bandwidth_bytes_per_s * self.efficiency / self.oversubscription


@dataclass(frozen=True, slots=True)
class Topology:
    """Counts used for topology reports (Table 3 of 'Insights into DeepSeek-V3')."""

    kind: str  # "nvswitch_node", "fat_tree2", "multi_plane_fat_tree2", "fat_tree3", "multi_rail", "unified_bus"
    endpoints: int
    switches: int
    links: int  # switch-to-switch links
    cost_usd: float
    notes: str = ""
    endpoint_links: int = 0  # endpoint-to-switch links (NIC or NVLink/UB ports); not in Table 3
    levels: int = 0  # switch layers on the longest endpoint-to-endpoint path's way up (0: unknown)

    @property
    def cost_per_endpoint_usd(self) -> float:
        return self.cost_usd / self.endpoints if self.endpoints else 0.0


@_picklable
@dataclass(frozen=True, slots=True)
class Cluster:
    """A named cluster: devices, how they are grouped into nodes, and the fabric tiers."""

    name: str
    device: DeviceSpec
    devices_per_node: int
    num_nodes: int
    tiers: tuple[Tier, ...]
    topology: Topology
    description: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)
    # Parallel fabrics that are not part of the nested tier hierarchy, e.g. CloudMatrix384's RDMA
    # plane (scale-out between supernodes, KV transfer) and VPC plane. Groups never resolve to
    # them through ``tier_for_group``; flows that use them say so explicitly.
    side_tiers: tuple[Tier, ...] = ()

    @property
    def num_devices(self) -> int:
        return self.devices_per_node * self.num_nodes

    def tier_for_group(self, group_devices: int) -> Tier:
        """Innermost tier whose span holds a group of ``group_devices`` contiguous devices."""
        for tier in self.tiers:
            if group_devices <= tier.span_devices:
                return tier
        raise ValueError(
            f"cluster {self.name}: a group of {group_devices} devices exceeds its "
            f"{self.num_devices} devices"
        )
