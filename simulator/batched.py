"""Per-request paths of the serving engine as array updates, for batches of one-sample requests.

A prefill step of the H800 example admits ~20 queued requests and hands ~20 prefilled ones to
the decode instance, where each is offered (``Server.offer``), its KV transfer starts when it fits
(``Server.start_pending``, FCFS) and ends (``Simulation._transfer_done``). These functions do
the same for a whole batch with a few numpy calls instead of one Python round per request. The
per-request code in ``simulator.engine`` stays the reference and handles everything else
(several samples, prefix caches, traces, requests already finished). Same state, same order,
same integers: ``tests/test_batched_paths.py`` and ``benchmarks/compare_simulate_outputs.py``.
"""

from __future__ import annotations

import itertools

import numpy as np

from simulator.kv import BLOCK_SHIFT, BLOCK_TOKENS, stream_blocks

#: fewer requests than this go through the per-request path
MIN_BATCH = 4
#: queued requests ``admit_many`` looks at (a prefill step of the H800 example admits ~20)
_WINDOW = 256
#: requests admitted (``admit_few``) or started (``start_few``) one at a time with Python ints before
#: the array paths take the rest: below ~30 the loop is the quicker (the H800 example: ~7 a step)
FEW = 24
#: pending requests from which ``Server.start_pending`` takes the array path (``start_pending_many``)
MANY_PENDING = 32

_sum = np.add.reduce


def _stream_blocks(gen: np.ndarray) -> np.ndarray:
    """Blocks of one-sample streams with ``gen`` generated tokens: ceil(max(gen, 1) / B)."""
    b = np.maximum(gen, 1)
    b += BLOCK_TOKENS - 1
    b >>= BLOCK_SHIFT
    return b


def _prompt_blocks(st, idx: np.ndarray) -> np.ndarray:
    """``st.prompt_blocks_need`` (an ``array`` of C ints) of requests ``idx``."""
    need = st.prompt_blocks_need
    return np.frombuffer(need, dtype=need.typecode)[idx]


def batch_of(server, rs) -> np.ndarray | None:
    """Requests ``rs`` at ``server`` as an index array when they take the array path (many, one
    sample each, no prefix cache, none finished), else None."""
    st = server.st
    if len(rs) < MIN_BATCH or st.samples != 1 or server.cache is not None or server.kv.cache is not None:
        return None
    idx = np.array(rs)
    return None if np.logical_or.reduce(st.s_done[idx]) else idx


def admit_many(server, plan, budget: int) -> int:
    """``Server.admit_waiting``'s loop for the leading queued requests that are admitted whole:
    those whose KV (cumulative) and batch slots fit and whose prompts (cumulative) fit ``budget``
    (> 0). Returns the budget left; the caller's loop goes on from there (a chunk, a lone prompt
    or a stop: each decided as before). With nothing swapped out, one-sample requests, no prefix
    cache, no trace."""
    st, waiting = server.st, server.waiting
    rs = list(itertools.islice(waiting, _WINDOW))
    idx = batch_of(server, rs)
    if idx is None:
        return budget
    pb, sb = _prompt_blocks(st, idx), _stream_blocks(st.s_gen[idx])
    needs = pb + sb  # request_blocks
    lefts = st.prefill_target[idx] - st.prefilled[idx]  # prompt_left
    cum_need = np.add.accumulate(needs, dtype=np.int64)
    cum_left = np.add.accumulate(lefts, dtype=np.int64)
    kv = server.kv
    # request i is admissible when committed + i + 1 <= max_batch and used + run + needs[0..i] <= capacity
    # (Server._admissible), and runs whole when lefts[0..i] <= budget (chunk_tokens)
    k = min(max(server.max_batch - server.committed, 0),
            int(np.searchsorted(cum_need, kv.capacity_blocks - kv.used_blocks - int(server.run.size), side="right")),
            int(np.searchsorted(cum_left, budget, side="right")))
    if k == 0:
        return budget
    for _ in range(k):  # Server._admit of each, in order
        waiting.popleft()
    server.queued_blocks -= int(cum_need[k - 1])
    a = idx[:k]
    first = np.isnan(st.schedule_s[a])
    if np.logical_or.reduce(first):
        st.schedule_s[a[first]] = server.sim.env.now
    st.prompt_blocks[a] = pb[:k]  # Server.reserve: its prompt's blocks, its stream's
    st.s_blocks[a] = sb[:k]
    kv.alloc(int(cum_need[k - 1]))
    server.committed += k
    server.prefilling.extend(rs[:k])
    plan.chunks.extend(zip(rs[:k], lefts[:k].tolist()))
    return budget - int(cum_left[k - 1])


