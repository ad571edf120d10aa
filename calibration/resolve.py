"""The one profile resolver: which calibration profile a command uses, and how to say so.

``resolve_profile(spec, device_name, base_dir=None)`` turns what a user wrote (``--profile``,
or ``profile:`` in a deployment, plan or training YAML) into the profile the cost model reads:

* ``"default"`` - the shipped profile measured on the target device, else the reference profile
  (``h200``) that the cost model transfers to the target (calibration/README.md, Transfer);
* ``None`` / ``"none"`` / ``"roofline"`` - no profile: catalog peaks x default efficiencies;
* a directory (absolute, relative to ``base_dir`` - the YAML file's folder - or to the working
  directory), e.g. one written by ``clustersim calibrate --out DIR``;
* a shipped profile's name (``h200``).

A profile that is not the target's default is *layered* over that default
(:class:`LayeredProfile`): a table it lacks (a ``--quick`` or ``--max-seconds`` run, a suite
that was skipped) is read from the shipped profile, table by table; a table it has answers
for its op kind, inside its grid by measurement, outside by its own efficiency fit.
``profile_info(profile, target_device)`` is the record that every summary, estimate and
``summary.json`` carries: name, path, GPU, date, the transfer applied and the tables taken
from the shipped profile.
"""

from __future__ import annotations

import functools
from collections import ChainMap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from calibration.profile import MeasuredProfile, UnknownProfileError, load_profile, shipped_profiles
from calibration.protocol import Profile

#: The shipped profile that other devices' estimates transfer from (calibration/README.md).
REFERENCE_PROFILE = "h200"
NO_PROFILE = ("none", "null", "roofline")


@functools.lru_cache(maxsize=8)
def _shipped(name: str) -> MeasuredProfile:
    return load_profile(name)  # read-only: one object per process


def _directory(path: str) -> MeasuredProfile:
    """A directory's profile, loaded once per content (a rerun of calibrate into it reloads)."""
    files = sorted(Path(path).glob("*.csv")) + [Path(path) / "metadata.json"]
    stamp = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.exists())
    return _load_directory(path, stamp)


@functools.lru_cache(maxsize=16)
def _load_directory(path: str, stamp: tuple) -> MeasuredProfile:
    return load_profile(path)


def default_profile_for(device_name: str) -> MeasuredProfile | None:
    """The shipped profile measured on ``device_name`` (e.g. "h200-sxm", "NVIDIA H200"), if any."""
    norm = device_name.lower().replace("nvidia", "").replace("-", "").replace(" ", "").replace("_", "")
    for name in shipped_profiles():
        if norm == name or norm.startswith(name) and not norm[len(name):].isdigit():
            return _shipped(name)
    return None


def reference_profile_for(device_name: str) -> MeasuredProfile | None:
    """The device's own shipped profile, else the reference profile the cost model transfers."""
    prof = default_profile_for(device_name)
    if prof is not None:
        return prof
    try:
        return _shipped(REFERENCE_PROFILE)
    except (LookupError, ValueError, OSError):
        return None


def _find(spec: str, base_dir: Path | None) -> MeasuredProfile:
    p = Path(spec).expanduser()
    for cand in ([base_dir / p] if base_dir is not None and not p.is_absolute() else []) + [p]:
        if cand.is_dir():
            if not (cand / "metadata.json").is_file() and not any(cand.glob("*.csv")):
                raise UnknownProfileError(f"profile {spec!r}: {cand} holds no metadata.json or CSV tables "
                                          "(write one with clustersim calibrate --out DIR)")
            return _directory(str(cand.resolve()))
    if spec.lower() in shipped_profiles():
        return _shipped(spec.lower())
    where = f" (looked in {base_dir} and the working directory)" if base_dir is not None else ""
    raise UnknownProfileError(f"unknown profile {spec!r}{where}: not a directory and not a shipped profile "
                              f"(valid: default, none, {', '.join(shipped_profiles())}, or a directory written "
                              "by clustersim calibrate --out DIR)")


def resolve_profile(spec: Any = "default", device_name: str = "", base_dir: str | Path | None = None) -> Profile | None:
    """The profile object ``spec`` names for a target device (see the module docstring).

    ``spec`` may also be a profile object already (returned as is). Raises
    ``UnknownProfileError`` (a LookupError) with the valid choices.
    """
    if spec is not None and not isinstance(spec, (str, Path)):
        return spec
    if spec is None or str(spec).strip().lower() in NO_PROFILE:
        return None
    default = reference_profile_for(device_name) if device_name else _shipped(REFERENCE_PROFILE)
    if str(spec).strip().lower() == "default":
        return default
    prof = _find(str(spec).strip(), Path(base_dir) if base_dir is not None else None)
    if default is None or prof is default:
        return prof
    return _layered(prof, default)


@functools.lru_cache(maxsize=16)
def _layered(primary: MeasuredProfile, fallback: MeasuredProfile) -> LayeredProfile:
    return LayeredProfile(primary, fallback)


