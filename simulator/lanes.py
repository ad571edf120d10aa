"""The running decode streams' per-step state, kept aligned with ``Server.run`` (``RunLanes``).

A decode instance of the H800 example steps ~2k streams one step at a time (MTP draws leave no
closed form). Gathering each stream's generated tokens, target and KV blocks from the run's
per-stream arrays (``simulator.requests.RunState``) and scattering them back every step is most
of a step's array work; here they are held in arrays in ``Server.run``'s order and updated in
place. Joiners are appended, finishers removed with the step's mask. KV blocks are held as the
tokens they hold (``cap``: blocks x ``BLOCK_TOKENS``): a step of at most ``BLOCK_TOKENS`` tokens
grows a stream by at most one block (a stream holds a block for every token it has, so
``cap >= gen`` before the step), exactly where ``min(gen + tokens, target) > cap``
(``Server._grow_lanes``): three array calls instead of ``blocks_after_step``'s five. A depth-1
MTP step adds its draws to ``gen`` uncapped (``Server._decode_lanes``): only the step's finishers
can pass their targets, and they leave the lanes in that step, capped where their state is
written back (``Server._finish_lanes``; all of ``gen`` capped before ``drop``).

While a ``RunLanes`` is aligned (``run is server.run``), ``RunState.s_gen``, ``s_blocks`` and
``s_last_emit_s`` of the streams in ``run`` are stale: the lanes hold them. They are written
back (``flush``) before anything else reads them (a preemption, the end of the run) and for each
finisher before it finishes. The last emission of the ``fresh`` leading streams is ``t`` (every
stream that ran in the lanes' last step emitted then); joiners since keep theirs in ``RunState``.
A stream that finishes on the lanes (``Server._finish_lanes``) is marked done and its KV freed at
once; the rest of its state (``s_gen``: its target, as the step capped it; ``s_last_emit_s`` and
``finish_s``: the step's time; ``s_blocks``, ``streams_left``, ``prompt_blocks``: 0) is written a
batch at a time (``write_finished``: on ``flush``, every ``FINISHED_BATCH`` finishes and before
the progress report reads ``finish_s``): nothing reads a finished one-sample request's state
before then.

Only one-sample requests without a prefix cache, sessions or closed-form runs use lanes
(``Simulation`` decides); the arithmetic is the reference path's (``Server.grow_decodes``,
``Server._apply``): same integers, same gaps, same order (``tests/test_lanes.py``).
"""

from __future__ import annotations

from array import array

import numpy as np

from simulator.fastforward import isum
from simulator.kv import BLOCK_SHIFT, BLOCK_TOKENS

_sum = np.add.reduce
#: finished streams whose state ``RunLanes.finished`` holds before writing it
FINISHED_BATCH = 1 << 15