def admit_few(server, plan, budget: int) -> int:
    """``admit_many`` one request at a time, with Python ints, for up to ``FEW`` requests (their
    state read and written as ``Server._admit`` does, in the same order); returns the budget left.
    The caller checks ``plain``."""
    st, kv, waiting = server.st, server.kv, server.waiting
    v = st.v  # one element at a time: memoryviews
    s_done, s_gen, target, prefilled = v.s_done, v.s_gen, v.prefill_target, v.prefilled
    need_of, prompt_blocks, s_blocks, schedule_s = st.prompt_blocks_need, v.prompt_blocks, v.s_blocks, v.schedule_s
    room = kv.capacity_blocks - kv.used_blocks - int(server.run.size)  # Server._admissible
    slots = server.max_batch - server.committed
    chunks, prefilling, now = plan.chunks, server.prefilling, server.sim.env.now
    # KV blocks reserved and requests admitted: the server's counts updated and the blocks allocated
    # at the end (one ``alloc``: the same use and peak; nothing reads them meanwhile)
    taken = admitted = 0
    for _ in range(min(FEW, len(waiting))):
        r = waiting[0]
        if admitted >= slots or s_done[r]:
            break
        pb = need_of[r]
        g = s_gen[r]
        sb = 1 if g <= BLOCK_TOKENS else (g + BLOCK_TOKENS - 1) >> BLOCK_SHIFT  # stream_blocks (Server.request_blocks)
        need = pb + sb
        left = target[r] - prefilled[r]
        if need > room or left > budget:
            break
        waiting.popleft()  # Server._admit
        prompt_blocks[r] = pb  # Server.reserve
        s_blocks[r] = sb
        taken += need
        admitted += 1
        prefilling.append(r)
        if schedule_s[r] != schedule_s[r]:  # NaN: its first admission
            schedule_s[r] = now
        chunks.append((r, left))
        budget -= left
        room -= need
    if admitted:
        server.queued_blocks -= taken
        server.committed += admitted
        kv.alloc(taken)
    return budget


def plain(server) -> bool:
    """Whether ``server``'s requests take the paths here: one sample each, no prefix cache."""
    return server.st.samples == 1 and server.cache is None and server.kv.cache is None


def offer_many(server, rs: list[int], idx: np.ndarray, src) -> None:
    """``server.offer(r, src)`` for each of ``rs`` (``idx``: ``batch_of``) and their ``decode_inst``."""
    st = server.st
    st.decode_inst[idx] = server.index
    needs = (_prompt_blocks(st, idx) + _stream_blocks(st.s_gen[idx])).tolist()  # request_blocks
    server.pending.extend(zip(rs, [src] * len(rs), needs))
    server.outstanding += len(rs)
    server.queued_blocks += sum(needs)


def offer_few(server, rs: list[int], src) -> None:
    """``server.offer(r, src)`` and ``decode_inst`` for each of a few one-sample requests ``rs``
    (``plain``), with Python ints."""
    st, pending, index = server.st, server.pending, server.index
    v = st.v  # one element at a time: memoryviews
    s_done, s_gen, need_of, decode_inst = v.s_done, v.s_gen, st.prompt_blocks_need, v.decode_inst
    total = 0
    for r in rs:
        decode_inst[r] = index
        if s_done[r]:  # Server.request_blocks
            need = 0
        else:
            need = need_of[r] + stream_blocks(s_gen[r])
        pending.append((r, src, need))
        total += need
    server.outstanding += len(rs)
    server.queued_blocks += total


