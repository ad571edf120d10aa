"""The hardware catalog's YAML: its schema (pydantic, ``extra="forbid"``), its validation and its
conversion to SI, into the frozen types of ``hardware.types``.

``parse_devices``, ``parse_prices`` and ``parse_clusters`` parse YAML text given a file name and
raise ``ValueError("<file>: <dotted.field>: <problem>")`` on bad data; ``parse_catalog`` parses
the three packaged files. ``hardware.catalog`` serves the parsed catalog (from its snapshot,
``hardware.catalog_snapshot``, while that matches these files) and re-exports the parsers.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Annotated, Any, Callable, Literal, Mapping, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hardware import topology as topo
from hardware.types import Cluster, DeviceSpec, Tier, Topology
from hardware.yaml_io import safe_load

__all__ = ["CATALOG_FILES", "parse_catalog", "parse_clusters", "parse_devices", "parse_prices", "per_die"]

_DEVICES_FILE = "devices.yaml"
_PRICES_FILE = "prices.yaml"
_CLUSTERS_FILE = "clusters.yaml"
#: the packaged catalog files (``hardware/data``), in load order
CATALOG_FILES = (_DEVICES_FILE, _PRICES_FILE, _CLUSTERS_FILE)

# Source strings start with a ref key of the file, or with one of these words.
_SOURCE_KEYWORDS = ("assumed", "derived")


# ---------------------------------------------------------------------------------------------
# Unit conversion: YAML key -> (SI field, factor). Applied once, at load.
# ---------------------------------------------------------------------------------------------

_TERA = 1e12
_GIGA = 1e9
_FLOPS_KEYS = {  # YAML key -> dtype name in DeviceSpec.peak_flops_per_s
    "bf16_tflops": "bf16",
    "fp16_tflops": "fp16",
    "fp8_tflops": "fp8",
    "int8_tops": "int8",
    "fp32_tflops": "fp32",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PosInt = Annotated[int, Field(ge=1)]


class _RawDevice(_Strict):
    vendor: str
    aliases: list[str] = []
    dies: PosInt = 1
    bf16_tflops: PosFloat
    fp16_tflops: PosFloat | None = None
    fp8_tflops: PosFloat | None = None
    int8_tops: PosFloat | None = None
    fp32_tflops: PosFloat | None = None
    hbm_gb: PosFloat
    hbm_tb_per_s: PosFloat
    compute_units: PosInt
    compute_unit_kind: str = ""
    comm_compute_units: NonNegFloat | None = None
    l2_mib: NonNegFloat | None = None
    scale_up_gb_per_s_unidir: PosFloat | None = None
    scale_up_gb_per_s_bidir: PosFloat | None = None
    scale_out_gbit_per_s_unidir: NonNegFloat
    price_usd: NonNegFloat = 0.0
    notes: str = ""
    sources: dict[str, str]


class _RawDie(_Strict):
    derive_per_die_from: str
    aliases: list[str] = []
    notes: str = ""


class _DevicesFile(_Strict):
    refs: dict[str, str] = {}
    devices: dict[str, dict[str, Any]]


class _RawPrices(_Strict):
    switch_radix: PosInt
    switch_usd: NonNegFloat
    switch_link_usd: NonNegFloat
    endpoint_usd: NonNegFloat = 0.0
    sources: dict[str, str]


class _PricesFile(_Strict):
    refs: dict[str, str] = {}
    network_prices: dict[str, _RawPrices]


class _RawTier(_Strict):
    name: str
    technology: str
    span_devices: PosInt | Literal["all"]
    bandwidth_gb_per_s_unidir: PosFloat | None = None
    bandwidth_gbit_per_s_unidir: PosFloat | None = None
    latency_us: NonNegFloat
    efficiency: Annotated[float, Field(gt=0, le=1)] = 1.0
    planes: PosInt = 1
    oversubscription: Annotated[float, Field(ge=1, allow_inf_nan=False)] = 1.0
    switch_reduction_efficiency: Annotated[float, Field(ge=0, le=1)] = 0.0
    sources: dict[str, str]


class _TopoBase(_Strict):
    prices: str = "none"
    sources: dict[str, str] = {}


class _FatTree2(_TopoBase):
    kind: Literal["fat_tree2"]
    switch_radix: PosInt


class _FatTree3(_TopoBase):
    kind: Literal["fat_tree3"]
    switch_radix: PosInt


class _MultiPlane(_TopoBase):
    kind: Literal["multi_plane_fat_tree2"]
    switch_radix: PosInt
    planes: PosInt


class _MultiRail(_TopoBase):
    kind: Literal["multi_rail_fat_tree2"]
    switch_radix: PosInt
    rails: PosInt


class _NVSwitch(_TopoBase):
    kind: Literal["nvswitch_domain"]
    switches: PosInt
    links_per_endpoint: PosInt


class _UnifiedBus(_TopoBase):
    kind: Literal["unified_bus"]
    l1_switches_per_node: PosInt
    l2_subplanes: PosInt
    l2_switches_per_subplane: PosInt
    links_per_device: PosInt


_TopoSpec = Annotated[
    Union[_FatTree2, _FatTree3, _MultiPlane, _MultiRail, _NVSwitch, _UnifiedBus],
    Field(discriminator="kind"),
]


class _RawCluster(_Strict):
    description: str = ""
    aliases: list[str] = []
    device: str
    devices_per_node: PosInt
    num_nodes: PosInt
    tiers: Annotated[list[_RawTier], Field(min_length=1)]
    side_tiers: list[_RawTier] = []
    topology: _TopoSpec
    sources: dict[str, str]


class _ClustersFile(_Strict):
    refs: dict[str, str] = {}
    templates: Any = None  # YAML anchors only; ignored after parsing
    clusters: dict[str, dict[str, Any]]


# ---------------------------------------------------------------------------------------------
# Validation helpers: every error names the file and the dotted field.
# ---------------------------------------------------------------------------------------------


def _fail(filename: str, path: str, msg: str) -> ValueError:
    return ValueError(f"{filename}: {path}: {msg}")


def _load_yaml(text: str, filename: str) -> Any:
    try:
        return safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{filename}: invalid YAML: {' '.join(str(exc).split())}") from None


def _validate(model: type[BaseModel], obj: Any, filename: str, path: str) -> Any:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        errors = exc.errors()
        err = errors[0]
        loc = ".".join(str(p) for p in err["loc"])
        full = ".".join(p for p in (path, loc) if p) or "<root>"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise _fail(filename, full, f"{err['msg']}{more}") from None


def _check_sources(
    sources: Mapping[str, str],
    required: set[str],
    allowed: set[str],
    refs: Mapping[str, str],
    filename: str,
    path: str,
) -> dict[str, str]:
    """Every required field has a source; no source for an unknown field; sources cite a ref.

    Returns the sources with each ref key expanded to its full citation.
    """
    for key in sorted(required):
        if not str(sources.get(key, "")).strip():
            raise _fail(filename, f"{path}.sources.{key}", "missing source for this number")
    out: dict[str, str] = {}
    for key, text in sources.items():
        if key not in allowed:
            raise _fail(filename, f"{path}.sources.{key}", f"source for an unknown field (fields: {', '.join(sorted(allowed))})")
        head = str(text).replace(";", ":").split(":", 1)[0].split()[0] if str(text).strip() else ""
        if head in _SOURCE_KEYWORDS:
            out[key] = str(text)
        elif head in refs:
            out[key] = f"{text} [{refs[head]}]"
        else:
            raise _fail(
                filename,
                f"{path}.sources.{key}",
                f"source must start with a ref ({', '.join(sorted(refs))}) or one of {', '.join(_SOURCE_KEYWORDS)}; got {text!r}",
            )
    return out


def _check_name(filename: str, path: str, name: str) -> str:
    if name != name.strip().lower() or not name:
        raise _fail(filename, path, f"names must be lower-case without surrounding spaces, got {name!r}")
    return name


def _numeric_fields_set(model: BaseModel, exclude: set[str]) -> set[str]:
    out = set()
    for key in model.model_fields_set:
        value = getattr(model, key)
        if key in exclude or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out.add(key)
    return out


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------


def _device_from_raw(name: str, raw: _RawDevice, refs: Mapping[str, str], filename: str) -> DeviceSpec:
    path = f"devices.{name}"
    if (raw.scale_up_gb_per_s_unidir is None) == (raw.scale_up_gb_per_s_bidir is None):
        raise _fail(filename, f"{path}.scale_up_gb_per_s_unidir", "give exactly one of scale_up_gb_per_s_unidir / scale_up_gb_per_s_bidir")
    allowed = set(_RawDevice.model_fields) - {"sources", "notes", "aliases", "vendor", "compute_unit_kind"}
    required = _numeric_fields_set(raw, exclude={"dies"})
    sources = _check_sources(raw.sources, required, allowed, refs, filename, path)
    peaks = {dtype: getattr(raw, key) * _TERA for key, dtype in _FLOPS_KEYS.items() if getattr(raw, key) is not None}
    if raw.scale_up_gb_per_s_unidir is not None:
        scale_up = raw.scale_up_gb_per_s_unidir * _GIGA
    else:
        scale_up = raw.scale_up_gb_per_s_bidir * _GIGA / 2  # type: ignore[operator]
    if raw.notes:
        sources["notes"] = raw.notes
    return DeviceSpec(
        name=name,
        vendor=raw.vendor,
        peak_flops_per_s=MappingProxyType(peaks),
        hbm_bytes=raw.hbm_gb * _GIGA,
        hbm_bytes_per_s=raw.hbm_tb_per_s * _TERA,
        compute_units=raw.compute_units,
        scale_up_bytes_per_s=scale_up,
        scale_out_bytes_per_s=raw.scale_out_gbit_per_s_unidir * _GIGA / 8,
        dies=raw.dies,
        comm_compute_units=raw.comm_compute_units,
        l2_bytes=(raw.l2_mib or 0.0) * 2**20,
        price_usd=raw.price_usd,
        sources=MappingProxyType(sources),
    )


def per_die(name: str, pkg: DeviceSpec, notes: str) -> DeviceSpec:
    d = pkg.dies
    sources = {k: f"derived: {pkg.name} / {d} dies; package: {v}" for k, v in pkg.sources.items() if k != "notes"}
    if notes:
        sources["notes"] = notes
    return DeviceSpec(
        name=name,
        vendor=pkg.vendor,
        peak_flops_per_s=MappingProxyType({k: v / d for k, v in pkg.peak_flops_per_s.items()}),
        hbm_bytes=pkg.hbm_bytes / d,
        hbm_bytes_per_s=pkg.hbm_bytes_per_s / d,
        compute_units=pkg.compute_units // d,
        scale_up_bytes_per_s=pkg.scale_up_bytes_per_s / d,
        scale_out_bytes_per_s=pkg.scale_out_bytes_per_s / d,
        dies=1,
        comm_compute_units=None if pkg.comm_compute_units is None else pkg.comm_compute_units / d,
        package=pkg.name,
        l2_bytes=pkg.l2_bytes / d,
        price_usd=pkg.price_usd / d,
        sources=MappingProxyType(sources),
    )


def parse_devices(text: str, filename: str = _DEVICES_FILE) -> tuple[dict[str, DeviceSpec], dict[str, str], dict[str, str]]:
    """Parse devices YAML text into (devices by name, alias -> name, refs)."""
    doc = _validate(_DevicesFile, _load_yaml(text, filename), filename, "")
    refs = dict(doc.refs)
    devices: dict[str, DeviceSpec] = {}
    dies: dict[str, _RawDie] = {}
    aliases: dict[str, str] = {}
    for name, entry in doc.devices.items():
        _check_name(filename, f"devices.{name}", name)
        path = f"devices.{name}"
        if isinstance(entry, dict) and "derive_per_die_from" in entry:
            raw_die = _validate(_RawDie, entry, filename, path)
            dies[name] = raw_die
            names = raw_die.aliases
        else:
            raw = _validate(_RawDevice, entry, filename, path)
            devices[name] = _device_from_raw(name, raw, refs, filename)
            names = raw.aliases
        for i, alias in enumerate(names):
            _check_name(filename, f"{path}.aliases.{i}", alias)
            if alias in aliases or alias in doc.devices:
                raise _fail(filename, f"{path}.aliases.{i}", f"alias '{alias}' is already taken")
            aliases[alias] = name
    for name, raw_die in dies.items():
        pkg = devices.get(raw_die.derive_per_die_from)
        if pkg is None:
            raise _fail(filename, f"devices.{name}.derive_per_die_from", f"unknown package '{raw_die.derive_per_die_from}' (known: {', '.join(sorted(devices))})")
        if pkg.dies < 2:
            raise _fail(filename, f"devices.{name}.derive_per_die_from", f"'{pkg.name}' has a single die")
        devices[name] = per_die(name, pkg, raw_die.notes)
    return devices, aliases, refs


# ---------------------------------------------------------------------------------------------
# Prices
# ---------------------------------------------------------------------------------------------


def parse_prices(text: str, filename: str = _PRICES_FILE, refs: Mapping[str, str] | None = None) -> dict[str, topo.NetworkPrices]:
    """Parse network price YAML text into NetworkPrices by name."""
    doc = _validate(_PricesFile, _load_yaml(text, filename), filename, "")
    all_refs = {**(refs or {}), **doc.refs}
    out = {}
    for name, raw in doc.network_prices.items():
        path = f"network_prices.{name}"
        _check_name(filename, path, name)
        allowed = set(_RawPrices.model_fields) - {"sources"}
        _check_sources(raw.sources, allowed, allowed, all_refs, filename, path)
        out[name] = topo.NetworkPrices(
            name=name,
            switch_usd=raw.switch_usd,
            switch_link_usd=raw.switch_link_usd,
            endpoint_usd=raw.endpoint_usd,
            notes=f"{raw.switch_radix}-port switches; " + raw.sources.get("switch_usd", ""),
        )
    return out


# ---------------------------------------------------------------------------------------------
# Clusters
# ---------------------------------------------------------------------------------------------


def _tier_from_raw(raw: _RawTier, num_devices: int, refs: Mapping[str, str], filename: str, path: str) -> tuple[Tier, dict[str, str]]:
    if (raw.bandwidth_gb_per_s_unidir is None) == (raw.bandwidth_gbit_per_s_unidir is None):
        raise _fail(filename, f"{path}.bandwidth_gb_per_s_unidir", "give exactly one of bandwidth_gb_per_s_unidir / bandwidth_gbit_per_s_unidir")
    allowed = set(_RawTier.model_fields) - {"sources", "name", "technology"}
    required = _numeric_fields_set(raw, exclude=set())
    sources = _check_sources(raw.sources, required, allowed, refs, filename, path)
    span = num_devices if raw.span_devices == "all" else raw.span_devices
    if span > num_devices:
        raise _fail(filename, f"{path}.span_devices", f"{span} exceeds the cluster's {num_devices} devices")
    if raw.bandwidth_gb_per_s_unidir is not None:
        bw = raw.bandwidth_gb_per_s_unidir * _GIGA
    else:
        bw = raw.bandwidth_gbit_per_s_unidir * _GIGA / 8  # type: ignore[operator]
    tier = Tier(
        name=raw.name,
        span_devices=span,
        bandwidth_bytes_per_s=bw,
        latency_s=raw.latency_us * 1e-6,
        efficiency=raw.efficiency,
        planes=raw.planes,
        oversubscription=raw.oversubscription,
        technology=raw.technology,
        switch_reduction_efficiency=raw.switch_reduction_efficiency,
    )
    return tier, sources


def _counts_for(spec: Any, num_devices: int, devices_per_node: int, num_nodes: int) -> topo.TopologyCounts:
    kind = spec.kind
    if kind == "fat_tree2":
        return topo.fat_tree2(spec.switch_radix, num_devices)
    if kind == "fat_tree3":
        return topo.fat_tree3(spec.switch_radix, num_devices)
    if kind == "multi_plane_fat_tree2":
        if num_devices % spec.planes:
            raise ValueError(f"{num_devices} devices do not split evenly over {spec.planes} planes")
        return topo.multi_plane_fat_tree2(spec.switch_radix, spec.planes, num_devices // spec.planes)
    if kind == "multi_rail_fat_tree2":
        return topo.multi_rail_fat_tree2(spec.switch_radix, spec.rails, num_devices)
    if kind == "nvswitch_domain":
        return topo.nvswitch_domain(num_devices, spec.switches, spec.links_per_endpoint)
    if kind == "unified_bus":
        return topo.unified_bus_two_layer(
            num_nodes,
            devices_per_node,
            spec.l1_switches_per_node,
            spec.l2_subplanes,
            spec.l2_switches_per_subplane,
            spec.links_per_device,
        )
    raise AssertionError(kind)  # the discriminated union admits no other kind


def parse_clusters(
    text: str,
    devices: Mapping[str, DeviceSpec],
    prices: Mapping[str, topo.NetworkPrices],
    filename: str = _CLUSTERS_FILE,
    refs: Mapping[str, str] | None = None,
    device_aliases: Mapping[str, str] | None = None,
) -> tuple[dict[str, Cluster], dict[str, str]]:
    """Parse clusters YAML text into (clusters by name, alias -> name)."""
    doc = _validate(_ClustersFile, _load_yaml(text, filename), filename, "")
    all_refs = {**(refs or {}), **doc.refs}
    dev_aliases = dict(device_aliases or {})
    clusters: dict[str, Cluster] = {}
    aliases: dict[str, str] = {}
    device_names = set(devices) | set(dev_aliases)
    for name, entry in doc.clusters.items():
        path = f"clusters.{name}"
        _check_name(filename, path, name)
        if name in device_names:
            raise _fail(filename, path, f"cluster name '{name}' is a device name (one meaning per name)")
        raw = _validate(_RawCluster, entry, filename, path)
        dev_name = dev_aliases.get(raw.device.strip().lower(), raw.device.strip().lower())
        device = devices.get(dev_name)
        if device is None:
            raise _fail(filename, f"{path}.device", f"unknown device '{raw.device}' (known: {', '.join(sorted(devices))})")
        n = raw.devices_per_node * raw.num_nodes
        sources = _check_sources(raw.sources, {"devices_per_node", "num_nodes"}, {"devices_per_node", "num_nodes"}, all_refs, filename, path)
        tiers, side = _cluster_tiers(raw, n, all_refs, filename, path, sources)
        topology = _cluster_topology(raw, n, prices, all_refs, filename, path, sources)
        clusters[name] = Cluster(
            name=name,
            device=device,
            devices_per_node=raw.devices_per_node,
            num_nodes=raw.num_nodes,
            tiers=tuple(tiers),
            topology=topology,
            description=raw.description,
            sources=MappingProxyType(sources),
            side_tiers=tuple(side),
        )
        _add_cluster_aliases(filename, path, name, raw.aliases, aliases, set(doc.clusters), device_names)
    return clusters, aliases


def _cluster_tiers(raw: "_RawCluster", n: int, refs: Mapping[str, str], filename: str, path: str,
                   sources: dict[str, str]) -> tuple[list[Tier], list[Tier]]:
    """A cluster's tiers (spans growing outward, the last spanning all ``n`` devices, names
    unique) and side tiers; their sources are added to ``sources``."""
    tiers: list[Tier] = []
    for i, raw_tier in enumerate(raw.tiers):
        tier, tsrc = _tier_from_raw(raw_tier, n, refs, filename, f"{path}.tiers.{i}")
        if tiers and tier.span_devices <= tiers[-1].span_devices:
            raise _fail(filename, f"{path}.tiers.{i}.span_devices", f"spans must grow outward ({tier.span_devices} after {tiers[-1].span_devices})")
        if any(t.name == tier.name for t in tiers):
            raise _fail(filename, f"{path}.tiers.{i}.name", f"duplicate tier name '{tier.name}'")
        tiers.append(tier)
        sources.update({f"tiers.{tier.name}.{k}": v for k, v in tsrc.items()})
    if tiers[-1].span_devices != n:
        raise _fail(filename, f"{path}.tiers.{len(tiers) - 1}.span_devices", f"the outermost tier must span all {n} devices ('all'), got {tiers[-1].span_devices}")
    side: list[Tier] = []
    for i, raw_tier in enumerate(raw.side_tiers):
        tier, tsrc = _tier_from_raw(raw_tier, n, refs, filename, f"{path}.side_tiers.{i}")
        side.append(tier)
        sources.update({f"side_tiers.{tier.name}.{k}": v for k, v in tsrc.items()})
    return tiers, side


def _cluster_topology(raw: "_RawCluster", n: int, prices: Mapping[str, topo.NetworkPrices], refs: Mapping[str, str],
                      filename: str, path: str, sources: dict[str, str]) -> Topology:
    """A cluster's topology: switch, link and endpoint counts for ``n`` devices, and its cost
    from the named price set; the topology's sources are added to ``sources``."""
    spec = raw.topology
    tpath = f"{path}.topology"
    topo_fields = set(type(spec).model_fields) - {"kind", "prices", "sources"}
    tsrc = _check_sources(spec.sources, topo_fields, topo_fields, refs, filename, tpath)
    sources.update({f"topology.{k}": v for k, v in tsrc.items()})
    try:
        counts = _counts_for(spec, n, raw.devices_per_node, raw.num_nodes)
    except ValueError as exc:
        raise _fail(filename, tpath, str(exc)) from None
    if counts.endpoints < n:
        raise _fail(filename, tpath, f"provides {counts.endpoints} endpoints for {n} devices")
    if spec.prices == "none":
        cost = 0.0
        cost_note = "cost not modelled (no sourced component prices for this fabric)"
    else:
        price = prices.get(spec.prices)
        if price is None:
            raise _fail(filename, f"{tpath}.prices", f"unknown price set '{spec.prices}' (known: none, {', '.join(sorted(prices))})")
        cost = topo.network_cost_usd(counts, price)
        cost_note = f"cost from price set '{price.name}' ({price.notes})"
    params = ", ".join(f"{k}={v}" for k, v in counts.params.items())
    return Topology(
        kind=counts.kind,
        endpoints=counts.endpoints,
        switches=counts.switches,
        links=counts.links,
        cost_usd=cost,
        notes=f"{counts.kind}({params}); {cost_note}",
        endpoint_links=counts.endpoint_links,
        levels=counts.levels,
    )


