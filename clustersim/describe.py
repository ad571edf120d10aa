"""What a catalog entry or a validated config is, as plain data (internal: ``clustersim.api``
publishes these): ``hardware list/show``, ``model list/show`` and the report ``validate`` prints.
"""

from __future__ import annotations

from typing import Any


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


def config_report(kind: str, config: Any, training: Any = None) -> dict:
    """The report of a validated config of ``kind`` (``clustersim.run.config_kind``), with its
    kind first: a deployment's per-pool accounting, a plan's budget and search space, a training
    job's layout and memory (``training``: its simulation, when one was run already)."""
    if kind == "deployment":
        return {"kind": "deployment", **deployment_report(config)}
    if kind == "training":
        return {"kind": "training", **training_report(config, training)}
    return {"kind": "plan", **plan_report(config)}


def training_report(job: Any, result: Any = None) -> dict:
    """A validated training job's layout (devices, degrees, micro-batches, tokens per step) and
    its memory per device (the simulator's pipeline peak, as ``simulate`` reports it; from
    ``result`` when the job was simulated already, else from a run without the memory check)."""
    from clustersim.run import resolve_profile
    from hardware.catalog import get_cluster
    from simulator.training import simulate_training

    p = job.parallelism
    cluster = get_cluster(job.cluster)
    if result is None:
        result = simulate_training(job, profile=resolve_profile(job.profile, job.cluster), check_memory=False)
    memory = result.memory
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
