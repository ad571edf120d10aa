"""Pipeline schedules (1F1B, ZB1P, DualPipe, DualPipeV) and their event simulation.

Three parts:

* **Closed forms** (``bubble_1f1b``, ``bubble_zb1p``, ``bubble_dualpipe``, ``memory_multiples``):
  the bubble and memory table of the DualPipe README (deepseek-ai/DualPipe @ 3da1bbe; target
  ``dualpipe.bubbles`` in ../shared/reference/published.yaml). F = forward time of one chunk,
  B = *full* backward (input + weight), W = weight-backward part, F&B = two mutually overlapped
  chunks (a forward of one micro-batch and a full backward of another).
* **Schedules** (``schedule_1f1b``, ``schedule_zb1p``, ``schedule_dualpipe``): per-rank ordered
  lists of :class:`Action`. 1F1B: PipeDream-flush order. ZB1P: the ZB-H1 order of "Zero
  Bubble Pipeline Parallelism" (arXiv 2401.10241): 1F1B's order with the backward split into
  B (input) and W (weight), and stage ``i`` holding back ``p-1-i`` of its W's to fill the
  cool-down. DualPipe: the eight phases of DeepSeek's ``DualPipe.step`` (counts per rank
  re-derived here). DualPipeV is DualPipe on ``2 x devices`` ranks folded in half (the
  "cut-in-half" construction): rank ``r`` and its mirror ``2D-1-r`` are one device.
* **Event simulation** (``simulate_pipeline``): a small simpy DES, one process per rank that
  runs its actions in order, each waiting for its cross-rank input (the activation or gradient
  of the same micro-batch from the neighbouring stage, delayed by the point-to-point time) and
  then holding the rank for the action's duration. One event per micro-batch phase, never per
  kernel. It returns the timeline, per-rank busy/idle time and the peak number of in-flight
  activations (a micro-batch's activations on a stage are held from its F until its B).

Durations come from a :class:`StageTimes`: constant (``StageTimes.uniform``) for the oracle
tests, or built by ``simulator.training.step`` from the cost model. Every duration is split
into phases (forward, backward_input, backward_weight, exposed_comm, comm_sm_slowdown,
recompute) so the breakdown sums to the step time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import simpy

from simulator.progress import ProgressFn, run_events
from workloads.training import pipeline_stages  # one definition; re-exported for the schedules' users

__all__ = [
    "SCHEDULES",
    "Part",
    "Action",
    "StageTimes",
    "PipelineRun",
    "bubble_1f1b",
    "bubble_zb1p",
    "bubble_dualpipe",
    "closed_form_bubble",
    "memory_multiples",
    "schedule_1f1b",
    "schedule_zb1p",
    "schedule_dualpipe",
    "build_schedule",
    "pipeline_ranks",
    "pipeline_stages",
    "simulate_pipeline",
]

SCHEDULES = ("1f1b", "zb1p", "dualpipe", "dualpipev")
PHASES = ("forward", "backward_input", "backward_weight", "recompute", "exposed_comm", "comm_sm_slowdown")


# ----------------------------------------------------------------------------- closed forms


def bubble_1f1b(pp: int, f: float, b: float) -> float:
    """1F1B bubble per device: ``(PP-1)(F+B)`` (B = full backward)."""
    return (pp - 1) * (f + b)


def bubble_zb1p(pp: int, f: float, b: float, w: float) -> float:
    """ZB1P (ZB-H1) bubble: ``(PP-1)(F+B-2W)`` (B = full backward, W its weight part)."""
    return (pp - 1) * (f + b - 2 * w)


def bubble_dualpipe(pp: int, fb: float, b: float, w: float) -> float:
    """DualPipe / DualPipeV bubble: ``(PP/2-1)(F&B+B-3W)``; ``pp`` = pipeline stages."""
    return (pp / 2 - 1) * (fb + b - 3 * w)


def closed_form_bubble(schedule: str, pp: int, f: float, b: float, w: float, fb: float | None = None) -> float:
    """The README bubble of ``schedule`` for ``pp`` stages (F&B defaults to F+B: no overlap)."""
    fb = f + b if fb is None else fb
    if schedule == "1f1b":
        return bubble_1f1b(pp, f, b)
    if schedule == "zb1p":
        return bubble_zb1p(pp, f, b, w)
    if schedule in ("dualpipe", "dualpipev"):
        return bubble_dualpipe(pp, fb, b, w)
    raise ValueError(f"unknown pipeline schedule {schedule!r} (valid: {', '.join(SCHEDULES)})")


def memory_multiples(schedule: str, pp: int) -> dict[str, float]:
    """Parameters per device (x one stage's), activations per device (in micro-batch-stages)
    and devices, for ``pp`` pipeline stages: the README table."""
    table = {
        "1f1b": (1.0, pp, pp),
        "zb1p": (1.0, pp, pp),
        "dualpipe": (2.0, pp + 1, pp),
        "dualpipev": (2.0, pp + 1, pp / 2),
    }
    if schedule not in table:
        raise ValueError(f"unknown pipeline schedule {schedule!r} (valid: {', '.join(SCHEDULES)})")
    p, a, d = table[schedule]
    return {"params": p, "activations": float(a), "devices": float(d)}


# ----------------------------------------------------------------------------- schedules


@dataclass(frozen=True, slots=True)
class Part:
    """One chunk of work: ``kind`` F (forward), B (full backward), Bi (backward for inputs) or
    W (backward for weights) of micro-batch ``mb`` of ``direction`` at pipeline ``stage``."""

    kind: str
    direction: int
    mb: int
    stage: int


@dataclass(frozen=True, slots=True)
class Action:
    """What a rank runs next: one part, or two mutually overlapped parts (DualPipe's F&B)."""

    parts: tuple[Part, ...]

    @property
    def label(self) -> str:
        return "&".join(f"{p.kind}{p.direction}.{p.mb}@{p.stage}" for p in self.parts)


def _one(kind: str, d: int, mb: int, s: int) -> Action:
    return Action((Part(kind, d, mb, s),))


def schedule_1f1b(pp: int, m: int) -> list[list[Action]]:
    """PipeDream-flush 1F1B: stage i runs ``min(pp-1-i, m)`` warm-up forwards, then alternates
    one forward and one (full) backward, then drains the backwards."""
    out = []
    for i in range(pp):
        w = min(pp - 1 - i, m)
        acts = [_one("F", 0, j, i) for j in range(w)]
        for j in range(m - w):
            acts += [_one("F", 0, w + j, i), _one("B", 0, j, i)]
        acts += [_one("B", 0, j, i) for j in range(m - w, m)]
        out.append(acts)
    return out


def schedule_zb1p(pp: int, m: int) -> list[list[Action]]:
    """ZB-H1: 1F1B's order (and activation limit) with B split into Bi and W, each W run
    right after the forward that follows its Bi, except that stage i keeps ``i`` W's back: the
    later stages then pass input gradients up the pipeline without waiting for weight
    gradients, and the held W's fill the cool-down."""
    out = []
    for i in range(pp):
        w = min(pp - 1 - i, m)
        hold = min(i, m)
        acts: list[Action] = [_one("F", 0, j, i) for j in range(w)]
        pending: list[int] = []

        def backward(j: int) -> None:
            acts.append(_one("Bi", 0, j, i))
            pending.append(j)
            if len(pending) > hold:
                acts.append(_one("W", 0, pending.pop(0), i))

        for j in range(m - w):
            acts.append(_one("F", 0, w + j, i))
            backward(j)
        for j in range(m - w, m):
            backward(j)
        acts += [_one("W", 0, j, i) for j in pending]
        out.append(acts)
    return out


def schedule_dualpipe(pp: int, m: int) -> list[list[Action]]:
    """DualPipe on ``pp`` ranks (even) with ``m`` micro-batches (even, >= 2 pp), half fed from
    each end. Rank r holds stage r of direction 0 and stage pp-1-r of direction 1; its
    'phase 0' is direction 0 on the first half of the ranks and direction 1 on the second.

    Phases per rank (h = min(r, pp-1-r), H = pp/2, n = m/2 per direction): nF0 = 2(H-h-1);
    nF0F1 = h+1; nB1W1F1 = H-h-1 (zero bubble); main nF0B1F1B0 = n-pp+h+1 pairs of F&B;
    nB1F1B0 = H-h-1; nB1B0 = h+1 (second half with zero bubble); nWB0 = H-h-1; nW = h+1.
    The middle ranks do not overlap their first main-phase pair.
    """
    if pp % 2 or pp < 2:
        raise ValueError(f"DualPipe needs an even number of pipeline ranks >= 2, got {pp}")
    if m % 2 or m < 2 * pp:
        raise ValueError(f"DualPipe needs an even number of micro-batches >= 2 x pp = {2 * pp}, got {m}")
    return [_dualpipe_rank(r, pp, m) for r in range(pp)]


def _dualpipe_rank(r: int, pp: int, m: int) -> list[Action]:
    """DualPipe's program for rank ``r`` (``schedule_dualpipe``: the phases and their counts)."""
    H, n = pp // 2, m // 2
    h = min(r, pp - 1 - r)
    second = r >= H
    middle = r in (H - 1, H)
    # phase -> (direction, stage of this rank along that direction's path)
    dirs = (1, 0) if second else (0, 1)
    stage = {0: r, 1: pp - 1 - r}
    nf = [0, 0]  # next forward micro-batch per phase
    nb = [0, 0]  # next backward micro-batch per phase
    wq: list[Part] = []
    acts: list[Action] = []

    def fpart(ph: int) -> Part:
        d = dirs[ph]
        p = Part("F", d, nf[ph], stage[d])
        nf[ph] += 1
        return p

    def bpart(ph: int, zb: bool) -> Part:
        d = dirs[ph]
        if zb:
            p = Part("Bi", d, nb[ph], stage[d])
            wq.append(Part("W", d, nb[ph], stage[d]))
        else:
            p = Part("B", d, nb[ph], stage[d])
        nb[ph] += 1
        return p

    def F(ph: int) -> None:
        acts.append(Action((fpart(ph),)))

    def B(ph: int, zb: bool = False) -> None:
        acts.append(Action((bpart(ph, zb),)))

    def W() -> None:
        acts.append(Action((wq.pop(0),)))

    def FB(ph_f: int, ph_b: int) -> None:
        acts.append(Action((fpart(ph_f), bpart(ph_b, False))))

    for _ in range(2 * (H - h - 1)):
        F(0)
    for _ in range(h + 1):
        F(0)
        F(1)
    for _ in range(H - h - 1):
        B(1, zb=True)
        W()
        F(1)
    for i in range(n - pp + h + 1):
        if i == 0 and middle:
            F(0)
            B(1)
        else:
            FB(0, 1)
        FB(1, 0)
    for _ in range(H - h - 1):
        B(1)
        FB(1, 0)
    step6, zb = h + 1, False
    for i in range(step6):
        if i == step6 // 2 and h % 2 == 1:
            zb = True
        B(1, zb)
        if i == step6 // 2 and h % 2 == 0:
            zb = True
        B(0, zb)
    for _ in range(H - h - 1):
        W()
        B(0, zb=True)
    for _ in range(h + 1):
        W()
    if wq or nf != [n, n] or nb != [n, n]:
        raise AssertionError(f"DualPipe schedule of rank {r} is inconsistent")  # pragma: no cover
    return acts


def pipeline_ranks(schedule: str, pp: int) -> int:
    """Ranks the DES simulates for ``pp`` (devices for 1F1B/ZB1P/DualPipe; 2 x pp mirrored
    ranks for DualPipeV, whose first ``pp`` are the devices)."""
    return 2 * pp if schedule == "dualpipev" else pp


def build_schedule(schedule: str, pp: int, m: int) -> list[list[Action]]:
    """Per-rank action lists. For DualPipeV ``pp`` is the device count and ``m`` the
    micro-batches; it is DualPipe on 2 pp ranks with m per direction, folded (see module doc)."""
    if schedule == "1f1b":
        return schedule_1f1b(pp, m)
    if schedule == "zb1p":
        return schedule_zb1p(pp, m)
    if schedule == "dualpipe":
        return schedule_dualpipe(pp, m)
    if schedule == "dualpipev":
        return schedule_dualpipe(2 * pp, 2 * m)
    raise ValueError(f"unknown pipeline schedule {schedule!r} (valid: {', '.join(SCHEDULES)})")


def rank_of(schedule: str, pp: int, direction: int, stage: int) -> int:
    """The simulated rank that runs ``stage`` of ``direction``."""
    ranks = pipeline_ranks(schedule, pp)
    return stage if direction == 0 else ranks - 1 - stage


def device_of(schedule: str, pp: int, rank: int) -> int:
    """The device a simulated rank runs on (DualPipeV folds rank r and 2pp-1-r together)."""
    if schedule == "dualpipev":
        return rank if rank < pp else 2 * pp - 1 - rank
    return rank


# ----------------------------------------------------------------------------- durations


Phases = Mapping[str, float]


@dataclass(frozen=True)
class StageTimes:
    """Per-stage durations (seconds), each split into phases (see ``PHASES``).

    ``f[s]``, ``b[s]`` (full backward), ``bi[s]``, ``w[s]``: phase dicts for stage ``s``.
    ``fb(sf, sb)``: phase dict of an F of stage ``sf`` overlapped with a full B of stage ``sb``.
    ``p2p(direction, stage)``: seconds to move stage's output to the next stage (activations
    forward; the same size of gradients backward). ``act_bytes[s]``: activations one
    micro-batch leaves on stage s between its F and its B.
    """

    f: Sequence[Phases]
    b: Sequence[Phases]
    bi: Sequence[Phases]
    w: Sequence[Phases]
    fb: Callable[[int, int], Phases]
    p2p_s: Callable[[int, int], float] = lambda d, s: 0.0
    act_bytes: Sequence[float] = ()

    @classmethod
    def uniform(cls, stages: int, f: float, b: float, w: float, fb: float | None = None,
                p2p_s: float = 0.0) -> "StageTimes":
        """Identical stages (B is the full backward, W <= B its weight part; F&B defaults to F+B)."""
        if not 0 <= w <= b:
            raise ValueError(f"need 0 <= W <= B, got W={w}, B={b}")
        fbv = f + b if fb is None else fb
        fd = {"forward": f}
        bd = {"backward_input": b - w, "backward_weight": w}
        bid = {"backward_input": b - w}
        wd = {"backward_weight": w}
        fbd = {"forward": fbv * f / (f + b), "backward_input": fbv * (b - w) / (f + b),
               "backward_weight": fbv * w / (f + b)} if f + b else {}
        return cls([fd] * stages, [bd] * stages, [bid] * stages, [wd] * stages, lambda sf, sb: fbd,
                   (lambda d, s: p2p_s), [1.0] * stages)

    def part_phases(self, part: Part) -> Phases:
        table = {"F": self.f, "B": self.b, "Bi": self.bi, "W": self.w}[part.kind]
        return table[part.stage]

    def action_phases(self, action: Action) -> Phases:
        if len(action.parts) == 1:
            return self.part_phases(action.parts[0])
        pf, pb = action.parts
        return self.fb(pf.stage, pb.stage)


def _seconds(ph: Phases) -> float:
    return float(sum(ph.values()))


# ----------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class PipelineRun:
    """What one pipeline flush did. ``timeline``: (rank, label, start_s, end_s) in start order,
    actions labelled ``Action.label`` and tail phases by name (``dp_grad_sync``, ``optimizer``...).
    ``busy_s[r]`` and ``idle_s[r]`` are per simulated rank over ``[0, makespan_s]``;
    ``phases_s[r]`` splits the busy time; ``peak_inflight[r]`` counts micro-batch-stages whose
    activations rank r held at once; ``peak_act_bytes[r]`` the same in bytes;
    ``end_s[r]`` when rank r ran its last action, ``finish_s[r]`` when its tail ended;
    ``makespan_s`` the step (pipeline and tails); ``idle_s`` is measured against the pipeline's
    end (the last action of any rank)."""

    schedule: str
    pp: int
    micro_batches: int
    makespan_s: float
    busy_s: tuple[float, ...]
    idle_s: tuple[float, ...]
    end_s: tuple[float, ...]
    finish_s: tuple[float, ...]
    phases_s: tuple[Mapping[str, float], ...]
    peak_inflight: tuple[int, ...]
    peak_act_bytes: tuple[float, ...]
    timeline: tuple[tuple[int, str, float, float], ...] = field(repr=False, default=())

    @property
    def bubble_s(self) -> float:
        """The largest per-rank idle time (all ranks share one makespan)."""
        return max(self.idle_s)


class _Inbox:
    """Cross-rank arrivals of one flush. A key ("F" | "G", direction, mb, stage) says that the
    input activation (F) or output gradient (G) of that micro-batch has arrived at that stage;
    an event plus a flag set at arrival time."""

    def __init__(self, env: simpy.Environment, stages: int, times: StageTimes):
        self.env, self.stages, self.times = env, stages, times
        self.events: dict[tuple[str, int, int, int], simpy.Event] = {}
        self.arrived: set[tuple[str, int, int, int]] = set()

    def slot(self, key: tuple[str, int, int, int]) -> simpy.Event:
        e = self.events.get(key)
        if e is None:
            e = self.events[key] = self.env.event()
        return e

    def deliver(self, key: tuple[str, int, int, int], delay: float):
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
        """The arrivals ``part`` still waits for."""
        d, mb, s = part.direction, part.mb, part.stage
        if part.kind == "F" and s > 0:
            key = ("F", d, mb, s)
        elif part.kind in ("B", "Bi") and s < self.stages - 1:
            key = ("G", d, mb, s)
        else:
            return []
        return [] if key in self.arrived else [self.slot(key)]


def _run_tail(env: simpy.Environment, r: int, steps: Sequence[tuple[str, float]], phases: dict[str, float],
              timeline: list[tuple[int, str, float, float]] | None):
    """Rank ``r``'s tail after its last action: (phase, seconds) steps run in order (gradient
    sync, optimizer), added to ``phases`` and, when tracing, to ``timeline``."""
    for name, seconds in steps:
        start = env.now
        if seconds > 0:
            yield env.timeout(seconds)
            if timeline is not None:
                timeline.append((r, name, start, env.now))
        phases[name] = phases.get(name, 0.0) + seconds


def simulate_pipeline(schedule: str, pp: int, micro_batches: int, times: StageTimes,
                      trace: bool = False,
                      tail: Callable[[int], Sequence[tuple[str, float]]] | None = None,
                      progress: ProgressFn | None = None) -> PipelineRun:
    """Run one flush of ``schedule`` with ``micro_batches`` per step through the DES.

    Cross-rank dependencies: the F of micro-batch ``mb`` at stage s waits for its F at stage
    s-1 plus ``p2p_s``; its B/Bi at stage s waits for B/Bi at stage s+1 plus ``p2p_s``. Within
    a rank actions run in order (the schedule is the rank's program, as in DualPipe.step).
    ``tail(device)``: (phase, seconds) run after a device's last action (gradient sync,
    optimizer); ``makespan_s`` includes it, ``idle_s`` counts only the pipeline part.
    ``progress`` (``simulator.progress``): told the actions done (task ``pipeline actions``).
    """
    plan = build_schedule(schedule, pp, micro_batches)
    ranks = len(plan)
    stages = ranks  # every simulated rank runs one stage per direction
    env = simpy.Environment()
    inbox = _Inbox(env, stages, times)
    send, needs = inbox.send, inbox.needs
    busy = [0.0] * ranks
    end = [0.0] * ranks
    phases = [dict.fromkeys(PHASES, 0.0) for _ in range(ranks)]
    inflight = [0] * ranks
    peak = [0] * ranks
    act = [0.0] * ranks
    peak_act = [0.0] * ranks
    timeline: list[tuple[int, str, float, float]] = []
    act_bytes = list(times.act_bytes) or [1.0] * stages
    actions_done = [0]

    def run(r: int, action: Action):
        for p in action.parts:  # activations are allocated as the forward starts
            if p.kind == "F":
                inflight[r] += 1
                act[r] += act_bytes[p.stage]
        peak[r] = max(peak[r], inflight[r])
        peak_act[r] = max(peak_act[r], act[r])
        ph = times.action_phases(action)
        dur = _seconds(ph)
        start = env.now
        if dur > 0:
            yield env.timeout(dur)
        busy[r] += dur
        for k, v in ph.items():
            phases[r][k] = phases[r].get(k, 0.0) + v
        end[r] = env.now
        actions_done[0] += 1
        if trace:
            timeline.append((r, action.label, start, env.now))
        for p in action.parts:
            send(p)
            if p.kind in ("B", "Bi"):  # activations are freed once the input gradient is done
                inflight[r] -= 1
                act[r] -= act_bytes[p.stage]

    finish = [0.0] * ranks
    real = pp if schedule == "dualpipev" else ranks  # DualPipeV's mirrored ranks are not devices

    def rank_proc(r: int):
        for action in plan[r]:
            waits = [e for p in action.parts for e in needs(p)]
            if waits:
                yield simpy.AllOf(env, waits)
            yield from run(r, action)
        if tail is not None and r < real:
            yield from _run_tail(env, r, tail(r), phases[r], timeline if trace else None)
        finish[r] = env.now

    for r in range(ranks):
        env.process(rank_proc(r))
    total = sum(len(actions) for actions in plan)
    run_events(env, (lambda: progress("pipeline actions", actions_done[0], total, f"{env.now:,.3f} s of the step"))
               if callable(progress) else None)
    pipe_end = max(end)
    timeline.sort(key=lambda t: (t[2], t[0]))
    return PipelineRun(schedule=schedule, pp=pp, micro_batches=micro_batches, makespan_s=max(finish),
                       busy_s=tuple(busy), idle_s=tuple(pipe_end - b for b in busy), end_s=tuple(end),
                       finish_s=tuple(finish), phases_s=tuple(phases), peak_inflight=tuple(peak),
                       peak_act_bytes=tuple(peak_act), timeline=tuple(timeline))
