"""The discrete-event serving engine: ``simulate(deployment) -> SimResult``.

One simpy process per instance loops: form a batch, ask the (cached, quantised) step cost,
``yield env.timeout(step)``, apply the step to the request arrays. Arrivals are one
process that waits only when another event comes first (with one-sample requests under
``kv_aware`` and no closed-form decode runs, a generator driven beside simpy's queue:
``Simulation._run_virtual``); KV transfers are flows in ``simulator.transfer``. There is no
event per token or per kernel.

Policies decide, the ``Server`` carries them out: the batch policy
(``scheduler.batching``, ``simulator.batching``) forms each step from the server's
primitives (``grow_decodes``, ``continue_prefills``, ``resume_preempted``, ``admit_waiting``,
``over_budget_head``/``run_alone``); the preemption policy (``scheduler.preemption``,
``simulator.preemption``) says what happens to a request the server evicts (LIFO) when a
decode step's KV growth does not fit; routers (``simulator.policies``) place requests. The
classes are looked up by name in ``simulator.registry``.

Roles: ``colocated`` instances do both; ``prefill`` instances prefill and hand the request
to a decode instance (router), whose KV is reserved before the transfer starts (requests
wait at the decode side when it is full, keeping their KV on the prefill side: that is the
back-pressure); ``decode`` instances decode (and re-prefill preempted requests locally).

Speculative decoding (MTP depth d, acceptance a): each decode step costs 1 + d new tokens
per sequence and emits 1 + the number of leading accepted drafts, drawn as a Bernoulli(a)
chain (expected 1 + a + ... + a^d), capped at the tokens still owed.
"""

from __future__ import annotations

import itertools
import math
import time
from array import array
from collections import deque

import numpy as np
import simpy
from simpy.events import NORMAL, URGENT

from simulator.batching import NO_STREAMS, PLAIN_DECODE_POLICIES, StepPlan, chunk_tokens
from simulator import batched
from simulator.draws import AcceptanceDraws
from simulator.fastforward import DecodeRun, ambiguous_ties, isum, timeout_at, wait_instead
from simulator.kv import BLOCK_SHIFT, BLOCK_TOKENS, KVBlocks, blocks_after_step, instance_kv_capacity_tokens, stream_blocks
from simulator.lanes import RunLanes
from simulator.metrics import ItlHistogram, summarize
from simulator.policies import KvAware, LeastOutstanding, RoundRobin, StepCostCache
from simulator.preemption import HOST_LINK_BYTES_PER_S, Recompute, Swap
from simulator.prefix_cache import PrefixCacheRun
from simulator.prefix_workload import unique_chains
from simulator.progress import EVENTS_PER_CHECK, PROGRESS_INTERVAL_S, ProgressFn, collector_paused, run_events
from simulator.requests import RunState
from simulator.result import TRANSFER_COLUMNS, RequestColumns, SimResult
from simulator.steplog import StepLog, StepTable, end_order, ordered_itl_total_s
from simulator.registry import BATCH_POLICIES, PREEMPTION_POLICIES, ROUTERS
from simulator.sessions import SessionTurns
from simulator.transfer import TransferManager, kv_links
from simulator.workload import generate_workload
from workloads.pool_roles import PoolRole


#: routers under which a colocated instance's decode runs may extend past other events
#: (``simulator.fastforward``): their choice reads no state that changes inside a run, or (KvAware)
#: the runs are brought up to the arrival first; any other router bounds runs by the next event
FF_ROUTERS = (RoundRobin, LeastOutstanding, KvAware)


def _ceil_blocks(tokens):
    return (tokens + (BLOCK_TOKENS - 1)) // BLOCK_TOKENS


#: up to this many streams ending in one step are finished with Python ints, not array updates
_FEW = 8
#: up to this many streams of the lanes ending in one step are finished with Python ints
_FEW_FINISH = 24
#: below this many prefill chunks (requests) of a step, their per-request updates take Python ints
_FEW_CHUNKS = 32


# the reductions the hot paths call on small arrays, as ufunc methods: what ``ndarray.sum`` /
# ``.max`` / ``.any`` call, without their Python wrappers
_sum, _max, _any = np.add.reduce, np.maximum.reduce, np.logical_or.reduce


def chain_acceptance(expected_accepted: float, depth: int) -> float:
    """Per-token acceptance a with a + a^2 + ... + a^depth = ``expected_accepted`` (a draft's
    proposals are accepted as a prefix: the chain stops at the first rejection)."""
    if depth <= 0 or expected_accepted <= 0:
        return 0.0
    if expected_accepted >= depth:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):  # bisection: the sum is increasing in a
        mid = (lo + hi) / 2
        if sum(mid**i for i in range(1, depth + 1)) < expected_accepted:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


