"""Runs of decode steps advanced in closed form instead of one simpy event per step.

Between two events that change a batch (an arrival routed to the instance, a finish, a
preemption, a prompt admitted or a transfer landing), an instance that only decodes repeats the
same step with predictable shapes: every stream emits one token (no MTP draws), its context grows
by one, a stream needs a new KV block every 64 tokens, and the cached step cost changes only when
the mean context crosses a bucket of ``StepCostCache``. ``DecodeRun`` computes such a run of
steps at once, as arrays: times (``np.add.accumulate`` adds left to right, as the event loop
does), KV growth, costs, the step records and the inter-token gaps. The result is identical to
stepping, byte for byte (``tests/test_fastforward.py`` checks every example and hypothesis-drawn
deployments):

* a run stops before a step whose apply would finish a stream, whose KV growth would not fit
  (preemption), whose cost is not cached yet (the miss happens when stepping would make it) or,
  for a run that is not ``extended``, which starts at or after the next scheduled event of the
  whole simulation (``env.peek()``): nothing else can happen meanwhile, so the run is applied at
  once;
* an ``extended`` run (colocated instances, whose only contact with the rest is the router at
  arrivals) ignores the other instances' events: its steps are committed lazily
  (``advance_to``: before a router reads KV, and at its end), and an arrival routed to the
  instance ``cut``s it at the step in flight. Its steps' times are flagged in the step log; if one
  equals a time of another instance or an arrival, the order simpy would give two same-time
  events is not known here, and the run is repeated by stepping (``ambiguous_ties``).

The last step of a run is applied by the engine as usual (finishes, events, the next step).
"""

from __future__ import annotations

from heapq import heappush

import numpy as np
from simpy.events import NORMAL

from simulator.kv import BLOCK_TOKENS
from simulator.policies import bucket

#: the longest run computed at once (bounds the arrays; a longer run continues in the next one)
MAX_RUN_STEPS = 4096


def timeout_at(env, t_s: float):
    """A timeout firing at absolute time ``t_s`` (``env.timeout`` takes a delay, and ``now + (t -
    now)`` need not round back to ``t``). Pushed on simpy's queue as ``Environment.schedule`` does."""
    ev = env.event()
    ev._ok, ev._value = True, None
    heappush(env._queue, (t_s, NORMAL, next(env._eid), ev))
    return ev


def _key_runs(ctx: np.ndarray, first: int) -> list[tuple[int, int, int]]:
    """(start, end, bucket) runs of the bucketed mean context, steps ``first..len(ctx)-1``
    (``ctx`` is increasing, the bucket monotone: each boundary is found by bisection with the
    scalar ``bucket``, so the keys are the stepping engine's exactly)."""
    out = []
    j, last = first, len(ctx) - 1
    while j <= last:
        b = bucket(float(ctx[j]))
        lo, hi = j, last
        if bucket(float(ctx[hi])) != b:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if bucket(float(ctx[mid])) == b:
                    lo = mid
                else:
                    hi = mid
            hi = lo
        out.append((j, hi, b))
        j = hi + 1
    return out