class LayeredProfile:
    """A profile whose missing tables are read from a fallback (the target's shipped profile).

    It answers the ``calibration.protocol.Profile`` protocol; the cost model asks
    ``for_op(op)`` which layer times a compute op (the layer's own device then decides the
    transfer, its floors and its efficiency fit), and communication lookups try the primary
    layer first.
    """

    def __init__(self, primary: MeasuredProfile, fallback: MeasuredProfile):
        self.primary, self.fallback = primary, fallback
        self.name, self.path, self.metadata = primary.name, primary.path, primary.metadata
        self.shipped = primary.shipped
        self.fallback_tables = tuple(sorted(set(fallback.tables) - set(primary.tables)))

    def __repr__(self) -> str:
        return f"LayeredProfile({self.primary.name!r} over {self.fallback.name!r})"

    @functools.cached_property
    def stated_in_step_gap_s(self) -> float:
        """The primary's in-step gap when it states one (its metadata or its own table), else the
        fallback's, as a missing table is read from the fallback."""
        own = self.primary.own_in_step_gap_s()
        return self.fallback.stated_in_step_gap_s if own is None else own

    @property
    def device(self):
        return self.primary.device

    @property
    def gpu(self) -> str:
        return self.primary.gpu

    @property
    def date_utc(self) -> str:
        return self.primary.date_utc

    @property
    def tables(self) -> Mapping:
        """The primary's tables over the fallback's, each read on first use (``LazyTables``)."""
        return ChainMap(self.primary.tables, self.fallback.tables)

    def for_op(self, op) -> MeasuredProfile:
        """The layer that times compute op ``op``: the primary if it has the op's table, else the
        fallback if that has it; when neither has (e.g. a prefill after cached context without
        ``attn_prefill_ctx_bf16``), the layer whose efficiency fit covers the op's kind, the primary
        first."""
        if self.primary.table_for(op) is not None:
            return self.primary
        if self.fallback.table_for(op) is not None:
            return self.fallback
        if op.kind not in self.primary.fitted_kinds and op.kind in self.fallback.fitted_kinds:
            return self.fallback
        return self.primary

    def table_for(self, op) -> str | None:
        return self.for_op(op).table_for(op)

    def op_seconds(self, op):
        return self.for_op(op).op_seconds(op)

    def floor_seconds(self, op) -> float:
        return self.for_op(op).floor_seconds(op)

    def efficiency_fit(self, *args, **kwargs):
        return self.primary.efficiency_fit(*args, **kwargs)

    def collective_seconds(self, *args, **kwargs):
        return self.primary.collective_seconds(*args, **kwargs) or self.fallback.collective_seconds(*args, **kwargs)

    def dispatch_seconds(self, *args, **kwargs):
        return self.primary.dispatch_seconds(*args, **kwargs) or self.fallback.dispatch_seconds(*args, **kwargs)


def profile_info(profile: Profile | None, target_device: str) -> dict | None:
    """What every summary says about the profile used: name, path, GPU, date, transfer, fallback."""
    if profile is None:
        return {"name": None, "transfer": "no profile: catalog peaks x default efficiencies (roofline)"}
    meta = profile.metadata or {}
    dev = profile.device
    info = {"name": profile.name,
            "path": None if profile.shipped else str(profile.path),
            "gpu": str(meta.get("gpu_name", "unknown")), "date_utc": str(meta.get("date_utc", "unknown")),
            "measured_on": dev.name if dev is not None else None, "target": target_device,
            "transfer": transfer_note(dev, target_device, profile.name)}
    fb = profile.fallback
    if fb is not None and profile.fallback_tables:
        info["fallback"] = {"profile": fb.name, "tables": list(profile.fallback_tables),
                            "transfer": transfer_note(fb.device, target_device, fb.name)}
    return info


def transfer_note(measured_on: Any, target_device: str, name: str) -> str | None:
    """How a profile measured on ``measured_on`` reaches ``target_device`` (None: same device)."""
    if measured_on is not None and measured_on.name == target_device:
        return None
    if measured_on is not None:
        return (f"measured on {measured_on.name}, target {target_device}: point transfer inside the measured "
                "grids (launch floor kept, the rest scaled by the roofline ratio), fitted efficiency x target "
                "peaks outside them; collective tables not used (calibration/README.md, Transfer)")
    return (f"profile {name} was not measured on a catalog GPU: its fitted efficiency curves x {target_device} "
            "peaks for the ops its tables answer; collective tables not used (calibration/README.md, Transfer)")


def profile_line(info: dict | None) -> str:
    """``profile_info`` as one line for text output."""
    if not info or info.get("name") is None:
        return "profile: none (roofline)"
    where = info["path"] or "shipped"
    line = f"profile: {info['name']} ({where}; {info['gpu']}, {info['date_utc']})"
    if info.get("transfer"):
        line += f"; transfer: {info['transfer']}"
    fb = info.get("fallback")
    if fb:
        line += f"; tables from shipped {fb['profile']}: {', '.join(fb['tables'])}"
    return line