class RunLanes:
    """Generated tokens, targets and KV capacity (blocks x ``BLOCK_TOKENS``) of ``run``'s streams,
    in its order; ``held_sum``: their blocks."""

    __slots__ = ("st", "run", "gen", "target", "cap", "held_sum", "fresh", "t", "done_ids", "done_at", "_sum32",
                 "block_tokens")

    def __init__(self, st, max_streams: int):
        """``max_streams``: the most streams the lanes hold (the instance's batch cap)."""
        self.st = st
        # up to this many streams' generated tokens (each at most its target) are summed in int32,
        # which cannot overflow then (numpy's int32 reduction is the quicker; the same integer); -1: never
        top = int(np.maximum.reduce(st.s_target)) if st.s_target.size else 0
        self._sum32 = max_streams if st.s_gen.dtype == np.int32 and max_streams * top < 1 << 31 else -1
        #: ``BLOCK_TOKENS`` as a scalar of the KV capacities' dtype (``over * block_tokens`` keeps it)
        self.block_tokens = st.s_blocks.dtype.type(BLOCK_TOKENS)
        self.run = None  # the Server.run these lanes are aligned with (None: RunState holds everything)
        self.done_ids, self.done_at = array("q"), []  # finished streams not written yet; (time, count) per step

    def gen_sum(self) -> int:
        """The streams' generated tokens, summed (exact)."""
        gen = self.gen
        return int(_sum(gen, dtype=np.int32 if gen.size <= self._sum32 else np.int64))

    def finished(self, ended: list[int], now: float) -> None:
        """Streams ``ended`` (marked done, KV freed) finished at ``now``: their other state is
        written later (``write_finished``)."""
        self.done_ids.extend(ended)
        self.done_at.append((now, len(ended)))
        if len(self.done_ids) >= FINISHED_BATCH:
            self.write_finished()

    def write_finished(self) -> None:
        """Write the held state of the finished streams (``finished``), as ``Server._finish_stream``
        leaves it: generated tokens at the target, last emission and finish at the step's time,
        no KV, no live streams."""
        if not self.done_ids:
            return
        st = self.st
        ids = np.frombuffer(self.done_ids, dtype=np.int64)
        at = np.repeat(np.array([t for t, _ in self.done_at]), [n for _, n in self.done_at])
        st.s_gen[ids] = st.s_target[ids]
        st.s_last_emit_s[ids] = at
        st.finish_s[ids] = at  # one-sample requests: request id == stream id
        st.s_blocks[ids] = 0
        st.streams_left[ids] = 0
        st.prompt_blocks[ids] = 0
        self.done_ids, self.done_at = array("q"), []

    def load(self, run: np.ndarray) -> None:
        """Align with ``run``, reading its streams' state from ``RunState`` (authoritative now)."""
        st = self.st
        self.run = run
        blocks = st.s_blocks.take(run)
        self.gen, self.target, self.cap = st.s_gen.take(run), st.s_target.take(run), blocks << BLOCK_SHIFT
        self.held_sum = int(_sum(blocks))
        self.fresh, self.t = 0, 0.0

    def extend(self, run: np.ndarray, joiners) -> None:
        """``run`` is the aligned run with ``joiners`` (stream ids, RunState authoritative) appended."""
        st = self.st
        if isinstance(joiners, (int, np.integer)):  # one joiner: its one-element slices appended
            j = slice(joiners, joiners + 1)
            self.gen = np.concatenate((self.gen, st.s_gen[j]))
            self.target = np.concatenate((self.target, st.s_target[j]))
            self.cap = np.concatenate((self.cap, st.s_blocks[j] << BLOCK_SHIFT))
            self.held_sum += st.s_blocks.item(joiners)
        else:
            b = st.s_blocks.take(joiners)
            self.gen = np.concatenate((self.gen, st.s_gen.take(joiners)))
            self.target = np.concatenate((self.target, st.s_target.take(joiners)))
            self.cap = np.concatenate((self.cap, b << BLOCK_SHIFT))
            self.held_sum += isum(b)  # a few joiners: Python's sum (numpy's reduction of a few int32 costs more)
        self.run = run

    def flush(self) -> None:
        """Write the lanes back to ``RunState`` and let go of the run."""
        self.write_finished()
        run = self.run
        if run is None:
            return
        st = self.st
        if run.size:
            st.s_gen[run] = self.gen
            st.s_blocks[run] = self.cap >> BLOCK_SHIFT
            if self.fresh:
                st.s_last_emit_s[run[:self.fresh]] = self.t
        self.run = None
        self.gen = self.target = self.cap = None

    def gaps(self, now: float) -> np.ndarray:
        """Each stream's gap since its last emission (``now - last emit``), as the reference computes it."""
        run, fresh = self.run, self.fresh
        gaps = np.empty(run.size)
        if fresh:
            gaps[:fresh] = now - self.t
        np.subtract(now, self.st.s_last_emit_s.take(run[fresh:]), out=gaps[fresh:])
        return gaps

    def drop(self, fin: np.ndarray, run: np.ndarray, now: float, idx: np.ndarray | None = None) -> np.ndarray:
        """Write back the finishers ``fin`` (mask; ``idx``: its nonzero positions, when known) as
        having emitted ``now``; returns their stream ids."""
        st = self.st
        if idx is None:
            idx = fin.nonzero()[0]
        done = run.take(idx)
        b = self.cap.take(idx) >> BLOCK_SHIFT
        st.s_gen[done] = self.gen.take(idx)
        st.s_blocks[done] = b
        st.s_last_emit_s[done] = now
        self.held_sum -= int(_sum(b))
        return done

    def keep(self, run: np.ndarray, keep: np.ndarray) -> None:
        """Align with ``run``, the aligned run less the finishers (``keep``: the mask of the rest)."""
        self.gen, self.target, self.cap = self.gen[keep], self.target[keep], self.cap[keep]
        self.run = run
        self.fresh = run.size  # every stream that stays ran in this step
