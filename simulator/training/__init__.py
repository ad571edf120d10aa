"""Training-step simulation: pipeline schedules, per-stage costs, memory.

Public API:

* ``simulate_training(job, *, profile=None, steps=1, check_memory=True, trace=False)
  -> TrainingResult``: per-stage micro-batch costs from the cost model (``step``), one run
  of the pipeline schedule with data-parallel gradient sync and optimizer as each device's
  tail (``pipeline``), memory per device (``memory``), and the figures (``result``).
  Raises ``OutOfMemory`` (a ``ValueError``) with the reason when ``check_memory`` and the
  layout does not fit. The pipeline is a longest-path pass over the schedule's DAG; with
  ``trace=True`` the simpy event simulation, which records the timeline (same figures).
* ``simulate_trainings(jobs, *, profile=None)``: the same for many jobs (memory not checked),
  one pipeline pass per (schedule, pp, micro-batches) shape; what the layout search runs.
* ``load_training_job(path, overrides=()) -> TrainingJob`` (re-exported from
  ``workloads.training``).

The layout search over training jobs is the planner's (``planner.training_search``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from simulator.training.memory import OutOfMemory, device_memory
from simulator.training.pipeline import (PipelineRun, StageTimes, closed_form_bubble, evaluate_pipelines,
                                         simulate_pipeline)
from simulator.training.result import BREAKDOWN_PHASES, TrainingResult
from simulator.training.step import SharedCosts, TrainingPlan, dp_tails, held_stages, plan_job
from workloads.accounting import training_flops_per_token
from workloads.training import TrainingJob, load_training_job, parse_training_job

__all__ = ["simulate_training", "simulate_trainings", "load_training_job", "parse_training_job", "TrainingJob",
           "TrainingResult", "OutOfMemory"]


def simulate_training(job: TrainingJob, *, profile=None, steps: int = 1, check_memory: bool = True,
                      trace: bool = False, progress=None) -> TrainingResult:
    """Simulate ``steps`` optimizer steps of ``job`` (see module docstring).

    Steps are separated by the optimizer (global gradient-norm clipping is a barrier), so in
    this deterministic model every step repeats the first; ``steps`` scales nothing but is
    kept in the result for the caller's accounting. ``trace``: run the pipeline through the
    event simulation and keep its timeline (the figures are the same). ``progress``
    (``simulator.progress``): told the pipeline actions simulated.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    prep = _prepare(job, profile)
    p = job.parallelism
    run = simulate_pipeline(p.pp_schedule, p.pp, job.micro_batches, prep.times, trace=trace, tail=prep.tail,
                            progress=progress)
    return _result(prep, run, steps, check_memory)


def simulate_trainings(jobs: Sequence[TrainingJob], *, profile=None) -> list[TrainingResult | ValueError]:
    """``simulate_training(job, profile=profile, check_memory=False)`` of every job, with one
    longest-path pass per (schedule, pp, micro-batches) shape for all the jobs of that shape
    and one cost model and set of layer templates for all the jobs that share them
    (``step.SharedCosts``); figures identical to one job at a time. A job that cannot be
    simulated gives its ``ValueError`` in its place."""
    out: list[TrainingResult | ValueError | None] = [None] * len(jobs)
    groups: dict[tuple, list[tuple[int, _Prepared]]] = {}
    shared = SharedCosts(profile)  # one cost model (and its memo) per cluster and SM reserve, templates per layer shape
    for i, job in enumerate(jobs):
        try:
            prep = _prepare(job, profile, shared)
        except ValueError as exc:
            out[i] = exc
            continue
        p = job.parallelism
        groups.setdefault((p.pp_schedule, p.pp, job.micro_batches), []).append((i, prep))
    for (sched, pp, m), members in groups.items():
        try:
            runs = evaluate_pipelines(sched, pp, m, [x.times for _, x in members], [x.tail for _, x in members])
        except ValueError as exc:
            for i, _ in members:
                out[i] = exc
            continue
        for (i, prep), run in zip(members, runs):
            out[i] = _result(prep, run, 1, check_memory=False)
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class _Prepared:
    """A job's per-stage costs, pipeline durations and per-device tails."""

    job: TrainingJob
    plan: TrainingPlan
    times: StageTimes
    tails: dict
    profiled: bool

    def tail(self, device: int) -> list[tuple[str, float]]:
        return self.tails[device]


