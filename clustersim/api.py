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
    """Load and fully check a deployment, plan or training-job file (the kind is detected from
    its data, ``workloads.config_file.detect_kind``; no distinctive key means a deployment) with
    the loaders ``simulate`` and ``plan`` use; returns the frozen Deployment, PlanConfig or TrainingJob."""
    from workloads.config_file import load_config_file

    doc = load_config_file(path)
    if doc.kind == "plan":
        from planner.schema import load_plan

        return load_plan(doc, overrides)
    if doc.kind == "training":
        from clustersim.run import resolve_profile, simulate_training_checked
        from workloads.training import load_training_job

        job = load_training_job(doc, overrides)
        prof = resolve_profile(job.profile, job.cluster, doc.filename)
        simulate_training_checked(doc, job, prof)  # memory needs the pipeline's peak
        return job
    from workloads.deployment import load_deployment

    return load_deployment(doc, overrides)


def config_report(config: Any) -> dict:
    """The report of a validated config, with its ``kind`` first: a deployment's per-pool
    accounting (``deployment_report``), a plan's budget and search space, a training job's layout."""
    from workloads.deployment import Deployment
    from workloads.training import TrainingJob

    if isinstance(config, Deployment):
        return {"kind": "deployment", **deployment_report(config)}
    if isinstance(config, TrainingJob):
        return {"kind": "training", **training_report(config)}
    return {"kind": "plan", **plan_report(config)}


def training_report(job: Any) -> dict:
    """A validated training job's layout (devices, degrees, micro-batches, tokens per step) and
    its memory per device (the simulator's pipeline peak, as ``simulate`` reports it)."""
    from clustersim.run import resolve_profile
    from hardware.catalog import get_cluster
    from simulator.training import simulate_training

    p = job.parallelism
    cluster = get_cluster(job.cluster)
    memory = simulate_training(job, profile=resolve_profile(job.profile, job.cluster), check_memory=False).memory
    worst = memory.loc[memory["total_gb"].idxmax()]
    return {
        "name": f"{job.model} on {cluster.name}", "model": job.model, "cluster": cluster.name,
        "devices": p.devices, "cluster_devices": cluster.num_devices,
        "layout": f"dp{p.dp} x pp{p.pp} ({p.pp_schedule}) x tp{p.tp} x sp{p.sp} ({p.sp_kind}) x cp{p.cp}, "
                  f"ep{p.ep}, zero{p.zero_stage}",
        "pipeline_stages": p.pipeline_stages, "micro_batches_per_step": job.micro_batches,
        "micro_batch_size": job.micro_batch_size, "global_batch": job.global_batch, "seq_len": job.seq_len,
        "tokens_per_step": job.tokens_per_step, "precision": job.precision, "recompute": job.recompute,
        "memory_peak_gb": float(worst["total_gb"]), "memory_peak_device": int(worst["device"]),
        "memory_usable_gb": float(worst["limit_gb"]),
        "memory_peak_parts_gb": {k.removesuffix("_gb"): float(worst[k]) for k in
                                 ("params_gb", "grads_gb", "optimizer_gb", "activations_gb", "reserved_gb")},
    }


def plan_report(plan: Any) -> dict:
    """A validated plan's hardware budget, workload, SLOs and size of the search space."""
    from planner.space import context_from_plan, count_layouts
    from workloads.models import get_model

    ctx = context_from_plan(plan)
    cluster = ctx.cluster.resolve()
    wl = plan.workload
    return {
        "name": plan.name, "model": plan.model, "cluster": cluster.name, "device": cluster.device.name,
        "budget_devices": ctx.budget_devices, "weight_dtype": plan.weight_dtype,
        "arrival": f"{wl.arrival.kind}" + (f" {wl.arrival.rate_per_s:g} req/s" if wl.arrival.kind != "trace" else ""),
        "prompt_tokens_mean": ctx.prompt_tokens, "output_tokens_mean": ctx.output_tokens,
        "slo": f"TTFT <= {plan.slo.ttft_ms:g} ms, TPOT <= {plan.slo.tpot_ms:g} ms at p{plan.slo.percentile:g}",
        "modes": ", ".join(plan.search.modes), "candidate_layouts": count_layouts(ctx, plan.search, get_model(plan.model)),
        "verify_top": plan.verify.top, "objective": plan.objective,
    }


def deployment_report(deployment: Any) -> dict:
    """Per-pool accounting of a validated deployment (devices, memory per device, KV capacity)."""
    from workloads.deployment_rules import deployment_report as report

    return report(deployment)


def calibrate(out: str | Path, suite: str = "all", quick: bool = False, max_seconds: float = 0.0,
              device: str = "cuda", quiet: bool = False, check: bool = False, progress: str = "auto") -> int:
    """Run the calibration microbenchmarks into the profile directory ``out``; returns the exit
    status of ``calibration.run.main`` (0 ok, 1 a suite failed, 2 a usage error: unknown suite,
    no CUDA, no torch; each reported as one line on stderr). Needs torch (the calibrate extra).
    ``check``: then measure the self-check steps into ``out/check`` (see :func:`calibrate_check`).
    ``progress``: auto (bars when stderr is a terminal), always or never (``clustersim.progress``)."""
    from calibration import run

    args = ["--out", str(out), "--suite", suite, "--device", device]
    if quick:
        args.append("--quick")
    if max_seconds:
        args += ["--max-seconds", str(max_seconds)]
    if quiet:
        args.append("--quiet")
    if check:
        args.append("--check")
    args += ["--progress", progress]
    return run.main(args)


def calibrate_check(profile_dir: str | Path) -> tuple[Any, dict]:
    """Predicted vs measured for the steps ``calibrate(check=True)`` measured, with the profile
    just written: (DataFrame of family, case, point, measured_s, predicted_s, error; summary)."""
    from clustersim.validation import predict_check

    return predict_check(profile_dir)


def simulate(config: Any, overrides: Iterable[str] = (), trace: bool = False, profile: Any = None) -> Any:
    """Simulate a deployment or training job (a path, or an already-loaded config object).

    Returns the simulator's result (serving: ``SimResult`` with DataFrames and a summary;
    training: ``TrainingResult``). ``profile`` (a name, a directory, "none" or a profile object)
    replaces the config's ``profile:`` field; by default the field decides (``calibration.resolve``).
    """
    from clustersim.run import resolve_profile, simulate_file

    if isinstance(config, (str, Path)):
        return simulate_file(config, overrides, trace=trace, profile=profile)[2]  # (kind, config, result, profile)
    prof = resolve_profile(config.profile if profile is None else profile, config.cluster)
    if hasattr(config, "parallelism") and hasattr(config, "global_batch"):
        from simulator.training import simulate_training

        return simulate_training(config, profile=prof, trace=trace)
    from simulator import simulate as run

    return run(config, profile=prof, trace=trace)


def plan(config: Any, overrides: Iterable[str] = (), ray_address: str | None = None) -> Any:
    """Run the planner on a PLAN.yaml path or a loaded ``planner.PlanConfig``; returns PlanResult."""
    if isinstance(config, (str, Path)):
        from clustersim.run import plan_file

        return plan_file(config, overrides, ray_address=ray_address, progress=False)
    import planner
    from planner.executors import default_executor

    with default_executor(ray_address=ray_address, progress=False) as executor:
        return planner.plan(config, executor=executor)
