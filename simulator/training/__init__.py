"""Training-step simulation: pipeline schedules, per-stage costs, memory.

Public API:

* ``simulate_training(job, *, profile=None, steps=1, check_memory=True, trace=False)
  -> TrainingResult``: per-stage micro-batch costs from the cost model (``step``), one DES run
  of the pipeline schedule with data-parallel gradient sync and optimizer as each device's
  tail (``pipeline``), memory per device (``memory``), and the figures (``result``).
  Raises ``OutOfMemory`` (a ``ValueError``) with the reason when ``check_memory`` and the
  layout does not fit.
* ``load_training_job(path, overrides=()) -> TrainingJob`` (re-exported from
  ``workloads.training``).

The layout search over training jobs is the planner's (``planner.training_search``).
"""

from __future__ import annotations

import pandas as pd

from simulator.training.memory import OutOfMemory, device_memory
from simulator.training.pipeline import closed_form_bubble, simulate_pipeline
from simulator.training.result import BREAKDOWN_PHASES, TrainingResult
from simulator.training.step import dp_tail_phases, held_stages, plan_job
from workloads.accounting import training_flops_per_token
from workloads.training import TrainingJob, load_training_job, parse_training_job

__all__ = ["simulate_training", "load_training_job", "parse_training_job", "TrainingJob", "TrainingResult",
           "OutOfMemory"]


def simulate_training(job: TrainingJob, *, profile=None, steps: int = 1, check_memory: bool = True,
                      trace: bool = False, progress=None) -> TrainingResult:
    """Simulate ``steps`` optimizer steps of ``job`` (see module docstring).

    Steps are separated by the optimizer (global gradient-norm clipping is a barrier), so in
    this deterministic model every step repeats the first; ``steps`` scales nothing but is
    kept in the result for the caller's accounting. ``progress`` (``simulator.progress``): told
    the pipeline actions simulated.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    plan = plan_job(job, profile=profile)
    p = job.parallelism
    times = plan.stage_times()
    m = job.micro_batches
    tails = {d: dp_tail_phases(plan, d, profile) for d in range(p.pp)}
    run = simulate_pipeline(p.pp_schedule, p.pp, m, times, trace=trace, tail=lambda d: tails[d], progress=progress)
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
    # memory: peak in-flight activation bytes per device from the DES
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
        sources={"compute": plan.cost_model.roofline.source if profile is None else "profile",
                 "p2p_s": plan.p2p_s, "comm_sm_fraction": plan.sm_fraction},
    )