def _add_cluster_aliases(filename: str, path: str, name: str, new: list[str], aliases: dict[str, str],
                         cluster_names: set[str], device_names: set[str]) -> None:
    """Register a cluster's aliases into ``aliases``; one meaning per name: an alias may be
    neither a cluster name, another alias, nor a device name or alias."""
    for i, alias in enumerate(new):
        _check_name(filename, f"{path}.aliases.{i}", alias)
        if alias in aliases or alias in cluster_names:
            raise _fail(filename, f"{path}.aliases.{i}", f"alias '{alias}' is already taken")
        if alias in device_names:
            raise _fail(filename, f"{path}.aliases.{i}",
                        f"alias '{alias}' is a device name (one meaning per name: it names the device)")
        aliases[alias] = name


def parse_catalog(read: Callable[[str], str]) -> tuple[dict, dict, dict, dict, dict]:
    """The packaged catalog from ``read(file name)`` (each of ``CATALOG_FILES``): devices, device
    aliases, network prices, clusters, cluster aliases (all validated; errors name
    ``hardware/data/<file>``)."""
    devices, dev_aliases, refs = parse_devices(read(_DEVICES_FILE), f"hardware/data/{_DEVICES_FILE}")
    prices = parse_prices(read(_PRICES_FILE), f"hardware/data/{_PRICES_FILE}", refs)
    clusters, cl_aliases = parse_clusters(
        read(_CLUSTERS_FILE), devices, prices, f"hardware/data/{_CLUSTERS_FILE}", refs, dev_aliases
    )
    return devices, dev_aliases, prices, clusters, cl_aliases
