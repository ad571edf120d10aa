"""1F1B (PipeDream-flush): stage i runs ``min(pp-1-i, m)`` warm-up forwards, then alternates
one forward and one full backward, then drains the backwards. Bubble ``(PP-1)(F+B)``, stage i
holds ``PP-i`` micro-batches' activations at its peak (DualPipe README table)."""

from __future__ import annotations

from simulator.training.schedules.base import Action, ScheduleBase, one

__all__ = ["OneFOneB", "bubble_1f1b"]


def bubble_1f1b(pp: int, f: float, b: float) -> float:
    """1F1B bubble per device: ``(PP-1)(F+B)`` (B = full backward)."""
    return (pp - 1) * (f + b)


class OneFOneB(ScheduleBase):
    name = "1f1b"

    def actions(self, pp: int, micro_batches: int) -> list[list[Action]]:
        self.validate(pp, micro_batches)
        m = micro_batches
        out = []
        for i in range(pp):
            w = min(pp - 1 - i, m)
            acts = [one("F", 0, j, i) for j in range(w)]
            for j in range(m - w):
                acts += [one("F", 0, w + j, i), one("B", 0, j, i)]
            acts += [one("B", 0, j, i) for j in range(m - w, m)]
            out.append(acts)
        return out

    def closed_form_bubble(self, stages: int, f: float, b: float, w: float, fb: float) -> float:
        return bubble_1f1b(stages, f, b)
