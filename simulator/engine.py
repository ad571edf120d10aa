"""The discrete-event serving engine: ``simulate(deployment) -> SimResult``.

One simpy process per instance loops: form a batch, ask the (cached, quantised) step cost,
``yield env.timeout(step)``, apply the step to the request arrays. Arrivals are one
process with one timeout per request; KV transfers are flows in ``simulator.transfer``.
There is no event per token or per kernel.

Batch formation (``Server._form``), Sarathi-Serve / Dynamic SplitFuse style:

1. decode streams already running go first (each uses 1 + MTP depth tokens of the budget);
   their KV growth for this step is reserved up front; if it does not fit, the most
   recently admitted requests are preempted (``recompute``: KV dropped, request back at the
   head of the queue to re-prefill prompt + generated tokens; ``swap``: KV copied to host
   over ``HOST_LINK_BYTES_PER_S`` and back later, both copies charged to the step);
2. prefill chunks of admitted requests continue, then new requests are admitted FCFS
   while the token budget (``max_tokens_per_iteration``), the batch-size cap
   (``max_batch_size`` streams) and KV (the whole prompt must fit: admission control) allow;
   without ``chunked_prefill`` a prompt only enters whole, and a prompt at the head of the
   queue that does not fit in the budget left beside the decode streams runs as a batch by
   itself (the decode streams skip that step), as vLLM schedules it; otherwise it would
   starve until the decode batch drained.

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
from collections import deque

import numpy as np
import pandas as pd
import simpy

from simulator.kv import BLOCK_TOKENS, KVBlocks, instance_kv_capacity_tokens
from simulator.metrics import ItlHistogram, summarize
from simulator.policies import StepCostCache, make_router
from simulator.requests import RunState
from simulator.result import OP_SECONDS_COLUMNS, REQUEST_COLUMNS, STEP_COLUMNS, TRANSFER_COLUMNS, SimResult
from simulator.transfer import TransferManager, kv_links
from simulator.workload import generate_workload

#: host link per device for KV swap, bytes/s: PCIe 5.0 x16 is 64 GB/s per direction nominal;
#: 50e9 assumes ~80% achievable (assumed, not measured here)
HOST_LINK_BYTES_PER_S = 50e9
_EMPTY = np.empty(0, dtype=np.int64)


def _ceil_blocks(tokens):
    return (tokens + (BLOCK_TOKENS - 1)) // BLOCK_TOKENS


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

    def __init__(self, sim: "Simulation", index: int, pool_name: str, role: str, pool, kv_tokens: float,
                 costs: StepCostCache, kv_bytes_per_token_device: float):
        self.sim, self.index, self.pool_name, self.role = sim, index, pool_name, role
        self.max_batch = pool.max_batch_size
        self.budget = pool.max_tokens_per_iteration
        self.chunked = pool.chunked_prefill
        # speculative decoding: MTP modules or a draft model propose ``mtp_depth`` tokens per
        # step, accepted as a chain with per-token probability ``mtp_acceptance``
        self.mtp_depth = pool.speculative_depth if role != "prefill" else 0
        self.mtp_acceptance = (pool.mtp_acceptance if pool.mtp_depth
                               else chain_acceptance(pool.draft_accepted_tokens, pool.draft_tokens))
        self.k = 1 + self.mtp_depth
        self.kv = KVBlocks(kv_tokens)
        self.costs = costs
        self.swap_s_per_token = kv_bytes_per_token_device / pool.attention.sp / HOST_LINK_BYTES_PER_S
        self.waiting: deque[int] = deque()
        self.swapped: deque[int] = deque()
        self.prefilling: list[int] = []
        self.pending: deque[tuple[int, "Server"]] = deque()
        self.run = _EMPTY
        self.joining: list[int] = []
        self.committed = 0  # batch slots held: streams (prefill role: requests)
        self.outstanding = 0  # requests routed here and not finished / handed off
        self.queued_blocks = 0  # KV blocks of requests queued here, not yet admitted
        self._wake: simpy.Event | None = None
        sim.env.process(self._loop())

    # ------------------------------------------------------------------ plumbing
    def kick(self) -> None:
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def enqueue(self, r: int) -> None:
        self.waiting.append(r)
        self.outstanding += 1
        self.queued_blocks += self.request_blocks(r)
        self.kick()

    def request_blocks(self, r: int) -> int:
        """Blocks request r needs on admission: its prompt plus each live stream's tokens."""
        st = self.sim.st
        if st.samples == 1:  # fast path: stream id == request id
            return 0 if st.s_done[r] else st.prompt_blocks_need[r] + (max(int(st.s_gen[r]), 1) + BLOCK_TOKENS - 1) // BLOCK_TOKENS
        live = st.live_streams(r)
        return st.prompt_blocks_need[r] + int(_ceil_blocks(np.maximum(st.s_gen[live], 1)).sum())

    def _reserve(self, r: int) -> int:
        """Allocate request r's blocks here; returns its live stream count."""
        st = self.sim.st
        pb = st.prompt_blocks_need[r]
        st.prompt_blocks[r] = pb
        if st.samples == 1:
            sb = (max(int(st.s_gen[r]), 1) + BLOCK_TOKENS - 1) // BLOCK_TOKENS
            st.s_blocks[r] = sb
            self.kv.alloc(pb + sb)
            return 1
        live = st.live_streams(r)
        sb = _ceil_blocks(np.maximum(st.s_gen[live], 1))
        st.s_blocks[live] = sb
        self.kv.alloc(pb + int(sb.sum()))
        return len(live)

    def _release(self, r: int) -> int:
        """Free all KV of request r here; returns its live stream count."""
        st = self.sim.st
        live = st.live_streams(r)
        self.kv.free(int(st.prompt_blocks[r]) + int(st.s_blocks[live].sum()))
        st.prompt_blocks[r] = 0
        st.s_blocks[live] = 0
        return len(live)

    # ------------------------------------------------------------------ the loop
    def _loop(self):
        env = self.sim.env
        while True:
            plan = self._form()
            if plan is None:
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            dt = plan[0]
            yield env.timeout(dt)
            self._apply(plan)

    def _form(self):
        st = self.sim.st
        if self.joining:
            j = np.asarray(self.joining, dtype=np.int64)
            self.joining.clear()
            j = j[~st.s_done[j]]
            self.run = np.concatenate((self.run, j)) if self.run.size else j
        alone = self._over_budget_head()
        if alone is not None:
            self._admit(alone)
            return self._plan(_EMPTY, [(alone, int(st.prefill_target[alone] - st.prefilled[alone]))], [], 0.0)
        extra_s = 0.0
        run = self.run
        k = self.k
        if run.size:
            while True:
                need = _ceil_blocks(np.minimum(st.s_gen[run] + k, st.s_target[run]))
                grow = int(np.maximum(need - st.s_blocks[run], 0).sum())
                if grow <= self.kv.free_blocks or run.size == 0:
                    break
                extra_s += self._preempt(int(st.s_req[run[-1]]))
                run = self.run
            if run.size and grow:
                self.kv.alloc(grow)
                st.s_blocks[run] = np.maximum(need, st.s_blocks[run])
        n_dec = int(run.size)
        budget = self.budget - n_dec * k
        chunks: list[tuple[int, int]] = []
        swapins: list[int] = []
        if self.prefilling or self.waiting or self.swapped:
            for r in self.prefilling:
                c = self._chunk(r, budget, not chunks and n_dec == 0)
                if c <= 0:
                    break
                chunks.append((r, c))
                budget -= c
            while self.swapped:
                r = self.swapped[0]
                need_b = self.request_blocks(r)
                live = st.live_count(r)
                if self.committed + live > self.max_batch or not self.kv.fits(need_b):
                    break
                self.swapped.popleft()
                self._reserve(r)
                self.committed += live
                extra_s += self.swap_s_per_token * int(st.prompt[r] + st.s_gen[st.live_streams(r)].sum())
                swapins.append(r)
            while self.waiting and budget > 0 and not self.swapped:
                r = self.waiting[0]
                if not self._admissible(r):
                    break
                c = self._chunk(r, budget, not chunks and n_dec == 0)
                if c <= 0:
                    break
                self._admit(r)
                chunks.append((r, c))
                budget -= c
        if not n_dec and not chunks and not swapins:
            return None
        return self._plan(run, chunks, swapins, extra_s)

    def _chunk(self, r: int, budget: int, first: bool) -> int:
        """Tokens of r's prompt to prefill this step: the rest if it fits in ``budget``, else a
        chunk of the budget (chunked prefill), else the whole prompt if it is the step's only
        work, else nothing."""
        rem = int(self.sim.st.prefill_target[r] - self.sim.st.prefilled[r])
        if rem <= budget:
            return rem
        return budget if self.chunked else (rem if first else 0)

    def _admissible(self, r: int) -> bool:
        """Whether waiting request r fits the batch-size cap and KV now. Watermark: one block
        per running stream stays free for its next step's growth, or a newly admitted prefill
        can force the preemption of a stream that has just joined, and two requests can evict
        each other forever without decoding (recompute livelock)."""
        live = 1 if self.role == "prefill" else self.sim.st.live_count(r)
        return self.committed + live <= self.max_batch and self.kv.fits(self.request_blocks(r) + int(self.run.size))

    def _admit(self, r: int) -> None:
        """Move the head of the queue, r, into prefill: reserve its KV and batch slots."""
        sim, st = self.sim, self.sim.st
        self.waiting.popleft()
        self.queued_blocks -= self.request_blocks(r)
        self._reserve(r)
        self.committed += 1 if self.role == "prefill" else st.live_count(r)
        self.prefilling.append(r)
        if math.isnan(st.schedule_s[r]):
            st.schedule_s[r] = sim.env.now
            sim.event("schedule", r, self.index)

    def _over_budget_head(self) -> int | None:
        """Without chunked prefill: the head of the queue when its prompt does not fit in the
        token budget left beside the running decode streams, and it fits KV and the batch cap.
        It runs as a batch by itself (the decode streams skip that one step), as vLLM schedules
        a prompt on its own; mixing it in would exceed the budget, and waiting for room would
        starve it until the decode batch drained."""
        if self.chunked or self.prefilling or self.swapped or not self.waiting:
            return None
        r = self.waiting[0]
        rem = int(self.sim.st.prefill_target[r] - self.sim.st.prefilled[r])
        if rem <= self.budget - int(self.run.size) * self.k or not self._admissible(r):
            return None
        return r

    def _plan(self, run, chunks: list[tuple[int, int]], swapins: list[int], extra_s: float):
        """Cost the step (decode streams ``run``, prefill ``chunks``) and record it."""
        sim, st = self.sim, self.sim.st
        n_dec, k = int(run.size), self.k
        ctoks = sum(c for _, c in chunks)
        cctx = sum(int(st.cached[r] + st.prefilled[r]) for r, _ in chunks)
        dec_ctx = float(st.s_base[run].sum() + st.s_gen[run].sum()) / n_dec if n_dec else 0.0
        if n_dec or chunks:
            secs, comp, comm = self.costs.cost(n_dec, dec_ctx, len(chunks), ctoks,
                                               cctx / len(chunks) if chunks else 0.0)
        else:
            secs = comp = comm = 0.0
        dt = secs + extra_s
        sim.steps.append((sim.env.now, self.index, self.pool_name, n_dec + len(chunks), n_dec, ctoks,
                          n_dec * k + ctoks, dt, self.kv.used_fraction, comp, comm))
        return dt, run, chunks, swapins

    def _preempt(self, r: int) -> float:
        """Evict request r (LIFO victim); returns the swap-out seconds to charge."""
        sim, st = self.sim, self.sim.st
        self.run = self.run[st.s_req[self.run] != r]
        live = st.live_streams(r)
        gen_tokens = int(st.s_gen[live].sum())
        self.committed -= self._release(r)
        st.preemptions[r] += 1
        sim.event("preempt", r, self.index)
        if sim.swap:
            self.swapped.append(r)
            return self.swap_s_per_token * int(st.prompt[r] + gen_tokens)
        st.prefill_target[r] = st.prompt[r] - st.cached[r] + gen_tokens
        st.prefilled[r] = 0
        self.waiting.appendleft(r)
        self.queued_blocks += self.request_blocks(r)
        return 0.0

    # ------------------------------------------------------------------ applying a step
    def _apply(self, plan) -> None:
        _, run, chunks, swapins = plan
        sim, st = self.sim, self.sim.st
        now = sim.env.now
        if run.size:
            gen = st.s_gen[run]
            owed = st.s_target[run] - gen
            if self.mtp_depth == 1:
                emitted = np.minimum(1 + (sim.rng_accept.random(run.size) < self.mtp_acceptance), owed)
            elif self.mtp_depth:
                ok = sim.rng_accept.random((run.size, self.mtp_depth)) < self.mtp_acceptance
                emitted = np.minimum(1 + np.cumprod(ok, axis=1).sum(axis=1), owed)
            else:
                emitted = np.minimum(1, owed)
            sim.itl.add(now - st.s_last_emit_s[run])
            st.s_last_emit_s[run] = now
            gen = gen + emitted
            st.s_gen[run] = gen
            fin = gen >= st.s_target[run]
            if fin.any():
                for s in run[fin].tolist():
                    if not st.s_done[s]:
                        self._finish_stream(s, now)
                self.run = self.run[~st.s_done[self.run]]
        for r in swapins:
            self.joining.extend(st.live_streams(r))
        handoff = []
        for r, c in chunks:
            st.prefilled[r] += c
            if st.prefilled[r] >= st.prefill_target[r]:
                self.prefilling.remove(r)
                if self._prefill_done(r, now):
                    handoff.append(r)
        if handoff:
            sim.handoff(handoff, self)
        if self.role == "decode" and self.pending:
            self.start_pending()

    def _prefill_done(self, r: int, now: float) -> bool:
        """Prefill of r finished; True when r goes on to a decode instance."""
        sim, st = self.sim, self.sim.st
        streams = st.streams(r)
        if math.isnan(st.first_token_s[r]):
            st.first_token_s[r] = now
            sim.event("first_token", r, self.index)
            st.s_gen[streams.start:streams.stop] = 1
            st.s_last_emit_s[streams.start:streams.stop] = now
            if self.role == "prefill":
                self.committed -= 1
            for s in streams:
                if not st.s_done[s] and st.s_target[s] <= 1:
                    self._finish_stream(s, now)
        if st.streams_left[r] == 0:
            return False
        if self.role == "prefill":
            self.outstanding -= 1
            return True
        self.joining.extend(st.live_streams(r))
        return False

    def _finish_stream(self, s: int, now: float) -> None:
        sim, st = self.sim, self.sim.st
        r = int(st.s_req[s])
        st.s_done[s] = True
        self.kv.free(int(st.s_blocks[s]))
        st.s_blocks[s] = 0
        if self.role != "prefill":
            self.committed -= 1
        st.streams_left[r] -= 1
        if sim.first_finish and st.streams_left[r] > 0:
            for s2 in st.live_streams(r):
                st.s_done[s2] = True
                self.kv.free(int(st.s_blocks[s2]))
                st.s_blocks[s2] = 0
                if self.role != "prefill":
                    self.committed -= 1
                st.cancelled[r] += 1
            st.streams_left[r] = 0
            sim.event("cancel", r, self.index)
        if st.streams_left[r] == 0:
            st.finish_s[r] = now
            self.kv.free(int(st.prompt_blocks[r]))
            st.prompt_blocks[r] = 0
            self.outstanding -= 1
            sim.event("finish", r, self.index)

    # ------------------------------------------------------------------ decode side of P/D
    def offer(self, r: int, src: "Server") -> None:
        self.pending.append((r, src))
        self.outstanding += 1
        self.queued_blocks += self.request_blocks(r)

    def start_pending(self) -> None:
        """Start the transfers of pending requests whose KV fits here (FCFS)."""
        sim, st = self.sim, self.sim.st
        groups: dict[int, list[int]] = {}
        srcs: dict[int, Server] = {}
        while self.pending:
            r, src = self.pending[0]
            live = st.live_count(r)
            need_b = self.request_blocks(r)
            if self.committed + live > self.max_batch or not self.kv.fits(need_b):
                break
            self.pending.popleft()
            self.queued_blocks -= need_b
            # the prefill side keeps its copy until the transfer completes
            st.src_blocks[r] = int(st.prompt_blocks[r]) + int(st.s_blocks[st.live_streams(r)].sum())
            self._reserve(r)
            self.committed += live
            groups.setdefault(src.index, []).append(r)
            srcs[src.index] = src
        for i, rs in groups.items():
            nbytes = sim.kv_bytes_per_token * float(sum(int(st.prompt[r]) for r in rs))
            for r in rs:
                sim.event("kv_transfer_start", r, self.index)
            sim.transfers.start(i, self.index, nbytes, (srcs[i], self, rs))


