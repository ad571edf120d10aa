"""The job runners behind ``clustersim.api`` (internal: call them through ``api.run_job``).

Each runner loads its config once with ``load`` (the one place that tells a serving
deployment, a training job and a plan apart: from a file's data, ``workloads.config_file``,
or from a loaded config's type), resolves the profile once (``resolve_profile``, over
``calibration.resolve``), calls the layer that answers and returns data. Nothing here
writes a file (``clustersim.outputs`` does) or prints.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterable

from clustersim.outputs import finite

#: config kinds (``workloads.config_file.KINDS``) -> their loader (module, function)
_LOADERS = {"deployment": ("workloads.deployment", "load_deployment"),
            "training": ("workloads.training", "load_training_job"),
            "plan": ("planner.schema", "load_plan")}
#: runner -> (the config kinds it runs, the kind a file of another kind is loaded as: its loader
#: then says what the file is instead)
RUNS: dict[str, tuple[tuple[str, ...], str]] = {
    "simulate": (("deployment", "training"), "deployment"),
    "plan": (("training", "plan"), "plan"),
    "whatif": (("plan",), "plan"),
    "validate": (("deployment", "training", "plan"), "deployment"),
}


@dataclass(frozen=True)
class Loaded:
    """A validated config, its kind (deployment, training, plan) and the parsed file it came
    from (None for a config object passed in loaded)."""

    kind: str
    config: Any
    doc: Any = None

    @property
    def workload(self) -> str:
        """``serving`` or ``training`` (how results and ``summary.json`` name a run)."""
        return "training" if self.kind == "training" else "serving"

    @property
    def where(self) -> Any:
        """The file the config came from, for messages and relative paths (or None)."""
        return self.doc.filename if self.doc is not None else None


def load_config(path: str | Path) -> Any:
    """Read and parse a config file once (``workloads.config_file``): its data, locations and kind
    (``deployment``, ``plan``, ``training`` or None). ``load`` takes it instead of a path."""
    from workloads.config_file import load_config_file

    return load_config_file(path)


def config_kind(config: Any) -> str | None:
    """``deployment``, ``training`` or ``plan``: a loaded config's by its type, a parsed file's
    from its data (``workloads.config_file.detect_kind``); None when nothing tells."""
    from workloads.config_file import ConfigFile

    if isinstance(config, ConfigFile):
        return config.kind
    from planner.schema import PlanConfig
    from workloads.deployment import Deployment
    from workloads.training import TrainingJob

    kinds = {Deployment: "deployment", TrainingJob: "training", PlanConfig: "plan"}
    return next((k for cls, k in kinds.items() if isinstance(config, cls)), None)


def load(config: Any, overrides: Iterable[str] = (), accept: Iterable[str] = ("deployment", "training", "plan"),
         default: str = "deployment", profile: Any = None) -> Loaded:
    """``config`` (a path, a ``load_config`` result or a loaded config) validated with its kind's
    loader and ``--set`` overrides. A file whose kind is not in ``accept`` (or that has none) is
    loaded as ``default``, whose loader then says in one located line what the file is.
    ``profile`` (a name or directory, as ``--profile``) replaces the config's ``profile:`` field
    (a profile object is the runner's: ``profile_for``)."""
    from importlib import import_module

    from workloads.config_file import ConfigFile, open_config

    overrides = list(overrides)
    if not isinstance(config, (str, Path, ConfigFile)):
        kind = config_kind(config)
        if kind not in accept:
            raise ValueError(f"{type(config).__name__}: not a config this job runs (valid: a path, or a loaded "
                             f"{' or '.join(accept)})")
        if overrides:
            raise ValueError("--set overrides apply to a config file, not to a loaded config (use model_copy)")
        for item in profile_override(profile):
            config = config.model_copy(update={"profile": item.removeprefix("profile=")})
        return Loaded(kind, config)
    doc = open_config(config)
    kind = doc.kind if doc.kind in accept else default
    module, name = _LOADERS[kind]
    return Loaded(kind, getattr(import_module(module), name)(doc, overrides + profile_override(profile)), doc)


def resolve_profile(spec: Any, cluster_name: str, config_path: str | Path | None = None) -> Any:
    """The profile a config or command names (``calibration.resolve``: the one resolver), for the
    device of ``cluster_name``; a relative directory is looked up beside ``config_path`` first.
    An unknown name or directory is a LookupError whose message names the file and field."""
    from calibration.resolve import resolve_profile as resolve
    from hardware.catalog import get_cluster

    config_path = getattr(config_path, "filename", config_path)  # a loaded ConfigFile names its file
    base = Path(config_path).parent if config_path is not None else None
    try:
        return resolve(spec, get_cluster(cluster_name).device.name, base_dir=base)
    except LookupError as exc:
        where = f"{config_path}: profile: " if config_path is not None else ""
        raise LookupError(f"{where}{exc.args[0] if exc.args else exc}") from None


def profile_override(value: Any) -> list[str]:
    """``--profile NAME|DIR`` as a ``--set profile=...`` override (a directory made absolute, so it
    means the same wherever the config file lives); nothing for None or a profile object."""
    if value is None or not isinstance(value, (str, Path)):
        return []
    p = Path(value).expanduser()
    return [f"profile={p.resolve() if p.is_dir() else value}"]


def profile_for(loaded: Loaded, profile: Any = None) -> Any:
    """The profile a run uses: ``profile`` when it is a profile object, else the config's field
    (which a ``profile`` name or directory has replaced, ``load``) resolved for its cluster."""
    if profile is not None and not isinstance(profile, (str, Path)):
        return profile
    return resolve_profile(loaded.config.profile, loaded.config.cluster, loaded.where)


def simulate(config: Any, overrides: Iterable[str] = (), trace: bool = False, profile: Any = None,
             progress: Any = None, report: bool = False) -> tuple[Loaded, Any, Any]:
    """Load and run a deployment or training job: (loaded config, result, profile used).

    ``profile``: a name or directory that overrides the config's ``profile:`` field (as
    ``--profile``), or a profile object used as is. ``report``: the result will be drawn as a
    report page (a training report draws the pipeline, so its timeline is recorded).
    ``progress``: a ``simulator.progress.ProgressFn`` (``clustersim.progress`` makes one)."""
    loaded = load(config, overrides, *RUNS["simulate"], profile=profile)
    prof = profile_for(loaded, profile)
    if loaded.kind == "training":
        return loaded, simulate_training_checked(loaded, prof, trace=trace or report, progress=progress), prof
    from simulator import simulate as run

    return loaded, run(loaded.config, profile=prof, trace=trace, progress=progress), prof


def simulate_training_checked(loaded: Loaded, profile: Any, trace: bool = False, progress: Any = None) -> Any:
    """``simulate_training`` with the memory check, a layout that does not fit reported as one
    located line (``file:line:col: training.parallelism: out of memory on ...``); ``validate``
    makes the same check, so it refuses every job ``simulate`` cannot run."""
    from simulator.training import OutOfMemory, simulate_training
    from workloads.yamlloc import ConfigError, dotted, locate

    try:
        return simulate_training(loaded.config, profile=profile, trace=trace, progress=progress)
    except OutOfMemory as exc:
        doc = loaded.doc
        if doc is None:  # a loaded job: no file to point at
            raise
        path = (("training",) if isinstance(doc.data, dict) and "training" in doc.data else ()) + ("parallelism",)
        where = locate(doc.locs, path)
        head = f"{doc.filename}:{where[0]}:{where[1]}" if where else doc.filename
        raise ConfigError(f"{head}: {dotted(path)}: {exc} (valid: a layout that fits; "
                          f"`clustersim plan {doc.filename}` searches them)") from None


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("clustersim", "simpy", "numpy", "pandas", "pydantic", "scipy"):
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def run_summary(kind: str, config: Any, result: Any, profile: Any) -> dict:
    """summary.json content: results plus the resolved config, its hash, seed, versions and the
    profile used (``calibration.resolve.profile_info``: name, path, GPU, date, transfer, fallback)."""
    from calibration.resolve import profile_info
    from hardware.catalog import get_cluster

    resolved = config.model_dump(mode="json")
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()
    summary = finite(result.summary if kind == "serving" else result.summary())
    return {"kind": kind, "summary": summary, "config": resolved, "config_sha256": digest,
            "seed": resolved.get("seed"), "profile": profile_info(profile, get_cluster(config.cluster).device.name),
            "versions": versions()}


def plan(config: Any, overrides: Iterable[str] = (), ray_address: str | None = None, workers: int | None = None,
         max_layouts: int = 400, profile: str | Path | None = None, progress: Any = None) -> tuple[Loaded, Any]:
    """Load a PLAN.yaml and run the planner (local pool, or Ray with an address), or, given a
    training job, search its training layouts (``plan_training``): (loaded config, result).
    ``profile``: a name or directory overriding the file's ``profile:`` (``--profile``)."""
    loaded = load(config, overrides, *RUNS["plan"], profile)
    if loaded.kind == "training":
        return loaded, plan_training(loaded, max_layouts=max_layouts, progress=progress, workers=workers)
    import planner
    from planner.executors import default_executor

    with default_executor(ray_address=ray_address, workers=workers, progress=progress) as executor:
        return loaded, planner.plan(loaded.config, executor=executor, progress=progress)


def plan_training(loaded: Loaded, max_layouts: int = 400, progress: Any = None, workers: int | None = None) -> Any:
    """Search training layouts for a training job: it fixes model, cluster, devices (its
    parallelism's product), sequence length, global batch, precision and memory limit;
    TP/PP/EP/schedule vary. Returns a DataFrame ranked by tokens/day (feasible first). The
    layouts are simulated on a local process pool (``workers``, default one per CPU)."""
    from calibration.resolve import profile_info, profile_line
    from hardware.catalog import get_cluster
    from planner.executors import default_executor
    from planner.training_search import training_search

    job = loaded.config
    devices = job.parallelism.devices
    prof = resolve_profile(job.profile, job.cluster, loaded.where)
    with default_executor(workers=workers, progress=progress) as executor:
        table = training_search(job.model, job.cluster, devices, job.seq_len, job.global_batch,
                                job.memory_limit_gb, precision=job.precision, comm_sms=job.comm_sms,
                                max_layouts=max_layouts, profile=prof, progress=progress, executor=executor)
    info = profile_info(prof, get_cluster(job.cluster).device.name)
    table.attrs.update(profile=info, profile_line=profile_line(info))
    return table


def plan_profile_line(cfg: Any) -> str:
    """One line naming the profile a loaded PLAN.yaml's runs use for its hardware (what-if output)."""
    from calibration.resolve import profile_info, profile_line
    from calibration.resolve import resolve_profile as resolve
    from planner.space import resolve_hardware

    device = resolve_hardware(cfg)[0].resolve().device.name
    return profile_line(profile_info(resolve(cfg.profile, device), device))


def whatif(config: Any, overrides: Iterable[str] = (), mode: str = "compare", parameter: str | None = None,
           values: Iterable[str] | None = None, hardware: Iterable[str] = (), profile: str | Path | None = None,
           progress: Any = None) -> tuple[Loaded, Any]:
    """Capacity planning (fewest devices for the load), a one-parameter sweep (``parameter``
    over ``values``) or a hardware comparison (``hardware``; empty: ``planner.whatif``'s
    default list) on a PLAN.yaml: (loaded plan, DataFrame with the profile line in its attrs)."""
    from planner import whatif as w

    loaded = load(config, overrides, *RUNS["whatif"], profile)
    cfg = loaded.config
    if mode == "capacity":
        df = w.capacity(cfg, progress=progress)
    elif mode == "sweep":
        if not values:
            raise ValueError("--sweep needs --values a,b,c")
        df = w.sweep(cfg, parameter, list(values), progress=progress)
    elif mode == "compare":
        df = w.compare_hardware(cfg, list(hardware) or list(w.DEFAULT_HARDWARE), progress=progress)
    else:
        raise ValueError(f"what-if mode {mode!r} (valid: capacity, sweep, compare)")
    df.attrs.setdefault("profile", plan_profile_line(cfg).removeprefix("profile: "))
    return loaded, df


def validate(config: Any, overrides: Iterable[str] = ()) -> tuple[Loaded, Any]:
    """Load and fully check a deployment, plan or training job with the loaders ``simulate`` and
    ``plan`` use: (loaded config, the training result whose memory check passed, or None)."""
    loaded = load(config, overrides, *RUNS["validate"])
    if loaded.kind != "training":
        return loaded, None
    job = loaded.config
    prof = resolve_profile(job.profile, job.cluster, loaded.where)
    return loaded, simulate_training_checked(loaded, prof)  # memory needs the pipeline's peak
