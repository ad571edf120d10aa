"""Pipeline schedules run for one step: durations in, step time, idle, memory and trace out.

* **Schedules** live in ``simulator.training.schedules`` (one module each, ``REGISTRY`` by
  name: 1F1B, ZB1P, DualPipe, DualPipeV), with their README closed forms (bubble and memory
  table of deepseek-ai/DualPipe @ 3da1bbe; target ``dualpipe.bubbles`` in
  ../shared/reference/published.yaml). The name-keyed helpers here (``closed_form_bubble``,
  ``memory_multiples``, ``build_schedule``, ``pipeline_ranks``, ``pipeline_stages``) look the
  schedule up. F = forward time of one chunk, B = *full* backward (input + weight), W = its
  weight part, F&B = two mutually overlapped chunks (a forward of one micro-batch and a full
  backward of another).
* **Step time** (``simulate_pipeline``, ``evaluate_pipelines``): each rank runs its actions in
  order, each waiting for its cross-rank input (the activation or gradient of the same
  micro-batch from the neighbouring stage, delayed by the point-to-point time), then holding
  the rank for the action's duration; then each device runs its tail (gradient sync,
  optimizer). With nothing shared between ranks this is a longest path through a DAG fixed by
  (schedule, pp, micro-batches): ``pipeline_dag`` compiles it once per shape and evaluates it
  with numpy, a batch of layouts at once.
* **Trace** (``trace=True``, or ``method="events"``): the same model as a simpy event
  simulation (``pipeline_events``), one event per micro-batch phase, which also records the
  timeline. Both give identical figures (``tests/test_pipeline_schedules.py``).

Durations come from a :class:`StageTimes`: constant (``StageTimes.uniform``) for the oracle
tests, or built by ``simulator.training.step`` from the cost model. Every duration is split
into phases (forward, backward_input, backward_weight, exposed_comm, comm_sm_slowdown,
recompute) so the breakdown sums to the step time. Peak in-flight activations: a
micro-batch's activations on a stage are held from its F until its B (or Bi).
"""

from __future__ import annotations

from typing import Literal, Sequence

from simulator.progress import ProgressFn
from simulator.training.pipeline_dag import compile_schedule, evaluate
from simulator.training.pipeline_events import simulate_pipeline_events
from simulator.training.pipeline_times import PHASES, PipelineRun, StageTimes, Tail
from simulator.training.schedules import Action, Part, get_schedule
from simulator.training.schedules.dualpipe import bubble_dualpipe
from simulator.training.schedules.one_f_one_b import bubble_1f1b
from simulator.training.schedules.zb1p import bubble_zb1p
from workloads.pipeline_schedules import PP_SCHEDULE_NAMES
from workloads.training import pipeline_stages  # one definition; re-exported for the schedules' users

__all__ = [
    "SCHEDULES",
    "PHASES",
    "Part",
    "Action",
    "StageTimes",
    "PipelineRun",
    "bubble_1f1b",
    "bubble_zb1p",
    "bubble_dualpipe",
    "closed_form_bubble",
    "memory_multiples",
    "build_schedule",
    "pipeline_ranks",
    "pipeline_stages",
    "simulate_pipeline",
    "evaluate_pipelines",
]

SCHEDULES = PP_SCHEDULE_NAMES


# ----------------------------------------------------------------------------- by name


def closed_form_bubble(schedule: str, pp: int, f: float, b: float, w: float, fb: float | None = None) -> float:
    """The README bubble of ``schedule`` for ``pp`` stages (F&B defaults to F+B: no overlap)."""
    return get_schedule(schedule).closed_form_bubble(pp, f, b, w, f + b if fb is None else fb)


def memory_multiples(schedule: str, pp: int) -> dict[str, float]:
    """Parameters per device (x one stage's), activations per device (in micro-batch-stages)
    and devices, for ``pp`` pipeline stages: the README table."""
    return get_schedule(schedule).memory_multiples(pp)


