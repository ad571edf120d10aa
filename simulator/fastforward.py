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

The last step of a run is applied in closed form too (``DecodeRun.apply_last``: one common gap, the
finishes through the server's own finish methods) where nothing else acts at a finish (one sample,
no trace, sessions or prefix cache), and when nothing else waits on the server the next step is
formed as ``grow_decodes`` forms it (``form_next``); otherwise the engine applies and forms as usual.
A cut run's process is moved to its new end (``wait_instead``) rather than interrupted.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from heapq import heappush

import numpy as np
from simpy.events import NORMAL

from simulator.batching import StepPlan
from simulator.kv import BLOCK_SHIFT, BLOCK_TOKENS, blocks_after_step
from simulator.policies import EXACT_BELOW, LOG_BUCKET_RATIO, bucket
from simulator.steplog import CHUNK_ROWS, end_times

#: the smallest element and the sum (ufunc reductions, without ``ndarray.min``/``sum``'s Python wrappers)
_min, _sum = np.minimum.reduce, np.add.reduce
#: arrays up to this size are reduced as Python lists (``isum``, ``_imin``)
_SMALL = 64


def isum(a: np.ndarray) -> int:
    """The sum of an integer array, exact: over a short one, Python's ``sum`` of its list (a numpy
    reduction of a few int32 costs ~1 us, mostly set-up)."""
    return sum(a.tolist()) if a.size <= _SMALL else int(_sum(a))


def _imin(a: np.ndarray) -> int:
    """The smallest element of a non-empty integer array (``isum``'s short-array shortcut)."""
    return min(a.tolist()) if a.size <= _SMALL else int(_min(a))
#: up to this many streams finishing in one step are finished with Python ints (as ``Server._apply``)
_FEW = 8

#: the longest run computed at once (bounds the arrays; a longer run continues in the next one)
MAX_RUN_STEPS = 4096
#: steps 0..MAX_RUN_STEPS + 1 of a run: their quotients and remainders by BLOCK_TOKENS (``_grown``)
_STEP_Q, _STEP_R = np.divmod(np.arange(MAX_RUN_STEPS + 2), BLOCK_TOKENS)


def timeout_at(env, t_s: float):
    """A timeout firing at absolute time ``t_s`` (``env.timeout`` takes a delay, and ``now + (t -
    now)`` need not round back to ``t``). Pushed on simpy's queue as ``Environment.schedule`` does."""
    ev = env.event()
    ev._ok, ev._value = True, None
    heappush(env._queue, (t_s, NORMAL, next(env._eid), ev))
    return ev


def wait_instead(proc, ev) -> None:
    """Make process ``proc``, waiting on an event, wait on ``ev`` instead (a run cut short: its
    end moves earlier). What ``Process.interrupt`` and a new ``yield`` would do, without the
    interruption event and the exception thrown into the generator; ``ev`` is scheduled now, not
    after the interruption (an order that can differ only for events at the same time as the run's
    last step, which ``ambiguous_ties`` sends to stepping)."""
    proc._target.callbacks.remove(proc._resume)
    ev.callbacks.append(proc._resume)
    proc._target = ev


def _bucket_end(ctx_of, j: int, last: int, b: int) -> int:
    """The last step ``hi`` of ``j..last`` whose bucketed mean context is ``b`` (that of step ``j``;
    ``ctx_of(step)`` is increasing and the bucket monotone in it). Above the exact range the mean
    context grows by one a step, so the grid's next edge gives ``hi`` up to rounding, settled with
    the scalar ``bucket`` itself (the keys are the stepping engine's exactly); below it, bisection."""
    if bucket(ctx_of(last)) == b:
        return last
    x0 = ctx_of(j)
    if x0 > EXACT_BELOW:
        edge = math.exp((round(math.log(x0) / LOG_BUCKET_RATIO) + 0.5) * LOG_BUCKET_RATIO)  # where the bucket moves up
        hi = min(max(j + int(edge - x0), j), last - 1)
        while bucket(ctx_of(hi)) != b:  # hi is past the bucket's end
            hi -= 1
        while bucket(ctx_of(hi + 1)) == b:  # hi + 1 <= last: its bucket differs
            hi += 1
        return hi
    lo, hi = j, last
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bucket(ctx_of(mid)) == b:
            lo = mid
        else:
            hi = mid
    return lo