class DecodeRun:
    """Steps ``0..end`` of one server's decode batch; step 0 is already formed and recorded
    (``row0``), steps ``1..end`` are formed and steps ``0..end-1`` applied here, step ``end`` is
    applied by the engine at ``end_s``."""

    __slots__ = ("server", "run", "n", "t", "dt", "comp", "comm", "used", "key_runs", "gen0", "blocks0",
                 "last_emit0", "row0", "end", "cursor", "extended", "cut_done", "pending_row")

    def __init__(self, server, run: np.ndarray, row0: int, extended: bool):
        self.server, self.run, self.n, self.row0, self.extended = server, run, int(run.size), row0, extended
        self.cursor = 0  # steps 1..cursor formed (and 0..cursor-1 applied) in the server's state
        self.cut_done = False
        self.pending_row = row0  # the row of the step formed last (its apply may still be internal)

    @property
    def end_s(self) -> float:
        return float(self.t[self.end + 1])

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, server, plan, dt0: float, horizon_s: float, extended: bool) -> "DecodeRun | None":
        """The run starting with the decode step ``plan`` (formed and costed now, ``dt0`` seconds),
        or None when it would be one step."""
        st, run = server.st, plan.run
        n = int(run.size)
        gen0 = st.s_gen[run]
        last = min(int((st.s_target[run] - gen0).min()) - 1, MAX_RUN_STEPS)  # apply 'last' may finish
        if last < 1:
            return None
        # mean context of steps 0..last, as Server._cost computes it
        total0 = int(st.s_base[run].sum()) + int(gen0.sum())
        ctx = (total0 + np.arange(last + 1, dtype=np.int64) * n).astype(np.float64) / n
        secs = np.empty(last + 1)
        comp = np.empty(last + 1)
        comm = np.empty(last + 1)
        secs[0] = dt0
        costs = server.costs
        bn = bucket(n)
        keys = []
        for a, b, cb in _key_runs(ctx, 1):
            hit = costs._cache.get(("d", bn, cb))
            if hit is None:  # a new shape: the stepping engine's miss, made when it would be
                last = a - 1
                break
            secs[a:b + 1], comp[a:b + 1], comm[a:b + 1] = hit
            keys.append((a, b, ("d", bn, cb)))
        if last < 1:
            return None
        # t[j]: start of step j; t[last + 1]: end of the last
        t = np.add.accumulate(np.concatenate(([server.sim.env.now], secs[:last + 1])))
        if not extended:
            last = min(last, int(np.searchsorted(t, horizon_s, side="left")) - 1)  # steps starting before it
        if last < 1:
            return None
        # KV growth of the steps 1..last: a stream holding B blocks needs one more at the step whose
        # token gen0 + j + 1 starts block B + 1, then every BLOCK_TOKENS steps
        blocks0 = st.s_blocks[run]
        growth = np.zeros(last + 1, dtype=np.int64)
        k = BLOCK_TOKENS * blocks0 - gen0
        k = k[k <= last]
        while k.size:
            growth += np.bincount(k, minlength=last + 1)
            k = k + BLOCK_TOKENS
            k = k[k <= last]
        kv = server.kv
        used = kv.used_blocks + np.cumsum(growth)
        over = np.flatnonzero(used > kv.capacity_blocks)
        if over.size:
            last = int(over[0]) - 1  # that step preempts: the engine forms it
        if last < 1:
            return None
        self = cls(server, run, plan.row, extended)
        self.end = last
        self.t, self.dt, self.comp, self.comm, self.used = t, secs, comp, comm, used
        self.key_runs = keys
        self.gen0, self.blocks0, self.last_emit0 = gen0, blocks0, st.s_last_emit_s[run]
        if extended:
            server.sim.log.flag(plan.row)
        return self

    # ------------------------------------------------------------------ committing
    def advance_to(self, now_s: float) -> None:
        """Put the steps formed (and applied) before ``now_s`` into the server's state and records."""
        j = min(int(np.searchsorted(self.t, now_s, side="left")) - 1, self.end)
        if j > self.cursor:
            self._commit(j)

    def finish(self) -> None:
        """Commit every step of the run (the engine then applies step ``end``)."""
        if self.end > self.cursor:
            self._commit(self.end)

    def cut(self, now_s: float) -> bool:
        """An arrival at ``now_s`` for this server: the run ends with the step in flight. Returns
        whether the end moved (the engine then waits for the new ``end_s``)."""
        self.cut_done = True
        self.advance_to(now_s)
        if self.cursor >= self.end:
            return False
        self.end = self.cursor
        return True

    def _commit(self, j: int) -> None:
        """Form steps cursor+1..j and apply steps cursor..j-1."""
        server, run, n = self.server, self.run, self.n
        sim, st = server.sim, server.st
        i0, t = self.cursor, self.t
        # applies i0..j-1: the inter-token gaps (step 0's streams may have emitted at other times)
        a = i0
        log = sim.log
        if a == 0:
            log.itl_add_s[self.row0] = sim.itl.add(t[1] - self.last_emit0)
            a = 1
        gaps = t[a + 1:j + 1] - t[a:j]  # the uniform gaps of applies a..j-1
        itl = gaps * n
        if gaps.size:
            sim.itl.add_steps(gaps, n)
            if i0 >= 1:  # the row of step i0 was appended by the previous commit
                log.itl_add_s[self.pending_row] = float(itl[0])
        st.s_gen[run] = self.gen0 + j
        st.s_last_emit_s[run] = t[j]
        # formations i0+1..j: KV, records, cache hits
        kv = server.kv
        kv.alloc(int(self.used[j] - kv.used_blocks))
        st.s_blocks[run] = np.maximum(self.blocks0, (self.gen0 + j + BLOCK_TOKENS) // BLOCK_TOKENS)
        sl = slice(i0 + 1, j + 1)
        itl_rows = np.zeros(j - i0)
        itl_rows[:-1] = itl[(i0 + 1) - a:]  # the row of step s (i0 < s < j) holds apply s; row j's comes later
        first = log.extend({"time_s": t[sl], "instance": server.index, "batch_size": n, "decode_seqs": n,
                            "prefill_tokens": 0, "new_tokens": n * server.k, "step_s": self.dt[sl],
                            "kv_used_fraction": self.used[sl] / kv.capacity_blocks, "compute_s": self.comp[sl],
                            "comm_s": self.comm[sl], "itl_add_s": itl_rows}, flagged=self.extended)
        hits = server.costs.hits
        for ka, kb, key in self.key_runs:
            lo, hi = max(ka, i0 + 1), min(kb, j)
            if hi >= lo:
                hits[key] += hi - lo + 1
        self.pending_row = first + (j - i0) - 1
        self.cursor = j
        sim.fast_forwarded_steps += j - i0


#: rows looked at a time by ``ambiguous_ties`` (bounds its temporary arrays)
_TIE_CHUNK_ROWS = 1 << 18


def ambiguous_ties(cols, order: np.ndarray, arrival_times_s: np.ndarray) -> bool:
    """Whether a flagged (extended fast-forward) step ends at the same time as a step of another
    instance or an arrival: simpy orders same-time events by when they were scheduled, which a
    run computed ahead does not reproduce (the run is then repeated by stepping). ``order``: the
    rows by end time (``steplog.end_order``); ``cols``: the run's ``steplog.StepTable`` (or a
    dict of its columns). Only the rows in ties are looked at beyond their end times."""
    flag = cols["flag"]
    if not flag.any():
        return False
    end = cols["step_s"]  # a fresh array from a StepTable: the end times are added into it
    if isinstance(cols, dict):
        end = end.copy()
    np.add(cols["time_s"], end, out=end)
    n = len(end)
    for i in range(0, n, _TIE_CHUNK_ROWS):  # a chunk of rows at a time: bounded temporaries
        if not arrival_times_s.size:
            break
        c = slice(i, i + _TIE_CHUNK_ROWS)
        fe = end[c][flag[c] != 0]
        idx = np.minimum(np.searchsorted(arrival_times_s, fe), arrival_times_s.size - 1)
        if (arrival_times_s[idx] == fe).any():
            return True
    same = np.empty(max(n - 1, 0), dtype=bool)  # a step ends when the one before it (by end time) does
    for i in range(0, n - 1, _TIE_CHUNK_ROWS):
        e = end[order[i:i + _TIE_CHUNK_ROWS + 1]]
        same[i:i + len(e) - 1] = e[1:] == e[:-1]
    del end
    pos = np.flatnonzero(same)
    if not pos.size:
        return False
    members = np.union1d(pos, pos + 1)  # positions (by end time) of steps in a tie
    starts = np.flatnonzero(np.concatenate(([True], ~same[members[1:] - 1])))  # first of each tie
    rows = order[members]
    inst = cols.take("instance", rows) if hasattr(cols, "take") else cols["instance"][rows]
    f = flag[rows]
    multi = np.minimum.reduceat(inst, starts) != np.maximum.reduceat(inst, starts)
    return bool((multi & (np.maximum.reduceat(f, starts) != 0)).any())
