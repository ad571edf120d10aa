"""DualPipe: the eight phases of DeepSeek's ``DualPipe.step`` (deepseek-ai/DualPipe @ 3da1bbe).

``pp`` ranks (even) run ``m`` micro-batches (even, >= 2 pp), half fed from each end. Rank r
holds stage r of direction 0 and stage pp-1-r of direction 1; its 'phase 0' is direction 0 on
the first half of the ranks and direction 1 on the second. Phases per rank (h = min(r, pp-1-r),
H = pp/2, n = m/2 per direction; counts re-derived here): nF0 = 2(H-h-1); nF0F1 = h+1;
nB1W1F1 = H-h-1 (zero bubble); main nF0B1F1B0 = n-pp+h+1 pairs of F&B; nB1F1B0 = H-h-1;
nB1B0 = h+1 (second half with zero bubble); nWB0 = H-h-1; nW = h+1. The middle ranks do not
overlap their first main-phase pair. Bubble ``(PP/2-1)(F&B+B-3W)``; every rank holds two
stages' parameters and PP+1 micro-batch-stages of activations (README table).
"""

from __future__ import annotations

from simulator.training.schedules.base import Action, Part, ScheduleBase, action, part

__all__ = ["DualPipe", "bubble_dualpipe", "dualpipe_rank"]


def bubble_dualpipe(pp: int, fb: float, b: float, w: float) -> float:
    """DualPipe / DualPipeV bubble: ``(PP/2-1)(F&B+B-3W)``; ``pp`` = pipeline stages."""
    return (pp / 2 - 1) * (fb + b - 3 * w)


class _Rank:
    """The program of one DualPipe rank, appended phase by phase."""

    def __init__(self, pp: int, r: int):
        self.dirs = (1, 0) if r >= pp // 2 else (0, 1)  # phase -> direction
        self.stage = {0: r, 1: pp - 1 - r}  # direction -> this rank's stage along it
        self.nf = [0, 0]  # next forward micro-batch per phase
        self.nb = [0, 0]  # next backward micro-batch per phase
        self.wq: list[Part] = []  # weight gradients held back
        self.acts: list[Action] = []

    def fpart(self, ph: int) -> Part:
        d = self.dirs[ph]
        p = part("F", d, self.nf[ph], self.stage[d])
        self.nf[ph] += 1
        return p

    def bpart(self, ph: int, zb: bool) -> Part:
        d = self.dirs[ph]
        mb = self.nb[ph]
        self.nb[ph] += 1
        if zb:  # zero bubble: input gradient now, weight gradient later
            self.wq.append(part("W", d, mb, self.stage[d]))
            return part("Bi", d, mb, self.stage[d])
        return part("B", d, mb, self.stage[d])

    def F(self, ph: int) -> None:
        self.acts.append(action(self.fpart(ph)))

    def B(self, ph: int, zb: bool = False) -> None:
        self.acts.append(action(self.bpart(ph, zb)))

    def W(self) -> None:
        self.acts.append(action(self.wq.pop(0)))

    def FB(self, ph_f: int, ph_b: int) -> None:
        self.acts.append(action(self.fpart(ph_f), self.bpart(ph_b, False)))


def dualpipe_rank(pp: int, m: int, r: int) -> list[Action]:
    """The program of rank ``r`` of DualPipe on ``pp`` ranks with ``m`` micro-batches."""
    H, n = pp // 2, m // 2
    h = min(r, pp - 1 - r)
    middle = r in (H - 1, H)
    k = _Rank(pp, r)
    for _ in range(2 * (H - h - 1)):
        k.F(0)
    for _ in range(h + 1):
        k.F(0)
        k.F(1)
    for _ in range(H - h - 1):
        k.B(1, zb=True)
        k.W()
        k.F(1)
    for i in range(n - pp + h + 1):
        if i == 0 and middle:
            k.F(0)
            k.B(1)
        else:
            k.FB(0, 1)
        k.FB(1, 0)
    for _ in range(H - h - 1):
        k.B(1)
        k.FB(1, 0)
    step6, zb = h + 1, False
    for i in range(step6):
        if i == step6 // 2 and h % 2 == 1:
            zb = True
        k.B(1, zb)
        if i == step6 // 2 and h % 2 == 0:
            zb = True
        k.B(0, zb)
    for _ in range(H - h - 1):
        k.W()
        k.B(0, zb=True)
    for _ in range(h + 1):
        k.W()
    if k.wq or k.nf != [n, n] or k.nb != [n, n]:
        raise AssertionError(f"DualPipe schedule of rank {r} is inconsistent")  # pragma: no cover
    return k.acts


class DualPipe(ScheduleBase):
    """DualPipe on ``pp`` devices: one simulated rank per device, each holding two stages."""

    name = "dualpipe"

    def held_stages(self, pp: int) -> list[tuple[int, ...]]:
        return [(r, pp - 1 - r) for r in range(pp)]

    def stage_replicas(self) -> int:
        return 2

    def overlaps_chunk_comm(self) -> bool:
        return True

    def actions(self, pp: int, micro_batches: int) -> list[list[Action]]:
        self.validate(pp, micro_batches)
        return [dualpipe_rank(pp, micro_batches, r) for r in range(pp)]

    def closed_form_bubble(self, stages: int, f: float, b: float, w: float, fb: float) -> float:
        return bubble_dualpipe(stages, fb, b, w)

    def memory_multiples(self, pp: int) -> dict[str, float]:
        return {"params": 2.0, "activations": float(pp + 1), "devices": float(pp)}