def _cached_steps(costs, n: int, total0: int, last: int) -> list[tuple[int, int, tuple, tuple]]:
    """(first, last step, key, cached cost) runs of steps ``1..`` of a decode run of ``n`` streams
    with ``total0`` context tokens at step 0, up to ``last`` or the step before the first whose cost
    is not cached (the stepping engine's miss, made when it would be). The mean context of step
    ``j`` is ``(total0 + j n) / n``, as ``Server._cost`` computes it."""
    if last < 1:
        return []
    cache = costs._cache
    bn = costs._fine.get(n)  # ``bucket(n)``, memoised by the cache (``StepCostCache.cost``)
    if bn is None:
        bn = bucket(n)

    def ctx_of(j: int) -> float:
        return (total0 + j * n) / n  # exact integers, one correctly rounded division: numpy's value

    b = bucket((total0 + n) / n)
    if bucket((total0 + last * n) / n) == b:  # the usual run: one key for steps 1..last (the bucket is monotone)
        key = ("d", bn, b)
        hit = cache.get(key)
        return [] if hit is None else [(1, last, key, hit)]
    out = []
    j = 1
    while j <= last:
        b = bucket(ctx_of(j))
        key = ("d", bn, b)
        hit = cache.get(key)
        if hit is None:
            break
        hi = _bucket_end(ctx_of, j, last, b)
        out.append((j, hi, key, hit))
        j = hi + 1
    return out


def _start_times(key_runs: list, last: int, now_s: float, dt0_s: float) -> np.ndarray:
    """``t[j]``, the start of step ``j`` of a run (``t[last + 1]``: the end of step ``last``): ``now_s``
    then the step seconds (``dt0_s``, then the cached seconds of steps ``1..last``) added left to right,
    as the event loop adds them (``np.add.accumulate`` is sequential)."""
    secs = np.empty(last + 2)
    secs[0], secs[1] = now_s, dt0_s
    for a, b, _, hit in key_runs:  # steps a..b (1 <= a <= b <= last, covering 1..last) at index j + 1
        secs[a + 1:b + 2] = hit[0]
    return np.add.accumulate(secs)


def _grown_at(first: list, step: int) -> int:
    """``_grown`` at one step, ``first`` as a sorted Python list (no numpy call)."""
    q, r = divmod(step, BLOCK_TOKENS)
    return len(first) * q + bisect_right(first, r)


#: no KV growth in a run (``DecodeRun.grows``)
_NO_GROWTH = np.empty(0, dtype=np.int64)
#: no inter-token gaps (``DecodeRun._commit``)
_NO_GAPS = np.empty(0)


def _grown(first: np.ndarray, steps):
    """KV blocks a run's streams have grown by at ``steps`` (an int or an array of them): each
    stream grows at its first growth step (``first``, sorted, each in 1..BLOCK_TOKENS) and every
    BLOCK_TOKENS steps after; at step 64 q + r that is q growths of every stream and one more of
    those whose first is <= r."""
    q, r = divmod(steps, BLOCK_TOKENS)
    return first.size * q + first.searchsorted(r, side="right")


