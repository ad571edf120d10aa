"""ZB1P: the ZB-H1 order of "Zero Bubble Pipeline Parallelism" (arXiv 2401.10241).

1F1B's order (and activation limit) with the backward split into Bi (input gradients) and W
(weight gradients), each W run right after the forward that follows its Bi, except that stage
i keeps ``i`` W's back: the later stages then pass input gradients up the pipeline without
waiting for weight gradients, and the held W's fill the cool-down. Bubble ``(PP-1)(F+B-2W)``
(found by exhaustive search over hold-back vectors for PP=4, then verified for 6, 8, 16).
"""

from __future__ import annotations

from simulator.training.schedules.base import Action, ScheduleBase, one

__all__ = ["ZB1P", "bubble_zb1p"]


def bubble_zb1p(pp: int, f: float, b: float, w: float) -> float:
    """ZB1P (ZB-H1) bubble: ``(PP-1)(F+B-2W)`` (B = full backward, W its weight part)."""
    return (pp - 1) * (f + b - 2 * w)


def _rank(pp: int, m: int, i: int) -> list[Action]:
    w = min(pp - 1 - i, m)
    hold = min(i, m)
    acts: list[Action] = [one("F", 0, j, i) for j in range(w)]
    pending: list[int] = []

    def backward(j: int) -> None:
        acts.append(one("Bi", 0, j, i))
        pending.append(j)
        if len(pending) > hold:
            acts.append(one("W", 0, pending.pop(0), i))

    for j in range(m - w):
        acts.append(one("F", 0, w + j, i))
        backward(j)
    for j in range(m - w, m):
        backward(j)
    acts += [one("W", 0, j, i) for j in pending]
    return acts


class ZB1P(ScheduleBase):
    name = "zb1p"

    def actions(self, pp: int, micro_batches: int) -> list[list[Action]]:
        self.validate(pp, micro_batches)
        return [_rank(pp, micro_batches, i) for i in range(pp)]

    def closed_form_bubble(self, stages: int, f: float, b: float, w: float, fb: float) -> float:
        return bubble_zb1p(stages, f, b, w)
