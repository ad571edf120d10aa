"""DualPipeV: DualPipe on ``2 x devices`` ranks folded in half (the "cut-in-half" construction).

For ``pp`` devices the model is cut into 2 pp stages and DualPipe runs on 2 pp simulated ranks
with ``m`` micro-batches per direction (2m in all); rank ``r`` and its mirror ``2pp-1-r`` are
one device, which therefore holds stages r and 2pp-1-r, and the hop between stages pp-1 and pp
(the fold of the V) stays on one device and costs nothing. Same bubble as DualPipe (for its
2 pp stages), PP+1 stages' worth of activations, half the devices (README table).
"""

from __future__ import annotations

from simulator.training.schedules.base import Action
from simulator.training.schedules.dualpipe import DualPipe, dualpipe_rank

__all__ = ["DualPipeV"]


class DualPipeV(DualPipe):
    """DualPipe folded: 2 pp simulated ranks, the first pp of them the devices."""

    name = "dualpipev"

    def ranks(self, pp: int) -> int:
        return 2 * pp

    def device_of(self, pp: int, rank: int) -> int:
        return rank if rank < pp else 2 * pp - 1 - rank

    def held_stages(self, pp: int) -> list[tuple[int, ...]]:
        return [(r, 2 * pp - 1 - r) for r in range(pp)]

    def stage_replicas(self) -> int:
        return 1

    def free_hop(self, pp: int, stage: int) -> bool:
        return stage == pp - 1

    def actions(self, pp: int, micro_batches: int) -> list[list[Action]]:
        self.validate(pp, micro_batches)
        return [dualpipe_rank(2 * pp, 2 * micro_batches, r) for r in range(2 * pp)]

    def memory_multiples(self, pp: int) -> dict[str, float]:
        """``pp`` = pipeline stages (the README's PP); the devices are half of them."""
        return {"params": 2.0, "activations": float(pp + 1), "devices": pp / 2}
