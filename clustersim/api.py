"""The public Python API: thin calls into the layers, returning plain data (dicts, frozen objects).

Nothing here prints or writes files (the CLI does); each function names the layer that answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable


def hardware_list() -> dict:
    """Names of catalog devices and a one-line summary of each cluster."""
    from hardware import catalog

    clusters = []
    for name in catalog.list_clusters():
        c = catalog.get_cluster(name)
        clusters.append(
            {"name": c.name, "device": c.device.name, "devices": c.num_devices, "nodes": c.num_nodes,
             "description": c.description}
        )
    return {"devices": catalog.list_devices(), "clusters": clusters}


def hardware_report(name: str) -> dict:
    """A cluster's report (topology counts, cost, tiers, bandwidths) or a device's specification."""
    from hardware import catalog
    from hardware.types import Cluster

    hw = catalog.lookup_hardware(name)
    if isinstance(hw, Cluster):
        return catalog.cluster_report(hw)
    return catalog.device_report(hw)


def model_list() -> list[str]:
    from workloads import models

    return models.list_models()


def model_report(name: str) -> dict:
    """Architecture and exact accounting of a catalog model."""
    from workloads import accounting, models

    return accounting.accounting_table(models.get_model(name))


def validate(path: str | Path, overrides: Iterable[str] = ()) -> Any:
    """Load and fully check a deployment file; returns the frozen Deployment."""
    from workloads.deployment import load_deployment

    return load_deployment(path, overrides)


def deployment_report(deployment: Any) -> dict:
    """Per-pool accounting of a validated deployment (devices, memory per device, KV capacity)."""
    from workloads.deployment_rules import deployment_report as report

    return report(deployment)


def calibrate(out: str | Path, suite: str = "all", quick: bool = False, max_seconds: float = 0.0,
              device: str = "cuda") -> Path:
    """Run the calibration microbenchmarks (needs torch: ``pip install 'clustersim[calibrate]'``)."""
    try:
        from calibration import run
    except ImportError as exc:  # torch missing
        raise ValueError(f"calibrate needs the calibrate extra (torch): {exc}") from None
    args = ["--out", str(out), "--suite", suite, "--device", device]
    if quick:
        args.append("--quick")
    if max_seconds:
        args += ["--max-seconds", str(max_seconds)]
    run.main(args)
    return Path(out)


def simulate(config: Any, overrides: Iterable[str] = (), trace: bool = False) -> Any:
    """Simulate a deployment or training job (a path, or an already-loaded config object).

    Returns the simulator's result (serving: ``SimResult`` with DataFrames and a summary;
    training: ``TrainingResult``). The shipped calibration profile is used when one applies.
    """
    from clustersim.run import _profile_for, simulate_file

    if isinstance(config, (str, Path)):
        return simulate_file(config, overrides, trace=trace)[2]  # (kind, config, result, profile)
    if hasattr(config, "parallelism") and hasattr(config, "global_batch"):
        from simulator.training import simulate_training

        return simulate_training(config, profile=_profile_for(config.cluster), trace=trace)
    from simulator import simulate as run

    return run(config, profile=_profile_for(config.cluster), trace=trace)


def plan(config: Any, overrides: Iterable[str] = (), ray_address: str | None = None) -> Any:
    """Run the planner on a PLAN.yaml path or a loaded ``planner.PlanConfig``; returns PlanResult."""
    if isinstance(config, (str, Path)):
        from clustersim.run import plan_file

        return plan_file(config, overrides, ray_address=ray_address, progress=False)
    import planner
    from planner.executors import default_executor

    with default_executor(ray_address=ray_address, progress=False) as executor:
        return planner.plan(config, executor=executor)