class DecodeRun:
    """Steps ``0..end`` of one server's decode batch; step 0 is already formed and recorded
    (``row0``), steps ``1..end`` are formed and steps ``0..end-1`` applied here, step ``end`` is
    applied by the engine at ``end_s``."""

    __slots__ = ("server", "run", "n", "t", "key_runs", "gen0", "blocks0", "last_emit0", "row0", "end",
                 "cursor", "extended", "cut_done", "pending_row", "used0", "grows", "target", "left0", "finish_step", "grows_at",
                 "gen_end", "keep", "kept", "deferred")

    def __init__(self, server, run: np.ndarray, row0: int, extended: bool):
        self.server, self.run, self.n, self.row0, self.extended = server, run, int(run.size), row0, extended
        self.cursor = 0  # steps 1..cursor formed (and 0..cursor-1 applied) in the server's state
        self.keep = self.kept = None  # apply_last: the streams that did not finish (mask, ids)
        self.cut_done = False
        self.pending_row = row0  # the row of the step formed last (its apply may still be internal)
        # an extended run of a chained server (``Server._loop``: its last step is applied by ``apply_last``,
        # which writes every stream's generated tokens and last emission time, and nothing else reads
        # those of its streams before): commits leave those two columns to it
        self.deferred = extended and server._chain

    @property
    def end_s(self) -> float:
        return self.t.item(self.end + 1)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, server, plan, dt0: float, horizon_s: float, extended: bool) -> "DecodeRun | None":
        """The run starting with the decode step ``plan`` (formed and costed now, ``dt0`` seconds,
        ``plan.dec_tokens`` context tokens), or None when it would be one step."""
        st, run = server.st, plan.run
        gen0 = st.s_gen[run] if plan.gen is None else plan.gen
        target = st.s_target[run] if plan.target is None else plan.target
        left0 = target - gen0  # tokens each stream still owes
        finish_step = last = _imin(left0) - 1  # apply 'last' may finish
        if last < 1:
            return None
        last = min(last, MAX_RUN_STEPS)
        keys = _cached_steps(server.costs, run.size, plan.dec_tokens, last)
        if not keys:
            return None
        last = keys[-1][1]
        # t[j]: start of step j; t[last + 1]: end of the last (added left to right, as the event loop does)
        t = _start_times(keys, last, server.sim.env.now, dt0)
        if not extended:
            last = min(last, int(t.searchsorted(horizon_s, side="left")) - 1)  # steps starting before it
            if last < 1:
                return None
        # KV growth of the steps 1..last: a stream holding B blocks needs one more at the step whose
        # token gen0 + j + 1 starts block B + 1 (its first growth, 1..BLOCK_TOKENS: grow_decodes
        # reserved step 0's), then every BLOCK_TOKENS steps; ``grows``: the first growths, sorted
        # (the blocks in use at step j are ``used0`` + ``_grown(grows, j)``), empty when none is due
        blocks0 = st.s_blocks[run] if plan.blocks is None else plan.blocks
        k = BLOCK_TOKENS * blocks0
        k -= gen0
        k.sort()
        k_first = k.item(0)
        if k_first < 1 or k.item(-1) > BLOCK_TOKENS:
            return None  # not a batch grow_decodes reserved: step instead
        if k_first > last:
            k = _NO_GROWTH
        kv = server.kv
        room = kv.capacity_blocks - kv.used_blocks
        grows_at = k.tolist()
        if grows_at and _grown_at(grows_at, last) > room:  # the step of growth room + 1 preempts: the engine forms it
            last = int(_grown(k, np.arange(1, last + 1)).searchsorted(room, side="right"))
            if last < 1:
                return None
        self = cls(server, run, plan.row, extended)
        self.end = last
        self.t = t
        self.key_runs = keys
        self.used0, self.grows, self.grows_at = kv.used_blocks, k, grows_at
        # when every stream of step 0 last emitted at one time (the usual case), that time as a float
        last_emit0 = plan.emitted_s
        if last_emit0 is None:
            last_emit0 = st.s_last_emit_s[run]
            emits = last_emit0.tolist()
            if emits.count(emits[0]) == len(emits):
                last_emit0 = emits[0]
        self.gen0, self.blocks0, self.last_emit0 = gen0, blocks0, last_emit0
        self.target, self.left0, self.finish_step = target, left0, finish_step
        if extended:
            server.sim.log.flag(plan.row)
        return self

    # ------------------------------------------------------------------ past a finish
    def apply_last(self) -> bool:
        """Apply the run's last step ``end`` (committed, due now) as ``Server._apply`` does a one-token
        decode step, in closed form: every stream last emitted at ``t[end]`` (one common gap), generated
        ``gen0 + end + 1`` <= target, and those owing ``end + 1`` tokens finish (through
        ``Server._finish_requests``/``_finish_stream``, as ``_apply`` calls them). False (nothing
        done) for a run cut in its first step: the engine applies it."""
        end = self.end
        if end < 1 or self.cursor != end:
            return False
        server, run = self.server, self.run
        st, sim = server.st, server.sim
        now = sim.env.now
        sim.log.itl_add_s[self.pending_row] = sim.itl.add_uniform(now - self.t.item(end), self.n)
        st.s_last_emit_s[run] = now
        self.gen_end = gen = self.gen0 + (end + 1)
        st.s_gen[run] = gen
        if end == self.finish_step:  # streams owing end + 1 tokens finish
            fin = self.left0 <= end + 1
            done = run[fin]
            few = done.tolist() if len(done) <= _FEW else None
            if len(done) > 1:
                server._finish_requests(few if few is not None else done, now)
            else:
                server._finish_stream(few[0], now)
            if server.run is run:
                self.keep = keep = ~fin
                self.kept = kept = server.run = run[keep]
                if server._base_of is run:  # the streams' prompt-token sum (Server._cost)
                    base = st.s_base
                    gone = sum([base.item(s) for s in few]) if few is not None else isum(base[done])
                    server._base_of, server._base_tokens = kept, server._base_tokens - gone
            else:
                server.run = server.run[~st.s_done[server.run]]
        if server.pending:
            server.start_pending()
        return True

    def form_next(self) -> StepPlan | None:
        """After ``apply_last``, with nothing but the decode streams on the server (``Server._busy``
        false, checked by the caller): the next step as the batch policy forms it then
        (``grow_decodes``: each stream's KV for one more token), when it fits without a preemption.
        None (nothing done): the engine forms it."""
        server = self.server
        kept = server.run
        if not kept.size:
            return None
        if kept is self.run:
            gen, target = self.gen_end, self.target
        elif self.keep is not None and kept is self.kept:
            keep = self.keep
            gen, target = self.gen_end[keep], self.target[keep]
        else:
            return None
        st, kv = server.st, server.kv
        held = st.s_blocks[kept]
        blocks = blocks_after_step(gen, 1, target, held)  # gen + 1 <= target for every stream kept
        grow = isum(blocks) - isum(held)
        if grow:
            if grow > kv.capacity_blocks - kv.used_blocks:
                return None  # a preemption: the engine forms that step
            kv.alloc(grow)
            st.s_blocks[kept] = blocks
        plan = StepPlan(kept)
        plan.gen, plan.target = gen, target
        # every stream kept emitted now (``apply_last``), and holds ``blocks`` (a fresh array)
        plan.emitted_s, plan.blocks = float(server.sim.env.now), blocks
        return plan

    # ------------------------------------------------------------------ committing
    def advance_to(self, now_s: float) -> None:
        """Put the steps formed (and applied) before ``now_s`` into the server's state and records."""
        j = min(int(self.t.searchsorted(now_s, side="left")) - 1, self.end)
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
        """Form steps cursor+1..j and apply steps cursor..j-1 (a ``deferred`` run leaves the streams'
        generated tokens and last emission times to its last commit's ``apply_last``)."""
        server, run, n = self.server, self.run, self.n
        sim, st = server.sim, server.st
        i0, t = self.cursor, self.t
        # applies i0..j-1: the inter-token gaps (step 0's streams may have emitted at other times)
        a = i0
        log = sim.log
        if a == 0:
            e0 = self.last_emit0
            if type(e0) is float:  # one gap for every stream: what ``ItlHistogram.add`` does with one
                log.itl_add_s[self.row0] = sim.itl.add_uniform(t.item(1) - e0, n)
            else:
                log.itl_add_s[self.row0] = sim.itl.add(t[1] - e0)
            a = 1
        itl = _NO_GAPS  # rows i0+1..j-1 hold applies i0+1..j-1; row j's gap is added when step j is applied
        if j > a:
            gaps = t[a + 1:j + 1] - t[a:j]  # the uniform gaps of applies a..j-1
            itl = gaps * n
            sim.itl.add_steps(gaps, n)
            if i0 >= 1:  # the row of step i0 was appended by the previous commit
                log.itl_add_s[self.pending_row] = itl.item(0)
                itl = itl[1:]
        if not self.deferred:
            st.s_gen[run] = self.gen0 + j
            st.s_last_emit_s[run] = t.item(j)
        # formations i0+1..j: KV, records, cache hits
        kv, grows = server.kv, self.grows
        lo = i0 + 1
        used = self.used0
        if grows.size:
            grows_at = self.grows_at
            grown = _grown_at(grows_at, j)
            if grown != _grown_at(grows_at, i0):  # growth within i0+1..j: the blocks in use step by step
                # (``_grown`` at steps lo..j, their quotients and remainders by BLOCK_TOKENS sliced)
                used = used + (len(grows_at) * _STEP_Q[lo:j + 1] + grows.searchsorted(_STEP_R[lo:j + 1], side="right"))
                new_used = used.item(-1)
            else:
                used += grown
                new_used = used
            if new_used != kv.used_blocks:
                kv.alloc(new_used - kv.used_blocks)
                blocks = self.gen0 + (j + BLOCK_TOKENS)
                blocks >>= BLOCK_SHIFT
                np.maximum(blocks, self.blocks0, out=blocks)
                st.s_blocks[run] = blocks
        hits, codes = server.costs.hits, []
        for ka, kb, key, hit in self.key_runs:
            lo_k, hi_k = max(ka, lo), min(kb, j)
            if hi_k >= lo_k:
                hits[key] += hi_k - lo_k + 1
                codes.append((log.decode_code(server.index, n, server.k, key, hit), hi_k - lo_k + 1))
        first = log.extend_coded(t[lo:j + 1], used, itl, codes, self.extended)
        self.pending_row = first + (j - i0) - 1
        self.cursor = j
        sim.fast_forwarded_steps += j - i0


