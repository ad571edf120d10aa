"""The pipeline as a simpy event simulation: what ``simulate_pipeline(trace=True)`` runs.

One process per simulated rank runs its actions in order, each waiting for its cross-rank
input (an event per activation or gradient, set when it arrives: the producer's end plus the
point-to-point time), then holding the rank for the action's duration; after its last action
each device runs its tail. One event per micro-batch phase, never per kernel. It records the
timeline (every action and tail phase per rank) for ``to_chrome_trace``. Its figures equal the
longest-path pass of ``pipeline_dag`` exactly; it stays as the reference the DAG is tested
against and as the tracer.
"""

from __future__ import annotations

import simpy

from simulator.progress import ProgressFn, run_events
from simulator.training.pipeline_times import PHASES, PipelineRun, StageTimes, Tail
from simulator.training.schedules import Action, Part, get_schedule

__all__ = ["simulate_pipeline_events"]

Key = tuple[str, int, int, int]


class _Flush:
    """State of one event-simulated flush (see ``simulate_pipeline_events``)."""

    def __init__(self, plan: list[list[Action]], times: StageTimes, trace: bool):
        self.env = simpy.Environment()
        self.plan, self.times, self.trace = plan, times, trace
        ranks = self.ranks = len(plan)
        self.stages = ranks  # every simulated rank runs one stage per direction
        # ("F" | "G", direction, mb, stage): the input activation (F) or output gradient (G) of
        # that micro-batch has arrived at that stage; an event plus a flag set at arrival time.
        self.inbox: dict[Key, simpy.Event] = {}
        self.arrived: set[Key] = set()
        self.busy = [0.0] * ranks
        self.end = [0.0] * ranks
        self.finish = [0.0] * ranks
        self.phases = [dict.fromkeys(PHASES, 0.0) for _ in range(ranks)]
        self.inflight = [0] * ranks
        self.peak = [0] * ranks
        self.act = [0.0] * ranks
        self.peak_act = [0.0] * ranks
        self.timeline: list[tuple[int, str, float, float]] = []
        self.act_bytes = list(times.act_bytes) or [1.0] * self.stages
        self.actions_done = 0

    def slot(self, key: Key) -> simpy.Event:
        e = self.inbox.get(key)
        if e is None:
            e = self.inbox[key] = self.env.event()
        return e

    def deliver(self, key: Key, delay: float):
        if delay > 0:
            yield self.env.timeout(delay)
        self.arrived.add(key)
        self.slot(key).succeed()

    def send(self, part: Part) -> None:
        """Start moving a finished part's output to the stage that consumes it."""
        d, mb, s = part.direction, part.mb, part.stage
        if part.kind == "F" and s < self.stages - 1:
            self.env.process(self.deliver(("F", d, mb, s + 1), self.times.p2p_s(d, s)))
        elif part.kind in ("B", "Bi") and s > 0:
            self.env.process(self.deliver(("G", d, mb, s - 1), self.times.p2p_s(d, s - 1)))

    def needs(self, part: Part) -> list[simpy.Event]:
        d, mb, s = part.direction, part.mb, part.stage
        if part.kind == "F" and s > 0:
            key = ("F", d, mb, s)
        elif part.kind in ("B", "Bi") and s < self.stages - 1:
            key = ("G", d, mb, s)
        else:
            return []
        return [] if key in self.arrived else [self.slot(key)]

    def run(self, r: int, action: Action):
        for p in action.parts:  # activations are allocated as the forward starts
            if p.kind == "F":
                self.inflight[r] += 1
                self.act[r] += self.act_bytes[p.stage]
        self.peak[r] = max(self.peak[r], self.inflight[r])
        self.peak_act[r] = max(self.peak_act[r], self.act[r])
        ph = self.times.action_phases(action)
        dur = float(sum(ph.values()))
        start = self.env.now
        if dur > 0:
            yield self.env.timeout(dur)
        self.busy[r] += dur
        for k, v in ph.items():
            self.phases[r][k] = self.phases[r].get(k, 0.0) + v
        self.end[r] = self.env.now
        self.actions_done += 1
        if self.trace:
            self.timeline.append((r, action.label, start, self.env.now))
        for p in action.parts:
            self.send(p)
            if p.kind in ("B", "Bi"):  # activations are freed once the input gradient is done
                self.inflight[r] -= 1
                self.act[r] -= self.act_bytes[p.stage]

    def rank_proc(self, r: int, tail: Tail | None):
        env = self.env
        for action in self.plan[r]:
            waits = [e for p in action.parts for e in self.needs(p)]
            if waits:
                yield simpy.AllOf(env, waits)
            yield from self.run(r, action)
        if tail is not None:
            for name, seconds in tail(r):
                start = env.now
                if seconds > 0:
                    yield env.timeout(seconds)
                    if self.trace:
                        self.timeline.append((r, name, start, env.now))
                self.phases[r][name] = self.phases[r].get(name, 0.0) + seconds
        self.finish[r] = env.now


def simulate_pipeline_events(schedule: str, pp: int, micro_batches: int, times: StageTimes,
                             trace: bool = False, tail: Tail | None = None,
                             progress: ProgressFn | None = None) -> PipelineRun:
    """``simulate_pipeline`` through the simpy event simulation (see the module docstring)."""
    plan = get_schedule(schedule).actions(pp, micro_batches)
    flush = _Flush(plan, times, trace)
    for r in range(flush.ranks):  # tails run on the devices, not on DualPipeV's mirrored ranks
        flush.env.process(flush.rank_proc(r, tail if r < pp else None))
    total = sum(len(actions) for actions in plan)
    env = flush.env
    run_events(env, (lambda: progress("pipeline actions", flush.actions_done, total,
                                      f"{env.now:,.3f} s of the step")) if callable(progress) else None)
    if flush.actions_done < total:
        raise ValueError(f"the schedule deadlocks: {total - flush.actions_done} of {total} actions wait on each "
                         f"other in a cycle")
    pipe_end = max(flush.end)
    flush.timeline.sort(key=lambda t: (t[2], t[0]))
    return PipelineRun(
        schedule=schedule, pp=pp, micro_batches=micro_batches, makespan_s=max(flush.finish),
        busy_s=tuple(flush.busy), idle_s=tuple(pipe_end - b for b in flush.busy), end_s=tuple(flush.end),
        finish_s=tuple(flush.finish), phases_s=tuple(flush.phases), peak_inflight=tuple(flush.peak),
        peak_act_bytes=tuple(flush.peak_act), timeline=tuple(flush.timeline),
    )
