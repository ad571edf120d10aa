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
    """The uniforms of ``rng`` in order, a chunk generated at a time into reused buffers (a fresh
    array per chunk would be a fresh mapping of pages: ~1 s of page faults over a million-request
    run)."""

    __slots__ = ("rng", "_u", "_size", "_pos", "_acc", "_inc", "_inc_key")

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self._u = np.empty(0)  # the uniforms: those not handed out yet are [_pos, _size)
        self._size = self._pos = 0
        self._acc = np.empty(0, dtype=bool)
        self._inc, self._inc_key = np.empty(0, dtype=np.int32), None

    def _ensure(self, n: int) -> int:
        """Make the next ``n`` uniforms lie in the buffer; returns where they start."""
        pos, size = self._pos, self._size
        if pos + n > size:
            rest = size - pos
            size = rest + max(CHUNK, n)
            if self._u.size < size:
                u = np.empty(size)
                u[:rest] = self._u[pos:pos + rest]
                self._u = u
            else:
                self._u[:rest] = self._u[pos:pos + rest]  # numpy copies overlapping ranges correctly
            self.rng.random(out=self._u[rest:size])
            self._size, self._pos = size, 0
            pos = 0
            self._inc_key = None
        return pos

    def uniforms(self, n: int) -> np.ndarray:
        """The next ``n`` uniforms (what ``rng.random(n)`` would return now; a view, read it at once)."""
        pos = self._ensure(n)
        self._pos = pos + n
        return self._u[pos:pos + n]

    def increments(self, n: int, acceptance: float, dtype) -> np.ndarray:
        """``1 + (u < acceptance)`` as ``dtype`` for the next ``n`` uniforms u (a view, read it at once):
        the tokens a depth-1 MTP step emits per stream before the cap."""
        pos = self._ensure(n)
        key = (acceptance, dtype)
        if self._inc_key != key:
            size = self._size
            if self._acc.size < size:
                self._acc = np.empty(self._u.size, dtype=bool)
            if self._inc.size < size or self._inc.dtype != dtype:
                self._inc = np.empty(self._u.size, dtype=dtype)
            acc, inc = self._acc[:size], self._inc[:size]
            np.less(self._u[:size], acceptance, out=acc)
            np.add(acc, 1, out=inc, dtype=inc.dtype)
            self._inc_key = key
        self._pos = pos + n
        return self._inc[pos:pos + n]