def ambiguous_ties(cols, order: np.ndarray, arrival_times_s: np.ndarray) -> bool:
    """Whether a flagged (extended fast-forward) step ends at the same time as a step of another
    instance or an arrival: simpy orders same-time events by when they were scheduled, which a
    run computed ahead does not reproduce (the run is then repeated by stepping). ``order``: the
    rows by end time (``steplog.end_order``); ``cols``: the run's ``steplog.StepTable`` (or a
    dict of its columns). End times are computed a chunk of rows at a time (``end_times``);
    only the rows in ties are looked at beyond them."""
    flag = cols["flag"]
    if not flag.any():
        return False
    n = len(order)
    for i in range(0, n, CHUNK_ROWS):  # a chunk of rows at a time: bounded temporaries
        if not arrival_times_s.size:
            break
        f = np.flatnonzero(flag[i:i + CHUNK_ROWS])
        if not f.size:
            continue
        fe = end_times(cols, f + i)
        idx = np.minimum(np.searchsorted(arrival_times_s, fe), arrival_times_s.size - 1)
        if (arrival_times_s[idx] == fe).any():
            return True
    same = np.empty(max(n - 1, 0), dtype=bool)  # a step ends when the one before it (by end time) does
    for i in range(0, n - 1, CHUNK_ROWS):
        e = end_times(cols, order[i:i + CHUNK_ROWS + 1])
        same[i:i + len(e) - 1] = e[1:] == e[:-1]
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