class Simulation:
    """One run: environment, RNG streams, request arrays, servers, transfers, records."""

    def __init__(self, dep, *, profile=None, step_cost=None, trace: bool = False, kv_capacity_tokens=None):
        self.dep = dep
        self.env = simpy.Environment()
        ss = np.random.SeedSequence(dep.seed)
        rng_arr, rng_len, self.rng_route, self.rng_accept = (np.random.default_rng(s) for s in ss.spawn(4))
        wl = generate_workload(dep.workload, rng_arr, rng_len)
        self.st = RunState(wl)
        self.trace = trace
        self.events: list[tuple] = []
        self.steps: list[tuple] = []
        self.itl = ItlHistogram()
        self.swap = dep.scheduler.preemption == "swap"
        self.first_finish = dep.workload.sample_policy == "first_finish" and wl.samples > 1
        self._build(profile, step_cost, kv_capacity_tokens)

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
        ids = itertools.count()
        self.pools: dict[str, list[Server]] = {}
        self.cost_caches: dict[str, StepCostCache] = {}
        for name, pool in dep.pools().items():
            role = name if disagg else "colocated"
            if step_cost is not None:
                def fn(shape, _role=role):
                    s = float(step_cost(_role, shape))
                    return s, s, 0.0
            else:
                from simulator.instance import InstanceCost, spec_from_pool

                ic = InstanceCost(spec_from_pool(model, cluster, pool, dep.weight_dtype, dep.kv_dtype), profile)

                def fn(shape, _ic=ic):
                    c = _ic.step(shape)
                    return float(c.seconds), float(c.compute_s), float(c.comm_s), _op_seconds(c)
            costs = self.cost_caches[name] = StepCostCache(fn, 1 + (pool.speculative_depth if role != "prefill" else 0))
            if kv_override is None:
                kv_tokens = instance_kv_capacity_tokens(model, pool, cluster.device, dep.weight_dtype, dep.kv_dtype)
            else:
                kv_tokens = float(kv_override[name] if isinstance(kv_override, dict) else kv_override)
            mem = pool_memory(model, pool, cluster.device, dep.weight_dtype, dep.kv_dtype)
            self.pools[name] = [Server(self, next(ids), name, role, pool, kv_tokens, costs, mem.kv_bytes_per_token)
                                for _ in range(pool.instances)]
            self._check_fits(name, kv_tokens)
            if role != "prefill" and pool.max_batch_size < self.st.samples:
                raise ValueError(f"serving.{name}.max_batch_size: {pool.max_batch_size} is below "
                                 f"workload.samples_per_request {self.st.samples} (a request's samples decode together)")
        self.front = self.pools["prefill" if disagg else "pool"]
        self.router = make_router(dep.scheduler.router)
        self.servers = [s for ss in self.pools.values() for s in ss]
        if disagg:
            self.decode_router = make_router(dep.scheduler.router)
            caps = kv_links(cluster, dep.serving.prefill, dep.serving.decode,
                            [s.index for s in self.pools["prefill"]], [s.index for s in self.pools["decode"]])
            self.transfers = TransferManager(self.env, caps, self._transfer_done)
        else:
            self.transfers = None
        self.devices = sum(p.devices for p in dep.pools().values())

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

    def _arrivals(self):
        env, st = self.env, self.st
        arrival = st.arrival_s.tolist()
        front, router = self.front, self.router
        for r, t in enumerate(arrival):
            if t > env.now:
                yield env.timeout(t - env.now)
            i = router.choose(front)
            st.prefill_inst[r] = front[i].index
            self.event("arrival", r, front[i].index)
            front[i].enqueue(r)
            if front is self.pools.get("pool"):
                st.decode_inst[r] = front[i].index

    def handoff(self, rs: list[int], src: Server) -> None:
        decode = self.pools["decode"]
        touched = {}
        for r in rs:
            d = decode[self.decode_router.choose(decode)]
            self.st.decode_inst[r] = d.index
            d.offer(r, src)
            touched[d.index] = d
        for d in touched.values():
            d.start_pending()

    def _transfer_done(self, payload, start_s: float) -> None:
        src, dst, rs = payload
        st, now = self.st, self.env.now
        for r in rs:
            src.kv.free(int(st.src_blocks[r]))
            st.src_blocks[r] = 0
            st.transfer_s[r] = now - start_s
            self.event("kv_transfer_end", r, dst.index)
            dst.joining.extend(st.live_streams(r))
        dst.kick()
        src.kick()

    # ------------------------------------------------------------------ run
    def run(self) -> SimResult:
        self.env.process(self._arrivals())
        self.env.run()
        return self._result()

    def _result(self) -> SimResult:
        st = self.st
        n = st.samples
        gen = st.s_gen.reshape(st.num_requests, n)
        tgt = st.s_target.reshape(st.num_requests, n)
        longest = gen.max(axis=1) if st.num_requests else np.zeros(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(longest > 1, (st.finish_s - st.first_token_s) / (longest - 1), np.nan)
        req = pd.DataFrame({
            "id": np.arange(st.num_requests), "arrival_s": st.arrival_s, "prompt_tokens": st.prompt,
            "cached_tokens": st.cached, "output_tokens": gen.sum(axis=1), "target_output_tokens": tgt.sum(axis=1),
            "samples": np.full(st.num_requests, n), "first_token_s": st.first_token_s, "finish_s": st.finish_s,
            "ttft_s": st.first_token_s - st.arrival_s, "tpot_s": tpot, "e2e_s": st.finish_s - st.arrival_s,
            "queue_s": st.schedule_s - st.arrival_s, "transfer_s": st.transfer_s,
            "prefill_instance": st.prefill_inst, "decode_instance": st.decode_inst,
            "preemptions": st.preemptions, "cancelled_samples": st.cancelled,
        }, columns=list(REQUEST_COLUMNS))
        steps = pd.DataFrame.from_records(self.steps, columns=list(STEP_COLUMNS))
        dpn = self.cluster.devices_per_node
        extra = {
            "iterations": len(self.steps),
            "cost_model_calls": {k: c.misses for k, c in self.cost_caches.items()},
            "kv_transfers": self.transfers.completed if self.transfers else 0,
            "kv_bytes_moved": self.transfers.bytes_moved if self.transfers else 0.0,
            "kv_rate_changes": self.transfers.rate_changes if self.transfers else 0,
            "kv_peak_used_fraction": {k: max(s.kv.peak_blocks / s.kv.capacity_blocks for s in ss)
                                      for k, ss in self.pools.items()},
        }
        summary = summarize(req, steps, self.itl, self.dep, self.devices, dpn, extra)
        ops = [(pool, src, kind, secs) for pool, c in self.cost_caches.items()
               for (src, kind), secs in sorted(c.detail_totals().items())]
        transfers = self.transfers.log if self.transfers else []
        return SimResult(requests=req, steps=steps, summary=summary, events=list(self.events),
                         op_seconds=pd.DataFrame(ops, columns=list(OP_SECONDS_COLUMNS)),
                         transfers=pd.DataFrame(transfers, columns=list(TRANSFER_COLUMNS)))


def _op_seconds(cost) -> dict:
    """A step's operator seconds (one device, before overlap) by (source family, op kind):
    ``profile``, ``transfer``, ``roofline``, ``published``, ``model`` (collectives, dispatch)."""
    out: dict = {}
    for o in cost.ops:
        key = (o.source.split(":", 1)[0], o.kind)
        out[key] = out.get(key, 0.0) + o.total_s
    return out


def simulate(deployment, *, profile=None, step_cost=None, trace: bool = False, kv_capacity_tokens=None) -> SimResult:
    """Simulate ``deployment`` (a validated ``workloads.deployment.Deployment``).

    ``step_cost``: optional ``(pool_role, BatchShape) -> seconds`` replacing the cost model
    (roles: ``colocated``, ``prefill``, ``decode``). ``profile``: calibration profile for the
    default cost model. ``trace``: record the event log. ``kv_capacity_tokens``: override
    the KV capacity per instance (an int, or a dict by pool name) for what-if runs and tests.
    """
    return Simulation(deployment, profile=profile, step_cost=step_cost, trace=trace,
                      kv_capacity_tokens=kv_capacity_tokens).run()