class Server:
    """One serving instance: queues, running decode streams, KV blocks, the step loop."""

    def __init__(self, sim: "Simulation", index: int, pool_name: str, role: PoolRole, pool, kv_tokens: float,
                 costs: StepCostCache, kv_bytes_per_token_device: float):
        self.sim, self.index, self.pool_name, self.role = sim, index, pool_name, role
        self.prefill_only = role is PoolRole.PREFILL  # the hot paths test a bool, not an enum member
        self.st = sim.st
        scheduler = sim.dep.scheduler
        self.batching = BATCH_POLICIES.make(scheduler.batching)
        self.preemption = PREEMPTION_POLICIES.make(scheduler.preemption)
        self.max_batch = pool.max_batch_size
        self.budget = pool.max_tokens_per_iteration
        self.chunked = pool.chunked_prefill
        # speculative decoding: MTP modules or a draft model propose ``mtp_depth`` tokens per
        # step, accepted as a chain with per-token probability ``mtp_acceptance``
        self.mtp_depth = pool.speculative_depth if role.decodes else 0
        self.mtp_acceptance = (pool.mtp_acceptance if pool.mtp_depth
                               else chain_acceptance(pool.draft_accepted_tokens, pool.draft_tokens))
        self.k = 1 + self.mtp_depth
        self.kv = KVBlocks(kv_tokens)
        self.costs = costs
        self.swap_s_per_token = kv_bytes_per_token_device / pool.attention.sp / HOST_LINK_BYTES_PER_S
        self.waiting: deque[int] = deque()
        self.swapped: deque[int] = deque()
        self.prefilling: list[int] = []
        #: (request, prefill server, its KV blocks): offered here, waiting for room to start the transfer
        self.pending: deque[tuple[int, "Server", int]] = deque()
        self.run = NO_STREAMS
        self.joining: list[int] = []
        self.committed = 0  # batch slots held: streams (prefill role: requests)
        self.outstanding = 0  # requests routed here and not finished / handed off
        self.queued_blocks = 0  # KV blocks of requests queued here, not yet admitted
        self.cache = None  # simulator.prefix_cache.InstanceCache when the deployment has a prefix_cache
        self._wake: simpy.Event | None = None
        # runs of decode steps in closed form (simulator.fastforward): only for the known policies,
        # whose decode-only step is exactly grow_decodes, and without MTP draws
        self.ff = (sim.fast_forward and role.decodes and self.k == 1
                   and isinstance(self.batching, PLAIN_DECODE_POLICIES)
                   and isinstance(self.preemption, (Recompute, Swap)))
        self.ff_extended = role is PoolRole.COLOCATED and isinstance(sim.router, FF_ROUTERS)
        self.segment: DecodeRun | None = None  # an extended run in progress
        self.lanes: RunLanes | None = None  # the running streams' state in run order (Simulation decides)
        self._base_of, self._base_tokens = None, 0  # Server._cost: the prompt tokens of the streams of _base_of
        self._proc = sim.env.process(self._loop())

    # ------------------------------------------------------------------ plumbing
    def kick(self) -> None:
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def enqueue(self, r: int) -> None:
        seg = self.segment
        if seg is not None and not seg.cut_done and seg.cut(self.sim.env.now):
            # the run ends with the step in flight: wait for its end instead
            wait_instead(self._proc, timeout_at(self.sim.env, seg.end_s))
        self.waiting.append(r)
        self.outstanding += 1
        self.queued_blocks += self.request_blocks(r)
        self.kick()

    def request_blocks(self, r: int) -> int:
        """Blocks request r needs on admission: its prompt plus each live stream's tokens."""
        st = self.st
        if st.samples == 1:  # fast path: stream id == request id
            v = st.v
            if v.s_done[r]:
                return 0
            return st.prompt_blocks_need[r] + stream_blocks(v.s_gen[r])  # its blocks: ceil(max(g, 1) / B)
        live = st.live_streams(r)
        return st.prompt_blocks_need[r] + int(_ceil_blocks(np.maximum(st.s_gen[live], 1)).sum())

    def reserve(self, r: int, shared_blocks: int = 0) -> int:
        """Allocate request r's blocks here (less ``shared_blocks`` of its prompt that it shares
        from the prefix cache); returns its live stream count."""
        st = self.st
        pb = st.prompt_blocks_need[r] - shared_blocks
        st.prompt_blocks[r] = pb
        if st.samples == 1:
            g = st.s_gen.item(r)
            st.s_blocks[r] = sb = stream_blocks(g)
            self.kv.alloc(pb + sb)
            return 1
        live = st.live_streams(r)
        sb = _ceil_blocks(np.maximum(st.s_gen[live], 1))
        st.s_blocks[live] = sb
        self.kv.alloc(pb + int(sb.sum()))
        return len(live)

    def release(self, r: int) -> int:
        """Free all KV of request r here; returns its live stream count."""
        st = self.st
        live = st.live_streams(r)
        self.kv.free(int(st.prompt_blocks[r]) + int(st.s_blocks[live].sum()))
        st.prompt_blocks[r] = 0
        st.s_blocks[live] = 0
        if self.cache is not None:
            self.cache.release(r)
        return len(live)

    # ------------------------------------------------------------------ the loop
    def _loop(self):
        sim = self.sim
        env = sim.env
        # a run's last step is applied (and, when nothing else waits, the next step formed) in closed
        # form (``DecodeRun.apply_last``, ``form_next``) when nothing else acts at a finish: one
        # sample, no trace, sessions or prefix cache
        chain = self._chain = (self.ff and self.st.samples == 1 and not sim.trace and sim.sessions is None
                               and sim.prefix is None and not sim.first_finish)
        # a stepped decode batch on lanes whose step is its decode streams' alone (nothing queued,
        # prefilling or swapped out, a known batch policy: ``form`` is ``grow_decodes``) is formed,
        # costed and applied without the generic passes (``_lanes_step``)
        lanes_steps = self.lanes is not None and type(self.batching) in PLAIN_DECODE_POLICIES
        lanes_plan = StepPlan()  # reused by every lanes step: nothing keeps a plan once it is applied
        plan = None
        while True:
            if plan is None:
                if self.joining:
                    self._join()
                if lanes_steps and self.run.size and not (self.waiting or self.prefilling or self.swapped):
                    plan = lanes_plan
                    if self._grow_lanes(plan):
                        yield env.timeout(self._cost_decode(plan, plan.run, plan.run.size, self.lanes.gen_sum()))
                        self._lanes_applied(plan)
                        plan = None
                        continue
                    # the growth takes a preemption (the lanes are written back): the batch policy
                    # forms the step, finding the same
                plan = self.batching.form(self)
                if plan is None:
                    self._wake = env.event()
                    yield self._wake
                    self._wake = None
                    continue
            dt = self._cost(plan)
            run = self._decode_run(plan, dt) if self.ff else None
            if run is None:
                yield env.timeout(dt)
                self._apply(plan)
                plan = None
            else:
                yield from self._wait_run(run)
                if chain and run.apply_last():  # the last step applied in closed form
                    plan = None if self._busy() else run.form_next()  # None: form the next step as usual
                else:
                    plan = StepPlan(run.run)
                    plan.row = run.pending_row
                    self._apply(plan)
                    plan = None

    def _busy(self) -> bool:
        """Whether anything but the running decode streams waits here (queued, prefilling, swapped
        out, offered or joining): then the next step is not the decode streams' alone."""
        return bool(self.waiting or self.prefilling or self.swapped or self.pending or self.joining)

    def _decode_run(self, plan: StepPlan, dt: float) -> DecodeRun | None:
        """A run of decode steps starting with ``plan`` (``simulator.fastforward``), when the
        instance only decodes and nothing can join or leave before its next step."""
        if not plan.run.size or plan.chunks or plan.swapins or plan.extra_s or self._busy():
            return None
        if self.ff_extended:
            return DecodeRun.build(self, plan, dt, math.inf, True)
        horizon = self.sim.env.peek()
        if self.sim.env.now + dt >= horizon:
            return None
        return DecodeRun.build(self, plan, dt, horizon, False)

    def _wait_run(self, run: DecodeRun):
        """Wait until the last step of ``run`` ends (an extended run is committed then, and an
        arrival here may cut it short); its steps up to the last are then committed."""
        env = self.sim.env
        if not run.extended:
            run.finish()  # nothing else happens before its steps: commit now
            yield timeout_at(env, run.end_s)
        else:
            self.segment = run
            yield timeout_at(env, run.end_s)  # a cut moves this wait to the new end (``enqueue``)
            self.segment = None
            run.finish()

    def _join(self) -> None:
        """Streams whose prefill or KV transfer finished join the running decode streams."""
        if self.joining:
            st = self.st
            if len(self.joining) == 1:  # one stream (a request's prefill or transfer ended): no gathers
                s = self.joining.pop()
                if st.s_done[s]:
                    return
                run = np.concatenate((self.run, (s,)))
                tokens = lambda: st.v.s_base[s]
                joiners = s
            elif len(self.joining) < _FEW_CHUNKS:  # a few: filtered and summed with Python ints
                s_done = st.v.s_done
                live = [s for s in self.joining if not s_done[s]]
                self.joining.clear()
                j = np.array(live, dtype=np.int64)
                run = np.concatenate((self.run, j)) if self.run.size else j
                tokens = lambda: sum(map(st.v.s_base.__getitem__, live))  # read only when the sum is kept
                joiners = j
            else:
                j = np.asarray(self.joining, dtype=np.int64)
                self.joining.clear()
                j = j[~st.s_done[j]]
                run = np.concatenate((self.run, j)) if self.run.size else j
                tokens = lambda: int(_sum(st.s_base[j]))  # read only when the sum is kept
                joiners = j
            lanes = self.lanes
            if lanes is not None and lanes.run is self.run:
                lanes.extend(run, joiners)
            if self._base_of is self.run:  # keep the streams' prompt-token sum (Server._cost)
                self._base_of, self._base_tokens = run, self._base_tokens + tokens()
            self.run = run

    # ------------------------------------------------------------------ what a batch policy calls
    def prompt_left(self, r: int) -> int:
        """Prompt tokens request r still has to prefill (>= 1 while it waits or prefills)."""
        return int(self.st.prefill_target[r] - self.st.prefilled[r])

    def grow_decodes(self, plan: StepPlan) -> None:
        """Put the running decode streams in ``plan`` and reserve this step's KV growth
        (1 + MTP depth tokens each, capped at their targets); when it does not fit, preempt the
        most recently admitted request (LIFO) until it does, charging what the preemption
        policy costs to the step."""
        st, run, k = self.st, self.run, self.k
        if run.size and self.lanes is not None and self._grow_lanes(plan):
            return
        if run.size:
            while True:
                gen, target = st.s_gen.take(run), st.s_target.take(run)  # take: a quicker gather
                held = st.s_blocks.take(run)
                blocks = blocks_after_step(gen, k, target, held)
                grow = isum(blocks) - isum(held)  # integer sums: exact
                if grow <= self.kv.free_blocks or run.size == 0:
                    break
                plan.extra_s += self._preempt(int(st.s_req[run[-1]]))
                run = self.run
            if run.size and grow:
                self.kv.alloc(grow)
                st.s_blocks[run] = blocks
            if run.size:
                plan.gen, plan.target = gen, target
        plan.run = run

    def _grow_lanes(self, plan: StepPlan) -> bool:
        """``grow_decodes`` on the lanes (``simulator.lanes``) when this step's growth fits; False
        (the lanes written back, nothing else done) when it takes a preemption."""
        run, lanes = self.run, self.lanes
        if lanes.run is not run:
            lanes.load(run)
        gen, target, cap = lanes.gen, lanes.target, lanes.cap
        if self.k <= BLOCK_TOKENS:  # at most one block more per stream: where min(gen + k, target) > cap
            need = gen + self.k
            over = np.greater(np.minimum(need, target, out=need), cap)
            grow = int(np.count_nonzero(over))
        else:  # blocks_after_step itself
            blocks = blocks_after_step(gen, self.k, target, cap >> BLOCK_SHIFT)
            grow = int(_sum(blocks)) - lanes.held_sum
        if grow > self.kv.free_blocks:
            lanes.flush()
            return False
        if grow:
            self.kv.alloc(grow)
            if self.k <= BLOCK_TOKENS:  # + BLOCK_TOKENS where over: a dense add is quicker than ``where=``
                np.add(cap, np.multiply(over, lanes.block_tokens), out=cap)
            else:
                lanes.cap = blocks << BLOCK_SHIFT
            lanes.held_sum += grow
        plan.gen, plan.target = gen, target
        plan.run = run
        return True

    def continue_prefills(self, plan: StepPlan, budget: int) -> int:
        """Add the next chunks of admitted prompts (FCFS) within ``budget``; returns what is left."""
        chunks, no_decodes = plan.chunks, not plan.run.size
        for r in self.prefilling:
            c = chunk_tokens(self.prompt_left(r), budget, self.chunked, no_decodes and not chunks)
            if c <= 0:
                break
            chunks.append((r, c))
            budget -= c
        return budget

    def resume_preempted(self, plan: StepPlan) -> None:
        """Bring preempted requests back into ``plan`` as the preemption policy does (swap-ins)."""
        self.preemption.resume(self, plan)

    def admit_waiting(self, plan: StepPlan, budget: int) -> int:
        """Admit queued requests FCFS into ``plan`` while the token budget, the batch-size cap
        and KV allow (none while preempted requests wait to be swapped back); returns the budget
        left."""
        chunks, no_decodes = plan.chunks, not plan.run.size
        if budget > 0 and self.waiting and not self.swapped and not self.sim.trace and batched.plain(self):
            n = len(self.waiting)
            budget = batched.admit_few(self, plan, budget)  # those admitted whole: a few with Python ints,
            if n - len(self.waiting) == batched.FEW and len(self.waiting) >= batched.MIN_BATCH:
                budget = batched.admit_many(self, plan, budget)  # more as array updates
        while self.waiting and budget > 0 and not self.swapped:
            r = self.waiting[0]
            need = self.request_blocks(r)
            if not self._admissible(r, need):
                break
            left = self.prompt_left(r) if self.cache is None else self._left_on_admission(r)
            c = chunk_tokens(left, budget, self.chunked, no_decodes and not chunks)
            if c <= 0:
                break
            plan.extra_s += self._admit(r, need)
            chunks.append((r, c))
            budget -= c
        return budget

    def over_budget_head(self) -> int | None:
        """Without chunked prefill: the head of the queue when the chunk rule gives its prompt no
        room beside the running decode streams, and it fits KV and the batch cap. It runs as a
        batch by itself (``run_alone``; the decode streams skip that one step), as vLLM
        schedules a prompt on its own; mixing it in would exceed the budget, and waiting for
        room would starve it until the decode batch drained."""
        if self.chunked or self.prefilling or self.swapped or not self.waiting:
            return None
        r = self.waiting[0]
        beside = self.budget - int(self.run.size) * self.k
        if chunk_tokens(self._left_on_admission(r), beside, False, False) > 0 or not self._admissible(r, self.request_blocks(r)):
            return None
        return r

    def run_alone(self, r: int) -> StepPlan:
        """Admit the head of the queue, r, and plan a step of its whole prompt only."""
        plan = StepPlan()
        plan.extra_s += self._admit(r)
        plan.chunks.append((r, self.prompt_left(r)))
        return plan

    def _left_on_admission(self, r: int) -> int:
        """Prompt tokens waiting request r will prefill once admitted (less its prefix-cache hits)."""
        left = self.prompt_left(r)
        if self.cache is not None:
            left += int(self.st.cached[r]) - self.cache.peek_hit_tokens(r)
        return left

    def _admissible(self, r: int, need_blocks: int) -> bool:
        """Whether waiting request r (``need_blocks`` of KV, ``request_blocks``) fits the batch-size
        cap and KV now. Watermark: one block per running stream stays free for its next step's
        growth, or a newly admitted prefill can force the preemption of a stream that has just
        joined, and two requests can evict each other forever without decoding (recompute
        livelock)."""
        live = 1 if self.prefill_only else self.st.live_count(r)
        need = need_blocks + int(self.run.size)
        if self.cache is not None:  # cached prefix blocks already in use need no new memory
            need -= self.cache.busy_hit_blocks(r)
        return self.committed + live <= self.max_batch and self.kv.fits(need)

    def _admit(self, r: int, need_blocks: int | None = None) -> float:
        """Move the head of the queue, r, into prefill (``need_blocks``: its ``request_blocks``, when
        the caller has them): look its prompt up in the prefix cache, reserve its KV and batch
        slots; returns the seconds to charge to the step (fetching shared-pool hits)."""
        sim, st = self.sim, self.st
        self.waiting.popleft()
        self.queued_blocks -= self.request_blocks(r) if need_blocks is None else need_blocks
        first = math.isnan(st.schedule_s[r])
        shared, fetch_s = self.cache.admit(r, sim.env.now, first) if self.cache is not None else (0, 0.0)
        self.reserve(r, shared)
        self.committed += 1 if self.prefill_only else st.live_count(r)
        self.prefilling.append(r)
        if first:
            st.schedule_s[r] = sim.env.now
            if sim.trace:
                sim.event("schedule", r, self.index)
        return fetch_s

    def _preempt(self, r: int) -> float:
        """Evict request r: free its KV and slots, then hand it to the preemption policy;
        returns the seconds to charge to the step."""
        st = self.st
        if self.lanes is not None:
            self.lanes.flush()
        self.run = self.run[st.s_req[self.run] != r]
        gen_tokens = int(st.s_gen[st.live_streams(r)].sum())
        self.committed -= self.release(r)
        st.preemptions[r] += 1
        self.sim.event("preempt", r, self.index)
        return self.preemption.evict(self, r, gen_tokens)

    # ------------------------------------------------------------------ costing a step
    def _cost(self, plan: StepPlan) -> float:
        """Seconds of ``plan`` (cached, quantised cost plus ``extra_s``); records the step."""
        sim, st = self.sim, self.st
        run, chunks = plan.run, plan.chunks
        n_dec, k = int(run.size), self.k
        if n_dec and not chunks and not plan.extra_s:
            return self._cost_decode(plan, run, n_dec)
        ctoks = sum([c for _, c in chunks])
        if len(chunks) < _FEW_CHUNKS:
            cached, prefilled = st.v.cached, st.v.prefilled
            cctx = sum([cached[r] + prefilled[r] for r, _ in chunks])
        else:  # many chunks: one gather (the same integer sum)
            idx = np.array([r for r, _ in chunks])
            cctx = int(_sum(st.cached[idx])) + int(_sum(st.prefilled[idx]))
        if n_dec:
            if run is not self._base_of:  # the streams' prompt tokens change only with the streams
                self._base_of, self._base_tokens = run, isum(st.s_base[run])
            gen = plan.gen if plan.gen is not None else st.s_gen[run]
            plan.dec_tokens = dec_tokens = self._base_tokens + isum(gen)
            dec_ctx = float(dec_tokens) / n_dec
        else:
            dec_ctx = 0.0
        if n_dec or chunks:
            secs, comp, comm = self.costs.cost(n_dec, dec_ctx, len(chunks), ctoks,
                                               cctx / len(chunks) if chunks else 0.0)
        else:
            secs = comp = comm = 0.0
        dt = secs + plan.extra_s
        plan.row = sim.log.append(sim.env.now, self.index, n_dec + len(chunks), n_dec, ctoks, n_dec * k + ctoks, dt,
                                  self.kv.used_blocks, comp, comm)
        return dt

    def _cost_decode(self, plan: StepPlan, run: np.ndarray, n_dec: int, gen_sum: int | None = None) -> float:
        """``_cost`` of a decode-only step with nothing charged on top (the same key, cost and row):
        its row logged by the shape code of its cost key (``StepLog.decode_code``). ``gen_sum``:
        the streams' generated tokens, when known."""
        sim, st = self.sim, self.st
        if run is not self._base_of:  # the streams' prompt tokens change only with the streams
            self._base_of, self._base_tokens = run, isum(st.s_base[run])
        if gen_sum is None:
            gen_sum = isum(plan.gen if plan.gen is not None else st.s_gen[run])
        plan.dec_tokens = dec_tokens = self._base_tokens + gen_sum
        key, hit = self.costs.decode(n_dec, float(dec_tokens) / n_dec)
        secs = hit[0]
        log = sim.log
        if secs > 0.0:  # secs + 0.0 is secs, sign included: the row ``append`` would log
            plan.row = log.append_coded(sim.env.now, log.decode_code(self.index, n_dec, self.k, key, hit),
                                        self.kv.used_blocks)
            return secs
        dt = secs + plan.extra_s
        plan.row = log.append(sim.env.now, self.index, n_dec, n_dec, 0, n_dec * self.k, dt, self.kv.used_blocks,
                              hit[1], hit[2])
        return dt

    # ------------------------------------------------------------------ applying a step
    def _apply(self, plan: StepPlan) -> None:
        run, chunks, swapins = plan.run, plan.chunks, plan.swapins
        sim, st = self.sim, self.st
        now = sim.env.now
        if run.size:
            lanes = self.lanes
            if lanes is not None and run is lanes.run:
                self._decode_lanes(plan, run, lanes, now)
            else:
                self._decode(plan, run, now)
        if not chunks and not swapins:  # a decode-only step
            if self.pending:
                self.start_pending()
            return
        for r in swapins:
            self.joining.extend(st.live_streams(r))
        done = self._advance_prefills(chunks)
        if len(done) > 1 and self._first_prefills_done(done, now):
            handoff = done
        else:
            handoff = []
            for r in done:
                self.prefilling.remove(r)
                if self._prefill_done(r, now):
                    handoff.append(r)
        if handoff:
            sim.handoff(handoff, self)
        if self.pending:  # only a decode instance has transfers pending
            self.start_pending()

    def _lanes_applied(self, plan: StepPlan) -> None:
        """``_apply`` of a decode-only step formed on the lanes (``_loop``)."""
        run, lanes = plan.run, self.lanes
        if run is lanes.run:
            self._decode_lanes(plan, run, lanes, self.sim.env._now)
        else:
            self._decode(plan, run, self.sim.env._now)
        if self.pending:
            self.start_pending()

    def _draw(self, gen: np.ndarray, target: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        """Generated tokens after a decode step: gen + min(1 + accepted drafts, target - gen), taken
        as min(gen + 1 + accepted, target) (the same integers); into ``out`` (``gen`` itself) or new."""
        draws, n = self.sim.accept_draws, gen.size
        if self.mtp_depth == 1:  # 1 + accepted, computed a chunk of draws at a time (``simulator.draws``)
            new = np.add(gen, draws.increments(n, self.mtp_acceptance, gen.dtype), out=out)
        else:
            if self.mtp_depth:
                ok = draws.uniforms(n * self.mtp_depth).reshape(n, self.mtp_depth) < self.mtp_acceptance
                new = np.add(gen, np.cumprod(ok, axis=1).sum(axis=1), out=out, casting="same_kind")
            else:
                new = gen.copy() if out is None else gen
            new += 1
        np.minimum(new, target, out=new)
        return new

    def _decode(self, plan: StepPlan, run: np.ndarray, now: float) -> None:
        """The decode half of ``_apply`` from ``RunState`` (the reference path)."""
        sim, st = self.sim, self.st
        gen = st.s_gen[run] if plan.gen is None else plan.gen
        target = st.s_target[run] if plan.target is None else plan.target
        new = self._draw(gen, target, None)
        gaps = st.s_last_emit_s.take(run)
        np.subtract(now, gaps, out=gaps)
        sim.log.itl_add_s[plan.row] = sim.itl.add(gaps)
        st.s_last_emit_s[run] = now
        st.s_gen[run] = new
        fin = new >= target  # reached the target
        if _any(fin):
            self._drop_finished(run, fin, run[fin], now, None)

    def _decode_lanes(self, plan: StepPlan, run: np.ndarray, lanes: RunLanes, now: float) -> None:
        """``_decode`` on the lanes: the same draws, integers and gaps, updated in place."""
        sim, n = self.sim, run.size
        gen, target = lanes.gen, lanes.target
        if self.mtp_depth == 1:  # uncapped: only finishers pass their targets (capped as they finish)
            np.add(gen, sim.accept_draws.increments(n, self.mtp_acceptance, gen.dtype), out=gen)
            capped = False
        else:
            self._draw(gen, target, gen)
            capped = True
        if lanes.fresh == n:  # every stream emitted at the lanes' last step: one gap (ItlHistogram.add's case)
            add = sim.itl.add_uniform(now - lanes.t, n)
        elif lanes.fresh:  # the leading streams emitted at the lanes' last step: one gap
            add = sim.itl.add_led(lanes.gaps(now), lanes.fresh)
        else:
            add = sim.itl.add(lanes.gaps(now))
        sim.log.itl_add_s[plan.row] = add
        lanes.fresh, lanes.t = n, now
        fin = gen >= target
        idx = fin.nonzero()[0]  # the finishers' lanes (one call: no ``any`` first)
        if idx.size:
            if idx.size <= _FEW_FINISH:
                self._finish_lanes(run, fin, idx.tolist(), lanes, now)
            else:
                if not capped:
                    np.minimum(gen, target, out=gen)
                self._drop_finished(run, fin, lanes.drop(fin, run, now, idx), now, lanes)

    def _finish_lanes(self, run: np.ndarray, fin: np.ndarray, idx: list[int], lanes: RunLanes, now: float) -> None:
        """``_drop_finished`` of a few streams at ``idx`` of the lanes (``lanes.drop``, then
        ``_finish_requests`` / ``_finish_stream``, which are the same for the one-sample requests
        lanes hold), with Python ints."""
        st, sim = self.st, self.sim
        v = st.v  # one element at a time: memoryviews
        s_gen, s_done, s_blocks, s_last_emit_s = v.s_gen, v.s_done, v.s_blocks, v.s_last_emit_s
        prompt_blocks, base = v.prompt_blocks, v.s_base
        cap, ids = memoryview(lanes.cap), memoryview(run)
        ended, freed, held, gone = [], 0, 0, 0
        for i in idx:
            s = ids[i]
            b = cap[i] >> BLOCK_SHIFT
            held += b
            gone += base[s]
            if s_done[s]:
                s_gen[s] = min(lanes.gen.item(i), lanes.target.item(i))  # capped at the target (``_decode_lanes`` leaves it uncapped)
                s_last_emit_s[s] = now
                s_blocks[s] = b
                continue
            s_done[s] = True
            freed += b + prompt_blocks[s]
            ended.append(s)  # the rest of its state is written later (``RunLanes.write_finished``)
        if ended:
            lanes.finished(ended, now)
        lanes.held_sum -= held
        self.kv.free(freed)
        self.committed -= len(ended)
        self.outstanding -= len(ended)
        if sim.trace:
            for s in ended:
                sim.event("finish", s, self.index)
        keep = ~fin
        self.run = run[keep]
        lanes.keep(self.run, keep)
        if self._base_of is run:  # keep the streams' prompt-token sum (Server._cost)
            self._base_of, self._base_tokens = self.run, self._base_tokens - gone

    def _drop_finished(self, run: np.ndarray, fin: np.ndarray, done: np.ndarray, now: float,
                       lanes: RunLanes | None) -> None:
        """Finish the streams ``done`` (``run[fin]``) that reached their targets and drop them from the run."""
        sim, st = self.sim, self.st
        few = done.tolist() if len(done) <= _FEW else None  # a few: Python ints, not array calls
        if st.samples == 1 and sim.sessions is None and self.cache is None and len(done) > 1:
            if few is not None:
                self._finish_requests([s for s in few if not st.s_done[s]], now)
            else:
                self._finish_requests(done[~st.s_done[done]], now)
        else:
            for s in done.tolist():
                if not st.s_done[s]:
                    self._finish_stream(s, now)
        keep = ~fin
        if self.run is run and not sim.first_finish:  # no other stream ended: drop these
            self.run = run[keep]
            if lanes is not None:
                lanes.keep(self.run, keep)
            if self._base_of is run:  # keep the streams' prompt-token sum (Server._cost)
                if few is not None:
                    base = st.s_base
                    gone = sum([base.item(s) for s in few])
                else:
                    gone = int(_sum(st.s_base[done]))
                self._base_of, self._base_tokens = self.run, self._base_tokens - gone
        else:
            if lanes is not None:
                lanes.keep(run[keep], keep)
                lanes.flush()
            self.run = self.run[~st.s_done[self.run]]

    def _advance_prefills(self, chunks: list[tuple[int, int]]) -> list[int]:
        """Add each chunk's tokens to its request's prefill; returns the requests (in chunk order)
        whose prompt is now prefilled. Many chunks (of distinct requests) go as one array update."""
        if len(chunks) < _FEW_CHUNKS:
            return self._advance_prefills_each(chunks)
        rs, cs = zip(*chunks)
        if len(set(rs)) != len(rs):  # a request twice: its chunks add up one after the other
            return self._advance_prefills_each(chunks)
        st = self.st
        idx = np.array(rs)
        pre = st.prefilled[idx] + np.array(cs)
        st.prefilled[idx] = pre
        return [r for r, d in zip(rs, (pre >= st.prefill_target[idx]).tolist()) if d]

    def _advance_prefills_each(self, chunks: list[tuple[int, int]]) -> list[int]:
        """``_advance_prefills`` one chunk at a time."""
        st, done = self.st, []
        prefilled, target = st.v.prefilled, st.v.prefill_target
        for r, c in chunks:
            p = prefilled[r] + c
            prefilled[r] = p
            if p >= target[r]:
                done.append(r)
        return done

    def _first_prefills_done(self, rs: list[int], now: float) -> bool:
        """``_prefill_done`` of each of ``rs`` (in order) as array updates, in the common case of a
        prefill instance: one-sample requests prefilled for the first time, each owing more than one
        token, no prefix cache; they all go on to a decode instance. False (nothing done) otherwise."""
        st, sim = self.st, self.sim
        if not self.prefill_only or st.samples != 1 or self.cache is not None:
            return False
        if len(rs) < _FEW_CHUNKS:  # a few: Python ints
            v = st.v
            first_token_s, s_target = v.first_token_s, v.s_target
            for r in rs:
                if not math.isnan(first_token_s[r]) or s_target[r] <= 1:
                    return False
            s_gen, s_last_emit_s = v.s_gen, v.s_last_emit_s
            for r in rs:
                first_token_s[r] = now
                s_gen[r] = 1
                s_last_emit_s[r] = now
        else:
            idx = np.array(rs)
            if not np.logical_and.reduce(np.isnan(st.first_token_s[idx])) or _any(st.s_target[idx] <= 1):
                return False
            st.first_token_s[idx] = now
            st.s_gen[idx] = 1
            st.s_last_emit_s[idx] = now
        if self.prefilling == rs:  # every prompt in prefill finished (the common case)
            self.prefilling.clear()
        else:
            gone = set(rs)
            self.prefilling[:] = [r for r in self.prefilling if r not in gone]
        self.committed -= len(rs)
        self.outstanding -= len(rs)
        if sim.trace:
            for r in rs:
                sim.event("first_token", r, self.index)
        return True

    def _prefill_done(self, r: int, now: float) -> bool:
        """Prefill of r finished; True when r goes on to a decode instance."""
        sim, st = self.sim, self.st
        if self.cache is not None:
            self.cache.prefill_done(r)
        if math.isnan(st.first_token_s[r]):
            st.first_token_s[r] = now
            sim.event("first_token", r, self.index)
            streams = st.streams(r) if st.samples > 1 else (r,)  # one sample: stream id == request id
            if st.samples > 1:
                st.s_gen[streams.start:streams.stop] = 1
                st.s_last_emit_s[streams.start:streams.stop] = now
            else:
                st.s_gen[r] = 1
                st.s_last_emit_s[r] = now
            if self.prefill_only:
                self.committed -= 1
            for s in streams:
                if not st.s_done[s] and st.s_target[s] <= 1:
                    self._finish_stream(s, now)
        if st.streams_left[r] == 0:
            return False
        if self.prefill_only:
            self.outstanding -= 1
            return True
        self.joining.extend(st.live_streams(r))
        return False

    def _finish_requests(self, rs: np.ndarray, now: float) -> None:
        """``_finish_stream`` of each of ``rs``, one-sample requests (stream id == request id) with
        no prefix cache or sessions to tell, as array updates (the events in the same order)."""
        st, sim, n = self.st, self.sim, len(rs)
        if isinstance(rs, list):  # a few, as Python ints
            s_done, s_blocks, prompt_blocks = st.s_done, st.s_blocks, st.prompt_blocks
            streams_left, finish_s = st.streams_left, st.finish_s
            freed = 0
            for r in rs:
                s_done[r] = True
                freed += s_blocks.item(r) + prompt_blocks.item(r)
                s_blocks[r] = 0
                streams_left[r] = 0
                finish_s[r] = now
                prompt_blocks[r] = 0
            self.kv.free(freed)
        else:
            st.s_done[rs] = True
            self.kv.free(int(_sum(st.s_blocks[rs])) + int(_sum(st.prompt_blocks[rs])))
            st.s_blocks[rs] = 0
            st.streams_left[rs] = 0
            st.finish_s[rs] = now
            st.prompt_blocks[rs] = 0
        if not self.prefill_only:
            self.committed -= n
        self.outstanding -= n
        if sim.trace:
            for r in (rs if isinstance(rs, list) else rs.tolist()):
                sim.event("finish", r, self.index)

    def _finish_stream(self, s: int, now: float) -> None:
        sim, st = self.sim, self.st
        r = int(st.s_req[s])
        st.s_done[s] = True
        self.kv.free(int(st.s_blocks[s]))
        st.s_blocks[s] = 0
        if not self.prefill_only:
            self.committed -= 1
        st.streams_left[r] -= 1
        if sim.first_finish and st.streams_left[r] > 0:
            for s2 in st.live_streams(r):
                st.s_done[s2] = True
                self.kv.free(int(st.s_blocks[s2]))
                st.s_blocks[s2] = 0
                if not self.prefill_only:
                    self.committed -= 1
                st.cancelled[r] += 1
            st.streams_left[r] = 0
            sim.event("cancel", r, self.index)
        if st.streams_left[r] == 0:
            st.finish_s[r] = now
            self.kv.free(int(st.prompt_blocks[r]))
            st.prompt_blocks[r] = 0
            if self.cache is not None:
                self.cache.finish(r)
            self.outstanding -= 1
            sim.event("finish", r, self.index)
            if sim.sessions is not None:
                sim.sessions.finished(r, now)

    # ------------------------------------------------------------------ decode side of P/D
    def offer(self, r: int, src: "Server") -> None:
        need = self.request_blocks(r)  # its state does not change while it waits here
        self.pending.append((r, src, need))
        self.outstanding += 1
        self.queued_blocks += need

    def start_pending(self) -> None:
        """Start the transfers of pending requests whose KV fits here (FCFS)."""
        sim, st = self.sim, self.st
        many = batched.start_pending_many(self) if len(self.pending) >= batched.MANY_PENDING else None
        if many is None:
            many = self._start_pending_each()
        prompt = st.v.prompt.__getitem__  # one element at a time: a memoryview (the same ints)
        for i, rs, src in many:
            nbytes = sim.kv_bytes_per_token * float(sum(map(prompt, rs)))
            if sim.trace:
                for r in rs:
                    sim.event("kv_transfer_start", r, self.index)
            sim.transfers.start(i, self.index, nbytes, (src, self, rs))

    def _start_pending_each(self) -> list[tuple[int, list[int], "Server"]]:
        """``start_pending``'s requests one at a time: their groups by prefill instance, (source
        index, requests, source server) in first-appearance order."""
        st = self.st
        groups: dict[int, list[int]] = {}
        srcs: dict[int, Server] = {}
        if st.samples == 1 and self.kv.cache is None:
            self._start_pending_one(groups, srcs)
        while self.pending:
            r, src, need_b = self.pending[0]
            live = st.live_count(r)
            if self.committed + live > self.max_batch or not self.kv.fits(need_b):
                break
            self.pending.popleft()
            self.queued_blocks -= need_b
            # the prefill side keeps its copy until the transfer completes
            if st.samples == 1:  # fast path: stream id == request id
                st.src_blocks[r] = st.prompt_blocks.item(r) + (0 if st.s_done[r] else st.s_blocks.item(r))
            else:
                st.src_blocks[r] = int(st.prompt_blocks[r]) + int(st.s_blocks[st.live_streams(r)].sum())
            self.reserve(r)
            self.committed += live
            groups.setdefault(src.index, []).append(r)
            srcs[src.index] = src
        return [(i, rs, srcs[i]) for i, rs in groups.items()]

    def _start_pending_one(self, groups: dict, srcs: dict) -> None:
        """``_start_pending_each``'s loop for one-sample requests (stream id == request id) with
        ``reserve`` inline, in Python ints, and one ``alloc`` (no prefix cache evicts as KV is
        taken); stops where that loop would."""
        st, pending, kv = self.st, self.pending, self.kv
        v = st.v  # one element at a time: memoryviews
        s_done, prompt_blocks, s_blocks, src_blocks = v.s_done, v.prompt_blocks, v.s_blocks, v.src_blocks
        s_gen, need_of = v.s_gen, st.prompt_blocks_need
        # KV, batch slots and queued blocks taken, the server's counts updated at the end (one
        # ``alloc``: the same use and peak; nothing reads them meanwhile)
        used, committed, queued = kv.used_blocks, self.committed, 0
        cap, max_batch = kv.capacity_blocks, self.max_batch
        while pending:
            r, src, need_b = pending[0]
            live = 0 if s_done[r] else 1
            if committed + live > max_batch or used + need_b > cap:
                break
            pending.popleft()
            queued += need_b
            # the prefill side keeps its copy until the transfer completes
            src_blocks[r] = prompt_blocks[r] + (s_blocks[r] if live else 0)
            pb = need_of[r]  # reserve(r)
            prompt_blocks[r] = pb
            s_blocks[r] = sb = stream_blocks(s_gen[r])
            used += pb + sb
            committed += live
            i = src.index
            if i in groups:
                groups[i].append(r)
            else:
                groups[i] = [r]
                srcs[i] = src
        self.queued_blocks -= queued
        self.committed = committed
        if used > kv.used_blocks:
            kv.alloc(used - kv.used_blocks)


class Simulation:
    """One run: environment, RNG streams, request arrays, servers, transfers, records."""

    def __init__(self, dep, *, profile=None, step_cost=None, trace: bool = False, kv_capacity_tokens=None,
                 fast_forward: bool = True, lanes: bool = True, plain_arrivals: bool = True):
        self._args = {"profile": profile, "step_cost": step_cost, "trace": trace, "kv_capacity_tokens": kv_capacity_tokens,
                      "lanes": lanes, "plain_arrivals": plain_arrivals}
        self._plain_ok = plain_arrivals  # False: every arrival through ``arrive`` in a simpy process (tests)
        self.fast_forward = fast_forward  # decode runs in closed form (simulator.fastforward)
        self.fast_forwarded_steps = 0  # steps formed in closed form (tests and benchmarks read it)
        self.stepped_again = False  # a fast-forwarded run tied with another event: the run was stepped
        self.dep = dep
        self.env = simpy.Environment()
        ss = np.random.SeedSequence(dep.seed)
        rng_arr, rng_len, self.rng_route, rng_accept = (np.random.default_rng(s) for s in ss.spawn(4))
        self.accept_draws = AcceptanceDraws(rng_accept)  # MTP acceptance: the only reader of its stream
        wl = generate_workload(dep.workload, rng_arr, rng_len)
        self.st = RunState(wl, transfers=dep.serving.mode == "disaggregated")
        self.trace = trace
        self.events: list[tuple] = []
        self.log = StepLog()
        self.arrival_times = array("d")  # when arrivals were processed (ties with fast-forwarded steps)
        self.itl = ItlHistogram()
        self.first_finish = dep.workload.sample_policy == "first_finish" and wl.samples > 1
        self.sessions = SessionTurns(self, wl.next_turn, wl.think_s) if wl.next_turn is not None else None
        self._build(profile, step_cost, kv_capacity_tokens)
        self.prefix = self._prefix_caches(wl) if dep.prefix_cache is not None else None
        if self.prefix is not None:  # the cache evicts and logs as KV is taken: every step is stepped
            for s in self.servers:
                s.ff = False
        if lanes and self.st.samples == 1 and self.sessions is None and self.prefix is None:
            for s in self.servers:  # stepped decode batches keep their streams' state in run order
                if s.role.decodes and not s.ff:
                    s.lanes = RunLanes(self.st, s.max_batch)
        #: the router reads KV: runs of decode steps are brought up to each arrival first
        self.sync_runs = isinstance(self.router, KvAware) and any(s.ff and s.ff_extended for s in self.front)

    def _build(self, profile, step_cost, kv_override) -> None:
        from hardware.catalog import get_cluster
        from workloads.accounting import kv_cache_bytes_per_token
        from workloads.deployment_rules import pool_memory
        from workloads.models import get_model

        dep = self.dep
        model, cluster = get_model(dep.model), get_cluster(dep.cluster)
        self.cluster = cluster
        self.kv_bytes_per_token = kv_cache_bytes_per_token(model, dep.kv_dtype)
        disagg = dep.serving.mode == "disaggregated"
        self.router = ROUTERS.make(dep.scheduler.router)
        ids = itertools.count()
        self.pools: dict[str, list[Server]] = {}
        self.cost_caches: dict[str, StepCostCache] = {}
        self._instance_costs: list = []  # what ``release`` lets go of
        detail_keys: dict = {}  # one (source family, op kind) tuple per distinct key, shared by every shape's detail
        for name, pool in dep.pools().items():
            role = PoolRole.of_pool(name)
            if step_cost is not None:
                def fn(shape, _role=role):
                    s = float(step_cost(_role, shape))
                    return s, s, 0.0
            else:
                from simulator.instance import InstanceCost, spec_from_pool

                ic = InstanceCost(spec_from_pool(model, cluster, pool, dep.weight_dtype, dep.kv_dtype), profile,
                                  cache_steps=False)  # StepCostCache keeps what the run needs
                self._instance_costs.append(ic)

                def fn(shape, _ic=ic, _keys=detail_keys):
                    c = _ic.step(shape)
                    return float(c.seconds), float(c.compute_s), float(c.comm_s), _op_seconds(c, _keys)
            costs = self.cost_caches[name] = StepCostCache(fn, 1 + (pool.speculative_depth if role.decodes else 0))
            if kv_override is None:
                kv_tokens = instance_kv_capacity_tokens(model, pool, cluster.device, dep.weight_dtype, dep.kv_dtype)
            else:
                kv_tokens = float(kv_override[name] if isinstance(kv_override, dict) else kv_override)
            mem = pool_memory(model, pool, cluster.device, dep.weight_dtype, dep.kv_dtype)
            self.pools[name] = [Server(self, next(ids), name, role, pool, kv_tokens, costs, mem.kv_bytes_per_token)
                                for _ in range(pool.instances)]
            self._check_fits(name, kv_tokens)
            if role.decodes and pool.max_batch_size < self.st.samples:
                raise ValueError(f"serving.{name}.max_batch_size: {pool.max_batch_size} is below "
                                 f"workload.samples_per_request {self.st.samples} (a request's samples decode together)")
        self.front = self.pools[(PoolRole.PREFILL if disagg else PoolRole.COLOCATED).pool_name]
        self.servers = [s for ss in self.pools.values() for s in ss]
        if disagg:
            self.decode_router = ROUTERS.make(dep.scheduler.router)
            #: the router's choice among one decode instance is that one, with no state to update
            #: (``batched.batch_of`` leaves out prefix caches, which a cache-aware choice may touch)
            self._one_decode_router = type(self.decode_router) in (KvAware, LeastOutstanding)
            caps = kv_links(cluster, dep.serving.prefill, dep.serving.decode,
                            [s.index for s in self.pools[PoolRole.PREFILL.pool_name]],
                            [s.index for s in self.pools[PoolRole.DECODE.pool_name]])
            self.transfers = TransferManager(self.env, caps, self._transfer_done)
        else:
            self.transfers = None
        self.devices = sum(p.devices for p in dep.pools().values())

    def _prefix_caches(self, wl) -> PrefixCacheRun:
        """Attach a prefix cache to every server (a local one where prompts are prefilled: not on
        the decode instances of a disaggregated deployment) and the shared pool, if any."""
        chains = wl.chains if wl.chains is not None else unique_chains(self.st.prompt, BLOCK_TOKENS)
        run = PrefixCacheRun(self.dep.prefix_cache, self.st, chains, wl.next_turn is not None,
                             self.kv_bytes_per_token, self.cluster)
        pools = self.dep.pools()
        for name, servers in self.pools.items():
            keeps = self.dep.serving.mode == "colocated" or PoolRole.of_pool(name) is PoolRole.PREFILL
            for s in servers:
                s.cache = run.attach(s, pools[name], keeps)
        return run

    def _check_fits(self, name: str, kv_tokens: float) -> None:
        st = self.st
        if st.num_requests == 0:
            return
        worst = int((_ceil_blocks(st.prompt) + _ceil_blocks(st.s_target.reshape(st.num_requests, -1)).sum(axis=1)).max())
        cap = int(kv_tokens // BLOCK_TOKENS)
        if worst > cap:
            raise ValueError(f"serving.{name}: one request needs {worst} KV blocks of {BLOCK_TOKENS} tokens but an "
                             f"instance holds {cap}; shorten requests or add devices")

    # ------------------------------------------------------------------ events
    def event(self, kind: str, r: int, inst: int) -> None:
        if self.trace:
            self.events.append((self.env.now, kind, int(r), int(inst)))

    def _arrivals(self, virtual: bool = False):
        """Requests arrive in order (sessions: their first turns), their times read from the run's
        array ``_ARRIVAL_CHUNK`` at a time (not a million Python floats held for the whole run).
        An arrival whose timeout would be simpy's next event (nothing else is scheduled at or
        before it) is processed at once, the clock set as ``Environment.step`` would set it
        (simpy 4's ``_now`` and ``_queue``): the same times and the same order of every event,
        without one timeout event per arrival."""
        env, arrival_s = self.env, self.st.arrival_s
        queue = env._queue  # simpy's event heap: (time, priority, id, event)
        order = range(len(arrival_s)) if self.sessions is None else self.sessions.first_turns
        plain = self._plain_arrivals()
        for lo in range(0, len(order), _ARRIVAL_CHUNK):
            rs = order[lo:lo + _ARRIVAL_CHUNK]
            times = arrival_s[lo:lo + len(rs)] if self.sessions is None else arrival_s[rs]
            if plain:
                yield from self._arrive_plain(rs, times.tolist(), virtual)
                continue
            for r, t in zip(rs, times.tolist()):
                now = env._now
                if t > now:
                    at = now + (t - now)  # when the timeout below would fire
                    if queue and queue[0][0] <= at:
                        yield env.timeout(t - now)
                    else:  # nothing else happens first: the timeout would be the next event, skip it
                        env._now = at
                self.arrive(r)

    def _plain_arrivals(self) -> bool:
        """Whether arrivals take ``_arrive_plain``: one-sample requests, no sessions or prefix cache,
        the ``kv_aware`` router with no decode runs to bring up to an arrival."""
        return (self._plain_ok and self.st.samples == 1 and self.sessions is None and self.prefix is None
                and type(self.router) is KvAware and not self.sync_runs
                and all(s.cache is None and s.kv.cache is None for s in self.front))

    def _arrive_plain(self, rs, times: list[float], virtual: bool):
        """``_arrivals``' loop with ``arrive`` (``KvAware.choose``, ``Server.enqueue``,
        ``Server.request_blocks``, ``Server.kick``) inline, for ``_plain_arrivals``: the same
        clock, choices, state and events, with Python ints. ``virtual``: yield the queue key its
        timeout would have, (time, priority, id), instead of the timeout (``_run_virtual``)."""
        env, front = self.env, self.front
        queue = env._queue
        times_append = self.arrival_times.append
        v = self.st.v  # one element at a time: memoryviews
        prefill_inst, decode_inst, s_done, s_gen = v.prefill_inst, v.decode_inst, v.s_done, v.s_gen
        need_of = self.st.prompt_blocks_need
        lone = front[0] if len(front) == 1 else None
        trace = self.trace
        # KvAware.choose's free KV blocks of each instance (capacity - used - queued): between two
        # waits nothing else runs, so only these arrivals' own queued blocks change them
        frees = None
        for r, t in zip(rs, times):
            now = env._now
            if t > now:
                at = now + (t - now)  # when the timeout below would fire
                if queue and queue[0][0] <= at:
                    yield (at, NORMAL, next(env._eid)) if virtual else env.timeout(t - now)
                    frees = None  # others ran meanwhile
                else:  # nothing else happens first: the timeout would be the next event, skip it
                    env._now = at
            times_append(env._now)
            srv = lone
            if srv is None:  # KvAware.choose: the first of the most free KV blocks
                if frees is None:
                    frees = [s.kv.capacity_blocks - s.kv.used_blocks - s.queued_blocks for s in front]
                i = frees.index(max(frees))
                srv = front[i]
            index = srv.index
            prefill_inst[r] = index
            if trace:
                self.event("arrival", r, index)
            if srv.segment is not None:
                srv.enqueue(r)
                frees = None
            else:  # Server.enqueue
                srv.waiting.append(r)
                srv.outstanding += 1
                if not s_done[r]:  # Server.request_blocks (``stream_blocks`` inline)
                    g = s_gen[r]
                    need = need_of[r] + (1 if g <= BLOCK_TOKENS else (g + BLOCK_TOKENS - 1) >> BLOCK_SHIFT)
                    srv.queued_blocks += need
                    if frees is not None:
                        frees[i] -= need
                wake = srv._wake
                if wake is not None and not wake.triggered:
                    wake.succeed()
            if not srv.prefill_only:  # colocated
                decode_inst[r] = index

    def arrive(self, r: int) -> None:
        """Request r arrives now: route it to an instance of the front pool."""
        st, front, env = self.st, self.front, self.env
        self.arrival_times.append(env.now)
        if self.sync_runs:  # the router reads KV: bring runs of decode steps up to now first
            for s in front:
                if s.segment is not None:
                    s.segment.advance_to(env.now)
        srv = front[self.router.choose(front, r)]
        st.prefill_inst[r] = srv.index
        if self.trace:
            self.event("arrival", r, srv.index)
        srv.enqueue(r)
        if not srv.prefill_only:  # colocated
            st.decode_inst[r] = srv.index

    def handoff(self, rs: list[int], src: Server) -> None:
        decode = self.pools[PoolRole.DECODE.pool_name]
        if len(decode) == 1 and self._one_decode_router:
            d = decode[0]  # the router's only choice
            if len(rs) < batched.FEW and batched.plain(d):
                if not batched.offer_start_few(d, rs, src):
                    batched.offer_few(d, rs, src)
                    d.start_pending()
                return
            idx = batched.batch_of(d, rs)
            if idx is not None:
                batched.offer_many(d, rs, idx, src)
                d.start_pending()
                return
        touched = {}
        for r in rs:
            d = decode[self.decode_router.choose(decode, r)]
            self.st.decode_inst[r] = d.index
            d.offer(r, src)
            touched[d.index] = d
        for d in touched.values():
            d.start_pending()

    def _transfer_done(self, payload, start_s: float) -> None:
        src, dst, rs = payload
        st, now = self.st, self.env.now
        if not self.trace and src.cache is None and st.samples == 1:
            if len(rs) < batched.FEW:
                batched.transfer_done_few(st, src, dst, rs, now, start_s)
                dst.kick()
                src.kick()
                return
            idx = batched.batch_of(dst, rs)
            if idx is not None:
                batched.transfer_done_many(st, src, dst, rs, idx, now, start_s)
                dst.kick()
                src.kick()
                return
        for r in rs:
            src.kv.free(int(st.src_blocks[r]))
            st.src_blocks[r] = 0
            if src.cache is not None:
                src.cache.release(r)
            st.transfer_s[r] = now - start_s
            if self.trace:
                self.event("kv_transfer_end", r, dst.index)
            dst.joining.extend(st.live_streams(r))
        dst.kick()
        src.kick()

    # ------------------------------------------------------------------ run
    def run(self, progress: ProgressFn | None = None) -> SimResult:
        """Run to the end. ``progress``: called as ``progress("simulate", requests finished,
        requests, "... s simulated")`` at most every 0.1 s of wall time (``run_events``)."""
        st, env = self.st, self.env
        virtual = self._plain_arrivals() and not any(s.ff for s in self.servers)
        if not virtual:
            env.process(self._arrivals())

        def report() -> None:
            for s in self.servers:
                if s.lanes is not None:
                    s.lanes.write_finished()
            progress("simulate", int(np.count_nonzero(~np.isnan(st.finish_s))), st.num_requests,
                     f"{env.now:,.1f} s simulated")

        with collector_paused():
            if virtual:
                self._run_virtual(report if callable(progress) else None)
            else:
                run_events(env, report if callable(progress) else None)
        for s in self.servers:
            if s.lanes is not None:
                s.lanes.flush()
        names, capacity = [""] * len(self.servers), [0] * len(self.servers)
        for s in self.servers:
            names[s.index], capacity[s.index] = s.pool_name, s.kv.capacity_blocks
        table = self.log.table(names, capacity)
        order = end_order(table)
        if ambiguous_ties(table, order, np.frombuffer(self.arrival_times, dtype=np.float64)):
            # a fast-forwarded step shares its time with another instance's event: step instead
            del table, order
            self.__init__(self.dep, **self._args, fast_forward=False)
            self.stepped_again = True
            return self.run(progress)
        return self._result(table, order)

    def _run_virtual(self, report) -> None:
        """``run_events`` with the arrival process kept out of simpy: its events (its start, one
        timeout per arrival that waits for another event) are keys (time, priority, id) taken as
        simpy would take them (the same ids) and compared with the head of simpy's queue, and the
        arrivals' generator (``_arrivals(virtual=True)``) is resumed when its key comes first. The
        same events in the same order at the same times, without one simpy event per waiting
        arrival. Only while nothing reads the queue's head but the arrivals themselves (no decode
        runs in closed form: ``Server._decode_run`` peeks at it)."""
        env = self.env
        queue, step = env._queue, env.step
        arrivals = self._arrivals(virtual=True)
        key = (env._now, URGENT, next(env._eid))  # the arrival process's start (``Initialize``)
        if report is not None:
            report()
        last, count = time.monotonic(), EVENTS_PER_CHECK
        while True:
            if key is not None and (not queue or key < queue[0]):
                env._now = key[0]
                key = next(arrivals, None)
                if key is None:  # the process ended: simpy would schedule its own event
                    next(env._eid)
            elif queue:
                step()
            else:
                break
            if report is not None:
                count -= 1
                if not count:
                    count, now = EVENTS_PER_CHECK, time.monotonic()
                    if now - last >= PROGRESS_INTERVAL_S:
                        last = now
                        report()
        if report is not None:
            report()

    def release(self) -> None:
        """Let go of the run's state once its result is taken (``simulate``): the servers, their
        event-loop generators and the simulation refer to each other, so without this the whole
        graph (cost-model memos and op lists: ~10^5 objects at 100k requests) waits for a full
        collection of the garbage collector (at the latest the interpreter's last one, ~0.3 s);
        with the references cut it is freed by reference counts."""
        for s in self.servers:
            proc = s.__dict__.pop("_proc", None)
            if proc is not None and proc.is_alive:
                proc._generator.close()
            s.__dict__.clear()
        for ic in self._instance_costs:
            ic.release()
        self.__dict__.clear()

    def _result(self, steps: StepTable, order: np.ndarray) -> SimResult:
        st = self.st
        n = st.samples
        gen = st.s_gen.reshape(st.num_requests, n)
        longest = gen.max(axis=1) if st.num_requests else np.zeros(0)
        st.release_views()
        for name in _STATE_DONE:  # the run's working state, read by nothing below (~50 MB at 1M requests)
            setattr(st, name, None)
        with np.errstate(invalid="ignore", divide="ignore"):  # (finish - first) / (longest - 1), in place
            tpot = st.finish_s - st.first_token_s
            np.divide(tpot, longest - 1, out=tpot)
        tpot[~(longest > 1)] = np.nan
        del longest
        req = RequestColumns({  # the requests table's columns, read from the run's arrays (no copies)
            "arrival_s": st.arrival_s, "prompt": st.prompt,
            "cached": st.cached if self.prefix is None else self.prefix.first_hit,
            "gen": gen, "target": st.s_target.reshape(st.num_requests, n),
            "first_token_s": st.first_token_s, "finish_s": st.finish_s, "schedule_s": st.schedule_s,
            "tpot_s": tpot, "transfer_s": st.transfer_s, "prefill_inst": st.prefill_inst,
            "decode_inst": st.decode_inst, "preemptions": st.preemptions, "cancelled": st.cancelled})
        del gen, tpot
        self.itl.total_s = ordered_itl_total_s(steps, order)
        del order
        steps.drop_run_columns()  # not part of the table
        dpn = self.cluster.devices_per_node
        extra = {
            "iterations": len(steps),
            "cost_model_calls": {k: c.misses for k, c in self.cost_caches.items()},
            "kv_transfers": self.transfers.completed if self.transfers else 0,
            "kv_bytes_moved": self.transfers.bytes_moved if self.transfers else 0.0,
            "kv_rate_changes": self.transfers.rate_changes if self.transfers else 0,
            "kv_peak_used_fraction": {k: max(s.kv.peak_blocks / s.kv.capacity_blocks for s in ss)
                                      for k, ss in self.pools.items()},
        }
        summary = summarize(req, steps, self.itl, self.dep, self.devices, dpn, extra)
        if self.prefix is not None:
            summary["prefix_cache"] = self.prefix.summary()
        if self.sessions is not None:
            summary["counts"]["session_turns_released"] = self.sessions.released
        ops = [(pool, src, kind, secs) for pool, c in self.cost_caches.items()
               for (src, kind), secs in sorted(c.detail_totals().items())]
        transfers = self.transfers.log_columns(TRANSFER_COLUMNS) if self.transfers else {}
        return SimResult(requests=req, step_table=steps, summary=summary, events=list(self.events),
                         op_seconds=ops, transfers=transfers or (), cache=self.prefix.log if self.prefix is not None else ())


#: arrival times ``Simulation._arrivals`` reads at a time
_ARRIVAL_CHUNK = 1 << 14
#: ``RunState`` arrays that only the event loop reads: released once the requests table is built
_STATE_DONE = ("s_req", "s_base", "s_blocks", "s_last_emit_s", "s_done", "prefill_target", "prefilled",
               "prompt_blocks", "prompt_blocks_need", "src_blocks", "streams_left")


def _op_seconds(cost, keys: dict) -> dict:
    """A step's operator seconds (one device, before overlap) by (source family, op kind):
    ``profile``, ``transfer``, ``roofline``, ``published``, ``model`` (collectives, dispatch).
    ``keys``: the run's key tuples, reused (a run keeps one such dict per cost-cache miss: thousands),
    and, under (source, kind, None), the key of each source and kind met."""
    out: dict = {}
    for o in cost.ops:
        key = keys.get((o.source, o.kind, None))  # the run's key of this source and kind, found before
        if key is None:
            key = (o.source.split(":", 1)[0], o.kind)
            key = keys[(o.source, o.kind, None)] = keys.setdefault(key, key)
        out[key] = out.get(key, 0.0) + o.seconds * o.count  # OpCost.total_s
    return out


def simulate(deployment, *, profile=None, step_cost=None, trace: bool = False, kv_capacity_tokens=None,
             progress: ProgressFn | None = None) -> SimResult:
    """Simulate ``deployment`` (a validated ``workloads.deployment.Deployment``).

    ``step_cost``: optional ``(pool_role, BatchShape) -> seconds`` replacing the cost model
    (the role is a ``workloads.pool_roles.PoolRole``, a str: ``colocated``, ``prefill``, ``decode``). ``profile``: calibration profile for the
    default cost model. ``trace``: record the event log. ``kv_capacity_tokens``: override
    the KV capacity per instance (an int, or a dict by pool name) for what-if runs and tests.
    ``progress``: a ``simulator.progress.ProgressFn`` told the requests finished and the
    simulated time as the run goes (None: nothing; the results are the same either way).
    """
    sim = Simulation(deployment, profile=profile, step_cost=step_cost, trace=trace,
                     kv_capacity_tokens=kv_capacity_tokens)
    result = sim.run(progress)
    sim.release()
    return result
