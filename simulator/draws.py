"""MTP acceptance draws read ahead in chunks (``AcceptanceDraws``).

A stepped decode step of the H800 example draws one uniform per stream (~2k) from the run's
``acceptance`` stream; one ``Generator.random`` call per step costs more in call overhead and a
step's comparisons than in generating the numbers. NumPy's ``random`` fills doubles one 64-bit
output at a time with no carry between calls, so ``random(a)`` then ``random(b)`` gives the
same numbers as ``random(a + b)``: here they are generated a chunk at a time and handed out in
the same order, and a depth-1 step's increments ``1 + (u < acceptance)`` are computed for the
whole chunk at once. The stream is read only through this object (``Server._draw``), so every
step gets exactly the numbers it got when it called the generator itself
(``tests/test_draws.py``).
"""

from __future__ import annotations

import numpy as np

#: uniforms generated at a time
CHUNK = 1 << 16


class AcceptanceDraws:
    """The uniforms of ``rng`` in order, a chunk generated at a time."""

    __slots__ = ("rng", "_u", "_pos", "_inc", "_inc_key")

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self._u = np.empty(0)
        self._pos = 0
        self._inc, self._inc_key = None, None

    def _ensure(self, n: int) -> int:
        """Make the next ``n`` uniforms lie in the chunk; returns where they start."""
        pos = self._pos
        if pos + n > self._u.size:
            rest = self._u[pos:]
            self._u = np.concatenate((rest, self.rng.random(max(CHUNK, n))))
            self._pos = pos = 0
            self._inc_key = None
        return pos

    def uniforms(self, n: int) -> np.ndarray:
        """The next ``n`` uniforms (what ``rng.random(n)`` would return now; a view, read-only use)."""
        pos = self._ensure(n)
        self._pos = pos + n
        return self._u[pos:pos + n]

    def increments(self, n: int, acceptance: float, dtype) -> np.ndarray:
        """``1 + (u < acceptance)`` as ``dtype`` for the next ``n`` uniforms u (a view, read-only use):
        the tokens a depth-1 MTP step emits per stream before the cap."""
        pos = self._ensure(n)
        key = (acceptance, np.dtype(dtype))
        if self._inc_key != key:
            inc = np.less(self._u, acceptance).astype(dtype)
            inc += 1
            self._inc, self._inc_key = inc, key
        self._pos = pos + n
        return self._inc[pos:pos + n]
