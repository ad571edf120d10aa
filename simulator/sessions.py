"""Closed-loop multi-turn sessions: a session's next turn arrives after its previous answer.

``workload.prefix: {kind: sessions}`` (``simulator.prefix_workload``) lays the turns out up
front (lengths, chains); only their arrival times depend on the run: turn k + 1 arrives
``think_s`` after turn k finishes. ``SessionTurns`` holds the links and, when the engine
reports a finished request, schedules its successor with one simpy timeout (no process per
session). A turn whose predecessor never finishes never arrives (its ``arrival_s`` stays NaN).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SessionTurns"]


class SessionTurns:
    """The next turn of each request (-1: none) and its think time; first turns in arrival order."""

    __slots__ = ("sim", "next_turn", "think_s", "first_turns", "released")

    def __init__(self, sim, next_turn: np.ndarray, think_s: np.ndarray):
        self.sim = sim
        self.next_turn = next_turn.tolist()
        self.think_s = think_s.tolist()
        self.first_turns = np.flatnonzero(~np.isnan(sim.st.arrival_s)).tolist()
        self.released = 0

    def finished(self, r: int, now: float) -> None:
        """Request r finished at ``now``: its session's next turn arrives after the think time."""
        n = self.next_turn[r]
        if n < 0:
            return
        sim = self.sim
        think = self.think_s[n]
        sim.st.arrival_s[n] = now + think
        self.released += 1
        sim.env.timeout(think).callbacks.append(lambda _event, n=n: sim.arrive(n))
