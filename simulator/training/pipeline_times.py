"""What a pipeline flush takes and gives: per-stage durations (``StageTimes``) and the figures
of one run (``PipelineRun``), shared by the longest-path pass (``pipeline``/``pipeline_dag``)
and the event simulation (``pipeline_events``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from simulator.training.schedules import Action, Part

__all__ = ["PHASES", "Phases", "Tail", "StageTimes", "PipelineRun"]

PHASES = ("forward", "backward_input", "backward_weight", "recompute", "exposed_comm", "comm_sm_slowdown")
#: one (phase, seconds) list per device: what it runs after its last action
Tail = Callable[[int], Sequence[tuple[str, float]]]


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
        return self.key_phases((part.kind, part.stage))

    def action_phases(self, action: Action) -> Phases:
        if len(action.parts) == 1:
            return self.part_phases(action.parts[0])
        pf, pb = action.parts
        return self.fb(pf.stage, pb.stage)

    def key_phases(self, key: tuple) -> Phases:
        """Phases of a duration key: ``(kind, stage)`` of one part, ``("FB", sf, sb)`` of a pair."""
        if key[0] == "FB":
            return self.fb(key[1], key[2])
        return {"F": self.f, "B": self.b, "Bi": self.bi, "W": self.w}[key[0]][key[1]]


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PipelineRun:
    """What one pipeline flush did. ``timeline``: (rank, label, start_s, end_s) in start order,
    actions labelled ``Action.label`` and tail phases by name (``dp_grad_sync``, ``optimizer``...);
    only a traced run records it. ``busy_s[r]`` and ``idle_s[r]`` are per simulated rank over
    ``[0, makespan_s]``; ``phases_s[r]`` splits the busy time; ``peak_inflight[r]`` counts
    micro-batch-stages whose activations rank r held at once; ``peak_act_bytes[r]`` the same in
    bytes; ``end_s[r]`` when rank r ran its last action, ``finish_s[r]`` when its tail ended;
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