def build_schedule(schedule: str, pp: int, m: int) -> list[list[Action]]:
    """Per-rank action lists of ``schedule`` for ``pp`` devices and ``m`` micro-batches."""
    return get_schedule(schedule).actions(pp, m)


def pipeline_ranks(schedule: str, pp: int) -> int:
    """Ranks the simulation runs for ``pp`` devices (2 x pp mirrored ranks for DualPipeV,
    whose first ``pp`` are the devices)."""
    return get_schedule(schedule).ranks(pp)


# ----------------------------------------------------------------------------- running


def simulate_pipeline(schedule: str, pp: int, micro_batches: int, times: StageTimes,
                      trace: bool = False, tail: Tail | None = None, progress: ProgressFn | None = None,
                      method: Literal["dag", "events"] | None = None) -> PipelineRun:
    """Run one flush of ``schedule`` with ``micro_batches`` per step.

    Cross-rank dependencies: the F of micro-batch ``mb`` at stage s waits for its F at stage
    s-1 plus ``p2p_s``; its B/Bi at stage s waits for B/Bi at stage s+1 plus ``p2p_s``. Within
    a rank actions run in order (the schedule is the rank's program, as in DualPipe.step).
    ``tail(device)``: (phase, seconds) run after a device's last action (gradient sync,
    optimizer); ``makespan_s`` includes it, ``idle_s`` counts only the pipeline part.
    ``method``: ``dag`` (longest path, the default) or ``events`` (simpy, the default with
    ``trace``, which only it records). ``progress`` (``simulator.progress``): told the
    actions done (task ``pipeline actions``).
    """
    method = method or ("events" if trace else "dag")
    if method == "events":
        return simulate_pipeline_events(schedule, pp, micro_batches, times, trace=trace, tail=tail,
                                        progress=progress)
    if method != "dag":
        raise ValueError(f"unknown pipeline method {method!r} (valid: dag, events)")
    if trace:
        raise ValueError("only the event simulation records a trace (method='events')")
    total = sum(len(a) for a in compile_schedule(schedule, pp, micro_batches).program.tolist()) if callable(
        progress) else 0
    if callable(progress):
        progress("pipeline actions", 0, total, "")
    run = evaluate_pipelines(schedule, pp, micro_batches, [times], [tail])[0]
    if callable(progress):
        progress("pipeline actions", total, total, f"{run.makespan_s:,.3f} s of the step")
    return run


def evaluate_pipelines(schedule: str, pp: int, micro_batches: int, times: Sequence[StageTimes],
                       tails: Sequence[Tail | None]) -> list[PipelineRun]:
    """``simulate_pipeline`` (longest-path method) for a batch of layouts of one shape: one
    pass over the compiled DAG for all of them (``times[i]`` and ``tails[i]`` per layout)."""
    g = compile_schedule(schedule, pp, micro_batches)
    figs = evaluate(g, [t.key_phases for t in times], [t.p2p_s for t in times],
                    [t.act_bytes for t in times], PHASES)
    return [_finish(g, fig, tail) for fig, tail in zip(figs, tails)]


def _finish(g, fig, tail: Tail | None) -> PipelineRun:
    """Add each device's tail (in order, as the event simulation does) and assemble the run."""
    phases = [dict(p) for p in fig.phases_s]
    finish = list(fig.end_s)
    if tail is not None:
        for r in range(g.pp):  # the devices (DualPipeV's mirrored ranks are not)
            t = finish[r]
            for name, seconds in tail(r):
                if seconds > 0:
                    t = t + seconds
                phases[r][name] = phases[r].get(name, 0.0) + seconds
            finish[r] = t
    pipe_end = max(fig.end_s)
    return PipelineRun(
        schedule=g.schedule, pp=g.pp, micro_batches=g.micro_batches, makespan_s=max(finish),
        busy_s=fig.busy_s, idle_s=tuple(pipe_end - b for b in fig.busy_s), end_s=fig.end_s,
        finish_s=tuple(finish), phases_s=tuple(phases), peak_inflight=g.peak_inflight,
        peak_act_bytes=fig.peak_act_bytes)
