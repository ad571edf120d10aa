"""Facade for the main jobs: simulate a deployment or training job, plan, what-if.

These functions return data (results, dicts, DataFrames); ``write_simulation`` and
``write_plan`` are the only places that write files, and only the CLI calls them.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterable

import yaml


def _is_training(path: str | Path) -> bool:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # the real loader reports the located error
    return isinstance(data, dict) and "training" in data


def _profile_for(cluster_name: str) -> Any:
    from clustersim.estimate import default_profile
    from hardware.catalog import get_cluster

    return default_profile(get_cluster(cluster_name))


def simulate_file(path: str | Path, overrides: Iterable[str] = (), trace: bool = False,
                  profile: Any = "default") -> tuple[str, Any, Any, Any]:
    """Load and run a deployment or training YAML: returns (kind, config, result, profile used)."""
    overrides = list(overrides)
    if _is_training(path):
        from simulator.training import simulate_training
        from workloads.training import load_training_job

        job = load_training_job(path, overrides)
        prof = _profile_for(job.cluster) if profile == "default" else profile
        return "training", job, simulate_training(job, profile=prof, trace=trace), prof
    from simulator import simulate
    from workloads.deployment import load_deployment

    dep = load_deployment(path, overrides)
    prof = _profile_for(dep.cluster) if profile == "default" else profile
    return "serving", dep, simulate(dep, profile=prof, trace=trace), prof


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("clustersim", "simpy", "numpy", "pandas", "pydantic", "scipy"):
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def run_summary(kind: str, config: Any, result: Any, profile_name: str | None) -> dict:
    """summary.json content: results plus the resolved config, its hash, seed and versions."""
    resolved = config.model_dump(mode="json")
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()
    summary = result.summary if kind == "serving" else result.summary()
    return {"kind": kind, "summary": summary, "config": resolved, "config_sha256": digest,
            "seed": resolved.get("seed"), "profile": profile_name, "versions": versions()}


def write_simulation(out_dir: str | Path, kind: str, config: Any, result: Any, summary: dict,
                     trace: bool = False) -> list[Path]:
    """Write summary.json, per-request CSV, time series CSV and (asked) a Chrome trace."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.json"]
    written[0].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if kind == "serving":
        result.requests.to_csv(out / "requests.csv", index=False)
        result.steps.to_csv(out / "timeseries.csv", index=False)
        written += [out / "requests.csv", out / "timeseries.csv"]
        if trace:
            from simulator import to_chrome_trace

            (out / "trace.json").write_text(json.dumps(to_chrome_trace(result)))
            written.append(out / "trace.json")
    else:
        for name in ("per_device", "stages", "memory"):
            df = getattr(result, name, None)
            if df is not None and hasattr(df, "to_csv"):
                df.to_csv(out / f"{name}.csv", index=False)
                written.append(out / f"{name}.csv")
    return written


def plan_training(path: str | Path, overrides: Iterable[str] = (), max_layouts: int = 400) -> Any:
    """Search training layouts for a training-job YAML: the job fixes model, cluster, devices
    (its parallelism's product), sequence length, global batch, precision and memory limit;
    TP/PP/EP/schedule vary. Returns a DataFrame ranked by tokens/day (feasible first)."""
    from simulator.training import training_search
    from workloads.training import load_training_job

    job = load_training_job(path, list(overrides))
    p = job.parallelism
    devices = p.dp * p.tp * p.pp * p.sp * p.cp
    return training_search(job.model, job.cluster, devices, job.seq_len, job.global_batch, job.memory_limit_gb,
                           precision=job.precision, comm_sms=job.comm_sms, max_layouts=max_layouts,
                           profile=_profile_for(job.cluster))


def plan_file(path: str | Path, overrides: Iterable[str] = (), ray_address: str | None = None,
              workers: int | None = None, progress: bool = True) -> Any:
    """Load a PLAN.yaml and run the planner (local pool, or Ray with an address)."""
    import planner
    from planner.executors import default_executor

    cfg = planner.load_plan(path, list(overrides))
    return planner.plan(cfg, executor=default_executor(ray_address=ray_address, workers=workers, progress=progress))


def write_plan(out_dir: str | Path, result: Any, plot: bool = True) -> list[Path]:
    """Ranked table, Pareto front (CSV + PNG when matplotlib is there), best deployment YAML."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "ranked.csv", out / "pareto.csv", out / "plan.json"]
    result.table.to_csv(written[0], index=False)
    result.pareto.to_csv(written[1], index=False)
    written[2].write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    best = result.best_yaml()
    if best:
        (out / "best_deployment.yaml").write_text(best)
        written.append(out / "best_deployment.yaml")
    if plot and len(result.pareto):  # no feasible layout: nothing to plot (the CLI says why)
        try:
            from planner.plot import plot_pareto

            plot_pareto(result, out / "pareto.png")
            written.append(out / "pareto.png")
        except ImportError:
            pass
    return written
