"""Facade for the main jobs: simulate a deployment or training job, plan, what-if.

These functions return data (results, dicts, DataFrames) and write nothing: the writers in
``clustersim.outputs`` are the only code that writes result files, and only the CLI calls them.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterable

from clustersim.outputs import finite


def load_config(path: str | Path) -> Any:
    """Read and parse a config file once (``workloads.config_file``): its data, locations and kind
    (``deployment``, ``plan``, ``training`` or None). The loaders below take it instead of a path."""
    from workloads.config_file import load_config_file

    return load_config_file(path)


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


def profile_override(value: str | None) -> list[str]:
    """``--profile NAME|DIR`` as a ``--set profile=...`` override (a directory made absolute, so it
    means the same wherever the config file lives)."""
    if value is None:
        return []
    p = Path(value).expanduser()
    return [f"profile={p.resolve() if p.is_dir() else value}"]


def simulate_file(path: Any, overrides: Iterable[str] = (), trace: bool = False,
                  profile: Any = None, progress: Any = None) -> tuple[str, Any, Any, Any]:
    """Load and run a deployment or training YAML (a path or ``load_config``'s result; the file
    is read once and its kind detected from its data): returns (kind, config, result, profile used).

    ``profile``: a profile object or spec that replaces the config's ``profile:`` field (None:
    the field decides; its default is the shipped profile of the cluster's device). ``progress``:
    a ``simulator.progress.ProgressFn`` (``clustersim.progress`` makes one)."""
    overrides = list(overrides)
    from workloads.config_file import open_config

    doc = open_config(path)
    if doc.kind == "training":
        from workloads.training import load_training_job

        job = load_training_job(doc, overrides)
        prof = resolve_profile(job.profile if profile is None else profile, job.cluster, doc.filename)
        return "training", job, simulate_training_checked(doc, job, prof, trace=trace, progress=progress), prof
    from simulator import simulate
    from workloads.deployment import load_deployment

    dep = load_deployment(doc, overrides)
    prof = resolve_profile(dep.profile if profile is None else profile, dep.cluster, doc.filename)
    return "serving", dep, simulate(dep, profile=prof, trace=trace, progress=progress), prof


def simulate_training_checked(doc: Any, job: Any, profile: Any, trace: bool = False, progress: Any = None) -> Any:
    """``simulate_training`` with the memory check, a layout that does not fit reported as one
    located line (``file:line:col: training.parallelism: out of memory on ...``); ``validate``
    makes the same check, so it refuses every job ``simulate`` cannot run."""
    from simulator.training import OutOfMemory, simulate_training
    from workloads.yamlloc import ConfigError, dotted, locate

    try:
        return simulate_training(job, profile=profile, trace=trace, progress=progress)
    except OutOfMemory as exc:
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


def plan_training(path: Any, overrides: Iterable[str] = (), max_layouts: int = 400, progress: Any = None,
                  workers: int | None = None) -> Any:
    """Search training layouts for a training-job YAML: the job fixes model, cluster, devices
    (its parallelism's product), sequence length, global batch, precision and memory limit;
    TP/PP/EP/schedule vary. Returns a DataFrame ranked by tokens/day (feasible first). The
    layouts are simulated on a local process pool (``workers``, default one per CPU)."""
    from planner.executors import default_executor
    from planner.training_search import training_search
    from workloads.training import load_training_job

    from calibration.resolve import profile_info, profile_line
    from hardware.catalog import get_cluster

    job = load_training_job(path, list(overrides))
    devices = job.parallelism.devices
    prof = resolve_profile(job.profile, job.cluster, path)
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


def plan_file(path: Any, overrides: Iterable[str] = (), ray_address: str | None = None,
              workers: int | None = None, progress: Any = None) -> Any:
    """Load a PLAN.yaml and run the planner (local pool, or Ray with an address); ``progress``: a
    ``simulator.progress.ProgressFn`` for every phase (``clustersim.progress`` makes one)."""
    import planner
    from planner.executors import default_executor

    cfg = planner.load_plan(path, list(overrides))
    with default_executor(ray_address=ray_address, workers=workers, progress=progress) as executor:
        return planner.plan(cfg, executor=executor, progress=progress)
