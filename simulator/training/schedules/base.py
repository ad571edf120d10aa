"""What a pipeline schedule is: the ``PipelineSchedule`` protocol and the actions it orders.

A schedule turns ``pp`` devices and ``m`` micro-batches into one ordered program per simulated
rank (a list of :class:`Action`), which ``simulator.training.pipeline`` runs: as a longest-path
pass over the dependency graph (``pipeline_dag``) for the step time, or through the simpy event
simulation for a trace. Every cross-rank dependency follows from the parts themselves (an F
waits for the same micro-batch's F on the previous stage, a B or Bi for its B or Bi on the next
stage), so a schedule only orders work; it never times it.

Besides the order, a schedule says how its simulated ranks map onto devices and stages
(``ranks``, ``device_of``, ``held_stages``, ``free_hop``, ``stage_replicas``) and carries the
closed forms of the DualPipe README table (``closed_form_bubble``, ``memory_multiples``).
``ScheduleBase`` holds the defaults of a one-direction schedule (one stage per device, one
simulated rank per device); a new schedule subclasses it or implements the protocol whole.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from workloads.pipeline_schedules import PIPELINE_SCHEDULES

__all__ = ["KINDS", "Part", "Action", "PipelineSchedule", "ScheduleBase", "part", "action", "one"]

#: part kinds: forward, full backward, backward for inputs, backward for weights
KINDS = ("F", "B", "Bi", "W")


class Part(NamedTuple):
    """One chunk of work: ``kind`` F (forward), B (full backward), Bi (backward for inputs) or
    W (backward for weights) of micro-batch ``mb`` of ``direction`` at pipeline ``stage``."""

    kind: str
    direction: int
    mb: int
    stage: int


class Action(NamedTuple):
    """What a rank runs next: one part, or two mutually overlapped parts (DualPipe's F&B)."""

    parts: tuple[Part, ...]

    @property
    def label(self) -> str:
        return "&".join(f"{p.kind}{p.direction}.{p.mb}@{p.stage}" for p in self.parts)


_new = tuple.__new__  # NamedTuple construction without its Python-level __new__ (schedules build 10^5)


def part(kind: str, direction: int, mb: int, stage: int) -> Part:
    """``Part(kind, direction, mb, stage)``, built fast."""
    return _new(Part, (kind, direction, mb, stage))


def action(*parts: Part) -> Action:
    """``Action(parts)``, built fast."""
    return _new(Action, (parts,))


def one(kind: str, direction: int, mb: int, stage: int) -> Action:
    """An action of one part."""
    return _new(Action, ((_new(Part, (kind, direction, mb, stage)),),))


@runtime_checkable
class PipelineSchedule(Protocol):
    """A pipeline schedule (see the module docstring). ``name`` is its key in
    ``workloads.pipeline_schedules.PIPELINE_SCHEDULES`` and in the simulator's registry."""

    name: str

    def stages(self, pp: int) -> int:
        """Model stages (layer slices) for ``pp`` devices."""
        ...

    def ranks(self, pp: int) -> int:
        """Ranks the simulation runs for ``pp`` devices (one program each)."""
        ...

    def device_of(self, pp: int, rank: int) -> int:
        """The device a simulated rank runs on."""
        ...

    def held_stages(self, pp: int) -> list[tuple[int, ...]]:
        """The stages each device holds (parameters, gradients, optimizer states)."""
        ...

    def stage_replicas(self) -> int:
        """Copies of every stage's parameters one pipeline holds (2 for DualPipe)."""
        ...

    def free_hop(self, pp: int, stage: int) -> bool:
        """True when the hop from ``stage`` to ``stage + 1`` stays on one device (costs nothing)."""
        ...

    def overlaps_chunk_comm(self) -> bool:
        """True when its steady state runs overlapped F&B pairs, each chunk's communication
        hidden under the other's compute (DualPipe): devices are as busy as their compute."""
        ...

    def validate(self, pp: int, micro_batches: int) -> None:
        """Raise ``ValueError`` naming the rule when the schedule cannot run this shape."""
        ...

    def actions(self, pp: int, micro_batches: int) -> list[list[Action]]:
        """The program of every simulated rank, in the order it runs."""
        ...

    def closed_form_bubble(self, stages: int, f: float, b: float, w: float, fb: float) -> float:
        """The README bubble for ``stages`` pipeline stages (B full backward, W its weight part)."""
        ...

    def memory_multiples(self, pp: int) -> dict[str, float]:
        """Parameters per device (x one stage's), activations per device (micro-batch-stages),
        devices: the README memory table."""
        ...


class ScheduleBase:
    """Defaults of a one-direction schedule: one simulated rank and one stage per device; the
    stage count is the schema's (``ScheduleFacts.stages``)."""

    name = ""

    def stages(self, pp: int) -> int:
        return PIPELINE_SCHEDULES[self.name].stages(pp)

    def ranks(self, pp: int) -> int:
        return pp

    def device_of(self, pp: int, rank: int) -> int:
        return rank

    def held_stages(self, pp: int) -> list[tuple[int, ...]]:
        return [(r,) for r in range(pp)]

    def stage_replicas(self) -> int:
        return 1

    def free_hop(self, pp: int, stage: int) -> bool:
        return False

    def overlaps_chunk_comm(self) -> bool:
        return False

    def validate(self, pp: int, micro_batches: int) -> None:
        """The schema's shape rules (``ScheduleFacts.problems``): the first one broken."""
        problems = PIPELINE_SCHEDULES[self.name].problems(pp, micro_batches)
        if problems:
            raise ValueError(problems[0][1])

    def memory_multiples(self, pp: int) -> dict[str, float]:
        return {"params": 1.0, "activations": float(pp), "devices": float(pp)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