def offer_start_few(server, rs: list[int], src) -> bool:
    """``offer_few(server, rs, src)`` then ``server.start_pending()`` in one pass, with Python ints,
    when nothing is pending at ``server`` (``plain``, no trace, none of ``rs`` finished): the leading
    requests whose batch slots and KV fit start their transfer (one flow, as ``start_pending``'s
    group of one source), the rest wait in ``pending`` in order. The same state, integers and
    transfer as the two calls; False (nothing done) when the conditions do not hold."""
    st, sim = server.st, server.sim
    if server.pending or sim.trace:
        return False
    v = st.v  # one element at a time: memoryviews
    s_done = v.s_done
    for r in rs:
        if s_done[r]:
            return False
    s_gen, need_of, decode_inst = v.s_gen, st.prompt_blocks_need, v.decode_inst
    prompt_blocks, s_blocks, src_blocks, prompt = v.prompt_blocks, v.s_blocks, v.src_blocks, v.prompt
    index, kv = server.index, server.kv
    used, cap = kv.used_blocks, kv.capacity_blocks
    slots = server.max_batch - server.committed
    started, queued, tokens, waits = [], 0, 0, False
    for r in rs:
        decode_inst[r] = index
        pb = need_of[r]
        g = s_gen[r]
        sb = 1 if g <= BLOCK_TOKENS else (g + BLOCK_TOKENS - 1) >> BLOCK_SHIFT  # stream_blocks (Server.request_blocks)
        need = pb + sb
        if waits or slots <= 0 or used + need > cap:  # it waits (FCFS: so does every one after it)
            waits = True
            server.pending.append((r, src, need))
            queued += need
            continue
        src_blocks[r] = prompt_blocks[r] + s_blocks[r]  # the prefill side keeps its copy until the end
        prompt_blocks[r] = pb  # Server.reserve
        s_blocks[r] = sb
        used += need
        slots -= 1
        tokens += prompt[r]
        started.append(r)
    server.outstanding += len(rs)
    server.queued_blocks += queued
    if started:
        server.committed += len(started)
        kv.alloc(used - kv.used_blocks)
        sim.transfers.start(src.index, index, sim.kv_bytes_per_token * float(tokens), (src, server, started))
    return True


def start_pending_many(server) -> list[tuple[int, list[int], object]] | None:
    """Start the transfers of the leading pending requests that fit (``Server.start_pending``'s
    loop) when they are ``batch_of``: returns their groups by prefill instance, (source index,
    requests, source server) in first-appearance order; None (nothing done) otherwise."""
    st, pend = server.st, server.pending
    n = len(pend)
    rs = [p[0] for p in pend]
    idx = batch_of(server, rs)
    if idx is None:
        return None
    # request i starts when committed + i + 1 <= max_batch and used + needs[0..i] <= capacity
    cum = np.add.accumulate(np.fromiter((p[2] for p in pend), dtype=np.int64, count=n))
    kv = server.kv
    m = min(n, max(server.max_batch - server.committed, 0),
            int(np.searchsorted(cum, kv.capacity_blocks - kv.used_blocks, side="right")))
    if m == 0:
        return []
    taken = [pend.popleft() for _ in range(m)]
    server.queued_blocks -= int(cum[m - 1])
    idx = idx[:m]
    # the prefill side keeps its copy until the transfer completes; then reserve here
    st.src_blocks[idx] = st.prompt_blocks[idx] + st.s_blocks[idx]
    pb = _prompt_blocks(st, idx)
    sb = _stream_blocks(st.s_gen[idx])
    st.prompt_blocks[idx] = pb
    st.s_blocks[idx] = sb
    kv.alloc(int(_sum(pb)) + int(_sum(sb)))
    server.committed += m
    groups: dict[int, list[int]] = {}
    srcs: dict = {}
    for r, src, _ in taken:
        groups.setdefault(src.index, []).append(r)
        srcs[src.index] = src
    return [(i, g, srcs[i]) for i, g in groups.items()]


def transfer_done_many(st, src, dst, rs: list[int], idx: np.ndarray, now: float, start_s: float) -> None:
    """``Simulation._transfer_done``'s loop for ``rs`` (``idx``: ``batch_of`` at ``dst``; no trace,
    no prefix cache at ``src``)."""
    src.kv.free(int(_sum(st.src_blocks[idx])))
    st.src_blocks[idx] = 0
    st.transfer_s[idx] = now - start_s
    dst.joining.extend(rs)


def transfer_done_few(st, src, dst, rs: list[int], now: float, start_s: float) -> None:
    """``Simulation._transfer_done``'s loop for a few one-sample requests ``rs`` (no trace, no prefix
    cache at ``src``), with Python ints."""
    v = st.v  # one element at a time: memoryviews
    src_blocks, transfer_s, s_done, joining = v.src_blocks, v.transfer_s, v.s_done, dst.joining
    took, freed = now - start_s, 0
    for r in rs:
        freed += src_blocks[r]
        src_blocks[r] = 0
        transfer_s[r] = took
        if not s_done[r]:  # its live stream (stream id == request id)
            joining.append(r)
    src.kv.free(freed)