def _prepare(job: TrainingJob, profile, shared: SharedCosts | None = None) -> _Prepared:
    plan = plan_job(job, profile=profile, shared=shared)
    tails = dict(enumerate(dp_tails(plan, profile, shared)))
    return _Prepared(job, plan, plan.stage_times(), tails, profile is not None)


def _result(prep: _Prepared, run: PipelineRun, steps: int, check_memory: bool) -> TrainingResult:
    """The figures of a job from its pipeline run (raises ``OutOfMemory`` when asked to check)."""
    job, plan = prep.job, prep.plan
    p = job.parallelism
    m = job.micro_batches
    step = run.makespan_s
    rows = []
    for d in range(p.pp):
        ph = {k: run.phases_s[d].get(k, 0.0) for k in BREAKDOWN_PHASES}
        ph["bubble"] = run.end_s[d] - run.busy_s[d]  # idle inside the device's own pipeline span
        ph["tail_wait"] = step - run.finish_s[d]
        rows.append({"device": d, **ph, "total_s": sum(ph.values())})
    per_device = pd.DataFrame(rows)
    breakdown = {k: float(per_device[k].mean()) for k in BREAKDOWN_PHASES}
    stages_df = pd.DataFrame([{
        "stage": s.stage, "layers": s.layers, "fwd_s": s.fwd, "bwd_input_s": s.bwd_input,
        "bwd_weight_s": s.bwd_weight, "recompute_s": s.recompute, "fwd_comm_s": s.fwd_comm_s,
        "bwd_comm_s": s.bwd_comm_s, "f_s": s.f_s, "b_s": s.bi_s + s.w_s, "w_s": s.w_s,
        "fb_s": sum(plan.fb_phases(s.stage, s.stage).values()), "act_gb": s.act_bytes / 1e9,
        "flops_fwd": s.flops_fwd,
    } for s in plan.stages])
    # memory: peak in-flight activation bytes per device from the pipeline run
    mem = device_memory(job, plan.model, plan.cluster.device.hbm_bytes, held_stages(job),
                        list(run.peak_act_bytes[: p.pp]), plan.split)
    mem_df = pd.DataFrame([x.as_dict() for x in mem])
    worst = max(mem, key=lambda x: x.total_bytes)
    fits = all(x.fits for x in mem)
    reason = "" if fits else worst.reason()
    if check_memory and not fits:
        raise OutOfMemory(reason)
    n = len(plan.stages)
    f = stages_df["f_s"].mean()
    b = stages_df["b_s"].mean()
    w = stages_df["w_s"].mean()
    fb = stages_df["fb_s"].mean()
    cf = closed_form_bubble(p.pp_schedule, n, f, b, w, fb) if n > 1 else 0.0
    dev = plan.cluster.device
    seq = job.seq_len
    return TrainingResult(
        job=job, step_time_s=step, steps=steps, devices=p.devices, tokens_per_step=job.tokens_per_step,
        flops_per_token_causal=training_flops_per_token(plan.model, seq, causal=True),
        flops_per_token_noncausal=training_flops_per_token(plan.model, seq, causal=False),
        peak_flops_per_s=dev.peak_flops(job.precision), peak_bf16_flops_per_s=dev.peak_flops("bf16"),
        breakdown_s=breakdown, per_device=per_device, stages=stages_df, memory=mem_df, fits_memory=fits,
        memory_reason=reason, bubble_closed_form_s=cf, micro_batches=m, timeline=run.timeline,
        sources={"compute": "profile" if prep.profiled else plan.cost_model.roofline.source,
                 "p2p_s": plan.p2p_s, "comm_sm_fraction": plan.sm_fraction},
    )
