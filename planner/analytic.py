"""Steady-state analytic ranking of layouts, built on the simulator's own step cost model.

Every step time comes from ``simulator.instance.InstanceCost.step`` (the function the engine
calls). What this module adds is the steady state around it:

* **Decode** (per attention-DP rank batch ``b``): TPOT(b) = pp x step(b) / (1 + MTP
  acceptance x depth). The largest ``b`` whose TPOT meets the SLO, capped by the batch limit
  and the KV capacity, bounds the pool's tokens/s; near that cap a request waits for a slot
  (M/D/c, ``planner.queueing.mdc_wait_p``), and the wait counts in its TPOT.
* **Prefill**: an iteration carries whole prompts up to the instance's token budget (a chunk
  of the next one fills the rest when more wait). The instance is a batching server:
  ``planner.queueing.batch_server_ttft_p`` on the staircase of iteration times by prompts
  (costed as the engine quantises its batches), TTFT ending with the prefill as the engine
  measures it (``Evaluator._prefill_core_s``). The largest rate whose TTFT percentile meets
  the SLO is the pool's capacity.
* **Disaggregated**: capacity = min(prefill instances x prefill capacity, decode instances x
  decode capacity); the enumeration of instance counts balances input vs output token rates.
  At the operating rate the decode batch is the one that carries exactly that rate. TPOT, as
  the engine measures it from the first token, also holds the prompt's KV handoff to the
  decode instance: ``hardware.kv_transfer.kv_transfer_seconds`` (the transfer alone on the
  fabric; the simulator adds contention) spread over the output's inter-token gaps.
* **Colocated** (chunked prefill): per iteration each rank runs ``b`` decode sequences, and
  prompts enter at the rate requests leave (Little's law); an iteration that carries prefill
  costs step_prefill(busiest rank's tokens) instead of step_decode(1) on top of
  step_decode(b) (weights are read once); TPOT's percentile counts how many such stalls a
  request sees (``Evaluator.colocated_state``).

Speed: step costs are memoised per pool cost key on a grid (decode batch per rank at powers of
two; prefill tokens per rank at powers of two times the prompt) and interpolated linearly; the
SLO crossing is a binary search over the grid (a handful of cost-model calls per key) and then
bisection on the interpolant. Layouts that share a pool choice reuse its capacity, so most
layout evaluations are a few float operations.

Redundant experts: the op lists need ``ep | routed experts``. An instance with EP ``e`` over
``routed + redundant`` slots (s slots per rank) is costed as the instance with EP ``routed /
s`` and the same per-rank batch: per-rank attention, expert and dispatch work are the same;
only the dispatch group is smaller (a small optimistic bias, see README).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from hardware.kv_transfer import kv_transfer_seconds
from planner.feasibility import check_rules, choice_memory, instance_spec, pool_fit
from planner.queueing import batch_server_ttft_p, kingman_wait_p, mdc_wait_p
from planner.rows import Block, Columns, layout_rows
from simulator.instance import InstanceCost
from simulator.kv import BLOCK_TOKENS
from simulator.policies import StepCostCache
from workloads.ops import BatchShape

__all__ = ["UniformBatch", "equivalent_batch", "engine_step_s", "load_profile_for", "PoolModel", "Evaluator",
           "kingman_wait_p", "share_with_workers", "worker_evaluator"]

_DEC_EXP_MAX = 14  # decode grid: batch per rank up to 2**14
_PREFILL_GRID = 6  # prefill TTFT table: rates per instance from 0 towards the saturation rate
_PREFILL_BISECT = 5  # bisection steps of a prefill instance's capacity within its grid interval
_PRE_EXP = range(-6, 7)  # prefill grid: tokens per rank = prompt x 2**j


class UniformBatch(BatchShape):
    """A BatchShape whose ``split`` is O(parts) when every sequence is alike.

    ``BatchShape.split`` places sequences one at a time (O(seqs x parts)), which dominates a
    step of a 320-rank instance. For uniform sequences its greedy result is known: the first
    ``seqs mod parts`` ranks get one more sequence. Returns the same shapes (ints instead of
    equal tuples); ``tests/test_planner.py`` checks the step costs are identical.
    """

    def split(self, parts: int):
        if isinstance(self.new_tokens, tuple) or isinstance(self.context_tokens, tuple):
            return super().split(parts)
        q, r = divmod(self.num_seqs, parts)
        mk = lambda n: UniformBatch(phase=self.phase, num_seqs=n, new_tokens=self.new_tokens,  # noqa: E731
                                    context_tokens=self.context_tokens, logits_for=self.logits_for)
        big, small = mk(q + 1), mk(q)
        return tuple([big] * r + [small] * (parts - r))


def equivalent_batch(shape, keep: float):
    """The batch of the equivalent instance (``planner.feasibility.instance_spec``: ``keep`` x the DP ranks) that
    carries the same per-rank load as ``shape`` on the real instance."""
    n = shape.num_seqs
    if keep >= 1.0 or n == 0:
        return shape
    if not isinstance(shape.new_tokens, tuple) and not isinstance(shape.context_tokens, tuple):
        return UniformBatch(phase=shape.phase, num_seqs=max(1, round(n * keep)), new_tokens=shape.new_tokens,
                            context_tokens=shape.context_tokens, logits_for=shape.logits_for)
    idx = [i for i in range(n) if math.floor((i + 1) * keep) > math.floor(i * keep)] or [0]
    new, ctxs = shape.new_list, shape.context_list
    return type(shape)(phase=shape.phase, num_seqs=len(idx), new_tokens=tuple(new[i] for i in idx),
                       context_tokens=tuple(ctxs[i] for i in idx), logits_for=shape.logits_for)


def load_profile_for(profile: str | None, device_name: str) -> Any:
    """The calibration profile a plan names, for ``device_name`` (``calibration.resolve``: None,
    'default', a shipped name or a directory; a measured directory is layered over the shipped one)."""
    from calibration.resolve import resolve_profile

    return resolve_profile(profile, device_name)


def _interp(x: float, xs: tuple, ys: tuple) -> float:
    """Linear interpolation on an increasing grid (inf beyond the last finite point)."""
    if x <= xs[0]:
        return ys[0]
    i = bisect.bisect_left(xs, x)
    if i >= len(xs):
        return math.inf
    y0, y1 = ys[i - 1], ys[i]
    if not math.isfinite(y1):
        return math.inf
    return y0 + (y1 - y0) * (x - xs[i - 1]) / (xs[i] - xs[i - 1])


def _bisect_max(pred, lo: float, hi: float, iters: int = 30) -> float:
    """Largest x in [lo, hi] with pred(x), given pred(lo) and not pred(hi) (monotone)."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if pred(mid):
            lo = mid
        else:
            hi = mid
    return lo


def spec_key(spec) -> tuple:
    """A dict key of an ``InstanceSpec`` within one process (it does not hash: its cluster holds
    mappings): its model, cluster and draft model by identity (an ``Evaluator`` has one of each),
    its other fields by value."""
    return (id(spec.model), id(spec.cluster), id(spec.draft_model), spec.layout, spec.weight_dtype, spec.kv_dtype,
            spec.moe_imbalance, spec.mtp_depth, spec.draft_tokens, spec.kernels)


class PoolModel:
    """Memoised step costs of one instance configuration (one pool cost key)."""

    def __init__(self, ctx, choice, model, cluster, profile, cost_models=None, instances: dict | None = None):
        """``instances``: the ``InstanceCost`` of each instance spec, shared by the pool models of
        cost keys that cost as the same instance (redundant experts folded into an equivalent
        EP, ``instance_spec``), so their steps are costed once."""
        self.choice = choice  # one choice of this cost key (``Evaluator.export_state``)
        self.spec = instance_spec(ctx, choice, model, cluster)
        key = spec_key(self.spec)
        inst = instances.get(key) if instances is not None else None
        if inst is None:
            inst = InstanceCost(self.spec, profile)
            if cost_models is not None:
                inst.share_cost_models(*cost_models)
            if instances is not None:
                instances[key] = inst
        self.inst = inst
        self.dp = self.spec.layout.dp
        self.pp = choice.layout.pp
        self.new = 1 + choice.mtp_depth
        self.ctx_tokens = int(round(ctx.prompt_tokens + ctx.output_tokens / 2.0))
        self.prompt = max(1, int(round(ctx.prefill_tokens)))
        self.cached = int(round(ctx.cached_tokens))
        self.real_dp = choice.layout.dp  # DP ranks of the real instance (``dp`` is the equivalent's)
        self.keep = self.dp / choice.layout.dp
        self._dec: dict[int, float] = {}
        self._seg: dict[int, tuple] = {}  # e -> (step at 2**e, step at 2**(e+1) less it, 2**e): decode_step_s
        self._bfr: dict[tuple, float] = {}  # (rate, batch cap, tokens a step, output tokens) -> batch_for_rate
        self._pre: dict[int, float] = {}
        self._pk: dict = {}  # k whole prompts, or (chunks, tokens) of a filled budget
        # the engine's own quantisation of a batch (simulator.policies): its prefill costs, and
        # (no costing) its chunk counts
        self._engine = StepCostCache(lambda shape: (engine_step_s(self.inst, self.keep, shape), 0.0, 0.0))
        self._shape_chunks = StepCostCache(lambda shape: (float(shape.num_seqs), 0.0, 0.0))
        self.calls = 0

    # decode -----------------------------------------------------------------------------
    def _dec_at(self, e: int) -> float:
        t = self._dec.get(e)
        if t is None:
            b = 2**e
            self.calls += 1
            t = self.inst.step(UniformBatch(phase="decode", num_seqs=b * self.dp, new_tokens=self.new,
                                            context_tokens=self.ctx_tokens)).seconds
            self._dec[e] = t
        return t

    def decode_step_s(self, b: float) -> float:
        """Step time at ``b`` sequences per attention-DP rank (linear between powers of two).
        (It runs ~10^6 times a plan: the grid's intervals are read from a memo, ``_segment``,
        and ``2**(e+1) - 2**e`` is written ``2**e``, the same integer.)"""
        if b <= 1.0:
            return self._dec_at(0)
        e = int(math.log2(b))
        if e > _DEC_EXP_MAX - 1:
            e = _DEC_EXP_MAX - 1
        seg = self._seg.get(e)
        if seg is None:
            seg = self._segment(e)
        t0, dt, lo = seg
        return t0 + dt * (b - lo) / lo

    def _segment(self, e: int) -> tuple:
        """``(t0, t1 - t0, 2**e)`` of the decode grid's interval ``e`` (memoised: the same floats
        ``t0 + (t1 - t0) * (b - lo) / lo`` reads, its subtraction done once)."""
        t0, t1 = self._dec_at(e), self._dec_at(e + 1)
        seg = self._seg[e] = (t0, t1 - t0, 1 << e)
        return seg

    def batch_for_rate(self, lam: float, b_hi: float, k: float, out_tokens: float) -> float:
        """Largest decode batch per rank in [0, ``b_hi``] whose ``b dp k / step(b) / out_tokens``
        (requests/s with ``k`` tokens a step) is at most ``lam`` (``_batch_for_rate``), memoised:
        a decode capacity's bisections over the rate (one per KV handoff gap, and the operating
        batch at the end) ask the same rates again (~1/3 of the ~1.3 x 10^4 calls of h200x32)."""
        key = (lam, b_hi, k, out_tokens)
        b = self._bfr.get(key)
        if b is None:
            b = self._bfr[key] = self._batch_for_rate(lam, b_hi, k, out_tokens)
        return b

    def _batch_for_rate(self, lam: float, b_hi: float, k: float, out_tokens: float) -> float:
        """``batch_for_rate``: ``b_hi`` itself, else 40 halvings of [0, b_hi] (throughput is
        increasing in b). It runs ~10^4 times a plan, 40 steps each: ``decode_step_s``'s
        interpolation is inlined, the same arithmetic."""
        dp = self.dp
        if b_hi * dp * k / self.decode_step_s(b_hi) / out_tokens <= lam:
            return b_hi
        segs, log2, top = self._seg, math.log2, _DEC_EXP_MAX - 1
        lo, hi = 0.0, b_hi
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if mid <= 1.0:
                t = self._dec_at(0)
            else:
                e = int(log2(mid))
                if e > top:
                    e = top
                seg = segs.get(e)
                if seg is None:
                    seg = self._segment(e)
                t0, dt, base = seg
                t = t0 + dt * (mid - base) / base
            if mid * dp * k / t / out_tokens <= lam:
                lo = mid
            else:
                hi = mid
        return lo

    def max_decode_batch(self, pred, b_cap: float) -> float | None:
        """Largest b in [1, b_cap] with pred(b) (monotone); None when pred(1) fails."""
        b_cap = min(b_cap, float(2**_DEC_EXP_MAX))
        if b_cap < 1.0 or not pred(1.0):
            return None
        if pred(b_cap):
            return b_cap
        lo_e, hi_e = 0, max(1, math.ceil(math.log2(b_cap)))
        while hi_e - lo_e > 1:
            mid = (lo_e + hi_e) // 2
            if pred(float(2**mid)):
                lo_e = mid
            else:
                hi_e = mid
        return _bisect_max(pred, float(2**lo_e), min(float(2**hi_e), b_cap))

    # prefill ----------------------------------------------------------------------------
    def _pre_at(self, j: int) -> float:
        t = self._pre.get(j)
        if t is None:
            self.calls += 1
            P = self.prompt
            if j >= 0:
                shape = UniformBatch(phase="prefill", num_seqs=(2**j) * self.dp, new_tokens=P,
                                     context_tokens=self.cached)
            else:
                n = max(1, int(round(P * 2.0**j)))
                shape = UniformBatch(phase="prefill", num_seqs=self.dp, new_tokens=n,
                                     context_tokens=self.cached + (P - n) // 2)
            t = self.inst.step(shape).seconds
            self._pre[j] = t
        return t

    def prefill_step_s(self, n: float) -> float:
        """Iteration time for ``n`` new tokens per attention-DP rank (whole prompts when n >= prompt)."""
        P = float(self.prompt)
        jmin, jmax = _PRE_EXP.start, _PRE_EXP.stop - 1
        r = max(n / P, 2.0**jmin)
        j = min(max(int(math.floor(math.log2(r))), jmin), jmax - 1)
        lo, hi = P * 2.0**j, P * 2.0 ** (j + 1)
        t0, t1 = self._pre_at(j), self._pre_at(j + 1)
        return max(t0 + (t1 - t0) * (max(n, P * 2.0**jmin) - lo) / (hi - lo), 1e-9)

    def _engine_prefill_s(self, key, chunks: int, tokens: int) -> float:
        """A prefill iteration of ``chunks`` chunks and ``tokens`` new tokens as the engine costs
        it: its quantised shape (``simulator.policies.StepCostCache``) on this instance."""
        t = self._pk.get(key)
        if t is None:
            self.calls += 1
            t = self._engine.cost(0, 0.0, chunks, tokens, float(self.cached))[0]
            self._pk[key] = t
        return t

    def engine_chunks(self, chunks: int, tokens: int) -> int:
        """How many chunks the engine's quantised shape of such an iteration has (no costing)."""
        return int(self._shape_chunks.cost(0, 0.0, chunks, tokens, float(self.cached))[0])

    def filled_budget_s(self, chunks: int, tokens: int) -> float:
        """An iteration whose token budget a chunk of the next prompt fills: ``chunks`` chunks,
        ``tokens`` tokens (the engine spreads them evenly over the chunks)."""
        return self._engine_prefill_s((chunks, tokens), chunks, tokens)

    def prompt_batch_steps(self, cap: int) -> tuple[float, ...]:
        """``steps[k]``: an iteration of ``k`` whole prompts on the instance, ``k = 1 .. cap``
        (index 0 unused), costed as the engine costs it (its quantised batch shape).

        A staircase: the busiest attention-DP rank holds ``ceil(chunks / dp)`` chunks, where
        ``chunks`` is the engine's quantised count for ``k`` prompts, so the step jumps where
        that ratio steps up; in between only the expert and dispatch work grows (linear in
        ``k``). Costed at both sides of each jump (all of the first 8, then a 1.25x-geometric
        subset) and interpolated linearly in between.
        """
        dp, P = self.real_dp, self.prompt
        per_rank = [0] + [math.ceil(self.engine_chunks(k, k * P) / dp) for k in range(1, cap + 1)]
        jumps = [k for k in range(2, cap + 1) if per_rank[k] != per_rank[k - 1]]
        if len(jumps) > 8:
            keep, x = set(range(8)), 8.0
            while x < len(jumps):
                keep.add(min(len(jumps) - 1, int(x)))
                x *= 1.25
            jumps = [jumps[i] for i in sorted(keep | {len(jumps) - 1})]
        ks = sorted({1, cap} | {k for j in jumps for k in (j - 1, j)})
        ys = [self._engine_prefill_s(k, k, k * P) for k in ks]
        out = [0.0]
        j = 0
        for k in range(1, cap + 1):
            while j + 1 < len(ks) and ks[j + 1] <= k:
                j += 1
            if ks[j] == k or j + 1 >= len(ks):
                out.append(ys[j])
            else:
                f = (k - ks[j]) / (ks[j + 1] - ks[j])
                out.append(ys[j] + f * (ys[j + 1] - ys[j]))
        return tuple(out)


def engine_step_s(inst: InstanceCost, keep: float, shape) -> float:
    """Seconds of a batch the engine forms, on the equivalent instance (``planner.feasibility.instance_spec``):
    the batch cut to its per-rank load (``equivalent_batch``), uniform batches split in O(1)."""
    shape = equivalent_batch(shape, keep)
    if not isinstance(shape.new_tokens, tuple) and not isinstance(shape.context_tokens, tuple) \
            and not isinstance(shape, UniformBatch):
        shape = UniformBatch(phase=shape.phase, num_seqs=shape.num_seqs, new_tokens=shape.new_tokens,
                             context_tokens=shape.context_tokens, logits_for=shape.logits_for)
    return inst.step(shape).seconds


@dataclass(frozen=True)
class PoolPerf:
    """Capacity of one instance of a pool choice under the SLOs."""

    reason: str | None
    cap_rps: float = 0.0  # requests/s one instance sustains within its SLOs
    b_star: float = 0.0  # decode sequences per rank at capacity
    tpot_s: float = 0.0  # at capacity
    kv_capacity_tokens: float = 0.0
    table: tuple = ((), ())  # prefill: (rates per instance, queue + prefill latency percentile)
    shortfall: float = math.inf  # rejected: how far off the broken rule is (need / have; inf: structural)
    slots: float = math.inf  # decode: sequences one instance holds (KV or batch limit)


class Evaluator:
    """Evaluates layouts of one PlanContext with memoised pool models (one per process/task)."""

    def __init__(self, ctx):
        from workloads.accounting import kv_cache_bytes_per_token
        from workloads.models import get_model

        self.ctx = ctx
        self.model = get_model(ctx.model)
        self.cluster = ctx.cluster.resolve()
        self.profile = load_profile_for(ctx.profile, self.cluster.device.name)
        self._models: dict[tuple, PoolModel] = {}
        self._insts: dict = {}  # ``spec_key`` -> InstanceCost (``PoolModel``)
        self._rules: dict[tuple, str | None] = {}
        self._perf: dict[Any, PoolPerf] = {}
        self._perf_handoff: dict[tuple, PoolPerf] = {}  # decode perfs after a KV handoff's share of TPOT
        self._gaps: dict[tuple, float] = {}  # handoff gaps by instance sizes and counts
        self._cms: tuple | None = None  # the cost models the pool models share
        self._cols: dict[Any, dict] = {}
        self._dtab: dict[Any, tuple] = {}
        self._steps: dict[Any, tuple] = {}
        self._fits: dict[Any, Any] = {}  # choice -> ``pool_fit`` (``fit``)
        self._mems: dict[tuple, Any] = {}  # (layout, MTP on) -> ``choice_memory`` (h200x32: 1368 choices, 72 layouts)
        self._coloc: dict[tuple, dict] = {}  # (what ``colocated_state`` reads of a choice, b) -> state
        self.kv_bytes_per_request = kv_cache_bytes_per_token(self.model, ctx.kv_dtype) * ctx.prompt_tokens
        self.a = ctx.mtp_acceptance
        self.price_usd = self.cluster.device.price_usd
        self._z = NormalDist().inv_cdf(min(max(ctx.percentile, 50.0), 99.999) / 100.0)

    # pool level -------------------------------------------------------------------------
    def pool_model(self, choice) -> PoolModel:
        key = choice.cost_key
        m = self._models.get(key)
        if m is None:
            m = PoolModel(self.ctx, choice, self.model, self.cluster, self.profile, self._cost_models(), self._insts)
            self._models[key] = m
        return m

    def export_state(self, choices=None) -> tuple:
        """What another process's ``Evaluator`` of the same context needs to answer without
        costing again (``import_state``): capacities, decode capacities after handoff gaps, and
        the pool models' memoised step tables (of ``choices`` and their cost keys, default all)."""
        if choices is None:
            perfs, after, keys = dict(self._perf), dict(self._perf_handoff), None
        else:
            choices = set(choices)
            perfs = {c: p for c, p in self._perf.items() if c in choices}
            after = {k: p for k, p in self._perf_handoff.items() if k[0] in choices}
            keys = {c.cost_key for c in choices}
        tables = {k: (m.choice, dict(m._dec), dict(m._pre), dict(m._pk)) for k, m in self._models.items()
                  if keys is None or k in keys}
        return perfs, after, tables

    def import_state(self, state: tuple) -> None:
        """Take over ``export_state``'s memos (the values this process would compute)."""
        perfs, after, tables = state
        self._perf.update(perfs)
        self._perf_handoff.update(after)
        for choice, dec, pre, pk in tables.values():
            try:
                m = self.pool_model(choice)
            except (ValueError, LookupError):
                continue
            m._dec.update(dec)
            m._pre.update(pre)
            m._pk.update(pk)

    def _cost_models(self) -> tuple:
        """The (prefill, decode) cost models every pool model of this evaluator shares (one
        cluster and profile, so what the cost model memoises per op serves them all), and their
        ``BlockMemo`` (``InstanceCost.share_cost_models``)."""
        cms = self._cms
        if cms is None:
            from dataclasses import replace

            from simulator.costmodel import CostModel

            from workloads.ops_blocks import BlockMemo

            cm = CostModel(cluster=self.cluster, profile=self.profile)
            # and the op lists of the blocks already built: pool models of other cost keys
            # (micro-batches, MTP, batch limits) build the same blocks (keyed by each instance's
            # context, ``BlockMemo.context_id``)
            cms = self._cms = (cm, replace(cm, dispatch_kernel="low_latency"), BlockMemo(max_contexts=1024))
        return cms

    def step_calls(self) -> int:
        return sum(m.calls for m in self._models.values())

    def rules_reason(self, choice) -> str | None:
        key = (choice.role, choice.cost_key)
        if key not in self._rules:
            self._rules[key] = check_rules(self.ctx, choice, self.model, self.cluster)
        return self._rules[key]

    def fit(self, choice):
        """``planner.feasibility.pool_fit`` of ``choice`` (memoised: the pool phase, the capacity
        and the merge key read it; a forked worker inherits the parent's), its memory account
        shared by the choices of one layout."""
        f = self._fits.get(choice)
        if f is None:
            key = (choice.layout, choice.mtp_depth > 0)
            mem = self._mems.get(key)
            if mem is None:
                mem = self._mems[key] = choice_memory(self.ctx, choice, self.model, self.cluster)
            f = self._fits[choice] = pool_fit(self.ctx, choice, self.model, self.cluster, mem)
        return f

    def tokens_per_step(self, choice) -> float:
        return 1.0 + self.a * choice.mtp_depth

    def perf(self, choice) -> PoolPerf:
        p = self._perf.get(choice)
        if p is None:
            p = self._perf_uncached(choice)
            self._perf[choice] = p
        return p

    def _perf_uncached(self, choice) -> PoolPerf:
        reason = self.rules_reason(choice)
        if reason:
            return PoolPerf(reason)
        fit = self.fit(choice)
        if fit.reason:
            return PoolPerf(fit.reason, shortfall=fit.shortfall)
        try:
            if choice.role == "prefill":
                return self._prefill_perf(choice, fit)
            if choice.role == "decode":
                return self._decode_perf(choice, fit)
            return self._colocated_perf(choice, fit)
        except (ValueError, LookupError) as exc:  # a cost-model refusal is a reason too
            return PoolPerf(f"{choice.role}: {str(exc).splitlines()[0]}")

    def _b_kv(self, choice, fit) -> float:
        """Sequences per rank the KV holds: the mean context, in the engine's 64-token blocks
        (half a block lost to rounding on average) plus the one-block-per-stream watermark it
        keeps free when admitting."""
        m = self.pool_model(choice)
        return fit.kv_capacity_tokens * choice.layout.sp / (choice.layout.pp * (m.ctx_tokens + 1.5 * BLOCK_TOKENS))

    def _decode_tpot_p(self, choice, b: float, lam: float, slots: float) -> float:
        """TPOT percentile of a decode instance at ``b`` sequences per rank carrying ``lam``
        requests/s with ``slots`` sequences of room (KV or batch limit): the step's share plus
        the wait for a slot spread over the request's tokens (the engine's TPOT runs from the
        first token, so a request queued for decode KV waits inside it). The wait is M/D/c:
        Erlang C (``erlang_c``) with the Allen-Cunneen halving for deterministic service,
        exponential tail; ``slots`` servers each holding a request for its decode time."""
        m, k, O = self.pool_model(choice), self.tokens_per_step(choice), self.ctx.output_tokens
        step = choice.layout.pp * m.decode_step_s(b)
        dur = max(O - 1.0, 1.0) / k * step
        wait = mdc_wait_p(lam * dur, slots, dur, self.ctx.percentile)
        return step / k + wait / max(O - 1.0, 1.0)

    def _batch_for(self, choice, lam: float, b_hi: float) -> float:
        """Decode batch per rank that carries ``lam`` requests/s (throughput is increasing in b)."""
        return self.pool_model(choice).batch_for_rate(lam, b_hi, self.tokens_per_step(choice), self.ctx.output_tokens)

    def _decode_perf(self, choice, fit, handoff_gap_s: float = 0.0) -> PoolPerf:
        """Largest rate whose TPOT percentile meets the SLO: the step at the batch that carries
        it, and (near the KV or batch limit) the wait for a decode slot (``_decode_tpot_p``).
        ``handoff_gap_s``: the share of TPOT the prompt's KV handoff takes (``Evaluator.handoff_gap_s``);
        the decode steps get the rest of the SLO."""
        ctx, m = self.ctx, self.pool_model(choice)
        k = self.tokens_per_step(choice)
        slo = ctx.tpot_slo_s - handoff_gap_s
        b_cap = min(float(choice.batch_per_rank), self._b_kv(choice, fit))
        pred = lambda b: choice.layout.pp * m.decode_step_s(b) / k <= slo  # noqa: E731
        b = m.max_decode_batch(pred, b_cap)
        if b is None:
            t1 = choice.layout.pp * m.decode_step_s(1.0) / k
            after = f" less the KV handoff's {handoff_gap_s * 1e3:.3g} ms" if handoff_gap_s else ""
            why = (f"KV room for {b_cap:.2f} sequences per rank" if b_cap < 1.0 else
                   f"TPOT at batch 1 per rank is {t1 * 1e3:.1f} ms > SLO {ctx.tpot_slo_s * 1e3:g} ms{after}")
            short = 1.0 / max(b_cap, 1e-9) if b_cap < 1.0 else (t1 + handoff_gap_s) / ctx.tpot_slo_s
            return PoolPerf(f"decode: {why}", shortfall=short)
        slots = b_cap * m.dp
        hi = b * m.dp * k / m.decode_step_s(b) / ctx.output_tokens  # without waits for a slot
        ok = lambda lam: self._decode_tpot_p(choice, self._batch_for(choice, lam, b), lam, slots) <= slo  # noqa: E731
        cap = hi if ok(hi) else _bisect_max(ok, 0.0, hi, 30)
        b_op = self._batch_for(choice, cap, b)
        return PoolPerf(None, cap_rps=cap, b_star=b_op, tpot_s=self._decode_tpot_p(choice, b_op, cap, slots),
                        kv_capacity_tokens=fit.kv_capacity_tokens, slots=slots)

    def _prompt_cap(self, choice, fit) -> int:
        """Most whole prompts one prefill iteration admits: the instance's token budget
        (``max_tokens_per_iteration``) and its KV room (a prompt's KV stays until handed off)."""
        m = self.pool_model(choice)
        cap = choice.max_tokens_per_iteration // m.prompt
        kv_room = fit.kv_capacity_tokens * choice.layout.dp * choice.layout.sp
        blocks = math.ceil((self.ctx.prompt_tokens + 1) / BLOCK_TOKENS) * BLOCK_TOKENS
        return int(min(cap, kv_room // blocks))

    def _prefill_steps(self, choice) -> tuple | None:
        """``(steps, full_s, full_batch)`` of a prefill instance (x pp): iteration time by whole
        prompts per iteration (``PoolModel.prompt_batch_steps``) up to the most that fit, and
        the iteration when more wait (``planner.queueing.batch_server_ttft_p``): the engine
        then fills the token budget with a chunk of the next prompt. None when a prompt does
        not fit one iteration (every prompt is then chunked)."""
        st = self._steps.get(choice)
        if st is None:
            m = self.pool_model(choice)
            budget = choice.max_tokens_per_iteration
            cap = self._prompt_cap(choice, self.fit(choice))
            st = ()
            if cap >= 1:
                steps = tuple(choice.layout.pp * t for t in m.prompt_batch_steps(cap))
                full_s, full_batch = steps[-1], float(cap)
                if cap == budget // m.prompt and budget % m.prompt:  # the budget binds, not the KV room
                    full_s, full_batch = choice.layout.pp * m.filled_budget_s(cap + 1, budget), budget / m.prompt
                st = (steps, full_s, full_batch)
            self._steps[choice] = st
        return st or None

    def _prefill_core_s(self, choice, lam: float) -> float:
        """TTFT percentile (arrival to the end of the prefill) of one prefill instance at
        ``lam`` requests/s, as the engine measures it (``simulator.metrics``: TTFT ends with
        the prefill's last chunk; the KV transfer lands in the first inter-token gap).

        Whole prompts (the usual case): the batching-server chain of ``planner.queueing`` over
        the staircase of iteration times by prompts per iteration. A prompt larger than the
        instance's token budget is chunked: then a batching server in tokens (the mean
        iteration solves ``T = step(n(T))``, ``n = lam T P / dp``; the request waits out the
        running iteration, ``p T``, then one iteration per chunk, sized by the Poisson
        percentile of arrivals).
        """
        st = self._prefill_steps(choice)
        if st is not None:
            steps, full_s, full_batch = st
            return batch_server_ttft_p(lam, steps, self.ctx.percentile, full_s, full_batch)
        m = self.pool_model(choice)
        P, c = float(m.prompt), float(choice.tokens_per_rank)
        items = math.ceil(P / c)
        T = m.prefill_step_s(c)
        if lam * T * items >= 1.0:  # one chunk per rank per iteration: a prompt takes `items` of them
            return math.inf
        N = lam * T
        n_p = min(c, max(c, (N + self._z * math.sqrt(N)) * P / m.dp))
        return choice.layout.pp * (self.ctx.percentile / 100.0 * T + items * m.prefill_step_s(n_p))

    def prefill_ttft_s(self, choice, rate_per_instance: float, perf: PoolPerf | None = None) -> float:
        """TTFT percentile at a prefill instance's arrival rate (interpolated on the pool's
        table up to its capacity; ``perf``: the choice's, when the caller has it)."""
        lams, cores = (perf or self.perf(choice)).table
        if rate_per_instance > lams[-1] * (1 + 1e-9):
            return self._prefill_core_s(choice, rate_per_instance)
        return _interp(min(rate_per_instance, lams[-1]), lams, cores)  # n x (cap / n) may pass cap by an ulp

    def _prefill_perf(self, choice, fit) -> PoolPerf:
        ctx = self.ctx
        slo = ctx.ttft_slo_s
        alone = self._prefill_core_s(choice, 0.0)
        if not alone <= slo:
            return PoolPerf(f"prefill: TTFT of a lone request is {alone * 1e3:.0f} ms > SLO {slo * 1e3:g} ms",
                            shortfall=alone / slo)
        st = self._prefill_steps(choice)
        if st is not None:
            hi = st[2] / st[1]  # full iterations back to back
        else:
            m = self.pool_model(choice)
            hi = 1.0 / (m.prefill_step_s(choice.tokens_per_rank) * math.ceil(m.prompt / choice.tokens_per_rank))
        # TTFT on a grid of rates (denser towards the limit), then bisection of the SLO crossing;
        # the grid points below capacity and the capacity itself are the table layouts read
        lams = [hi * (1.0 - (1.0 - i / _PREFILL_GRID) ** 2) for i in range(_PREFILL_GRID)]
        ttfts = [alone] + [self._prefill_core_s(choice, x) for x in lams[1:]]
        i = max(k for k, v in enumerate(ttfts) if v <= slo)
        lo, t_lo = lams[i], ttfts[i]
        up = lams[i + 1] if i + 1 < len(lams) else hi
        for _ in range(_PREFILL_BISECT):
            mid = 0.5 * (lo + up)
            t = self._prefill_core_s(choice, mid)
            if t <= slo:
                lo, t_lo = mid, t
            else:
                up = mid
        table = (tuple(lams[: i + 1]) + (lo,), tuple(ttfts[: i + 1]) + (t_lo,)) if lo > lams[i] else \
            (tuple(lams[: i + 1]), tuple(ttfts[: i + 1]))
        return PoolPerf(None, cap_rps=lo, kv_capacity_tokens=fit.kv_capacity_tokens, table=table)

    # colocated ----------------------------------------------------------------------------
    def colocated_state(self, choice, b: float) -> dict:
        """``_colocated_state`` memoised by what it reads of ``choice`` (its pool model, i.e. cost
        key; chunk size; pp; MTP depth) and ``b``: choices that differ only in batch limits repeat
        the same bisection points (h200x32: 22k calls, 10k distinct). The dict is shared: read it only."""
        key = (choice.cost_key, choice.tokens_per_rank, choice.layout.pp, choice.mtp_depth, b)
        st = self._coloc.get(key)
        if st is None:
            st = self._coloc[key] = self._colocated_state(choice, b)
        return st

    def _colocated_state(self, choice, b: float) -> dict:
        """TPOT/TTFT percentiles and request rate of one colocated instance at decode batch b per rank.

        Prefill work comes in items of ``unit = min(prompt, chunk)`` tokens; by Little's law an
        iteration admits ``m = b dp k / O`` prompts, i.e. ``u`` items, so a given iteration
        carries prefill with probability ``q = 1 - exp(-u)`` (Poisson) and then stalls every
        decode sequence by ``sigma = step_prefill(busiest rank's tokens) - step_decode(1)``.
        Mean iteration ``T = step_decode(b) + q sigma``; a request sees ``n = O / k``
        iterations, so its TPOT percentile adds ``z sqrt(q (1 - q) / n) sigma`` (normal
        approximation of the binomial count of stalls). TTFT: Kingman wait on the prefill
        budget (utilisation = prefill tokens per rank / chunk) + half an iteration + the
        iterations that carry the prompt.
        """
        ctx, m = self.ctx, self.pool_model(choice)
        k = self.tokens_per_step(choice)
        P, c = float(m.prompt), float(choice.tokens_per_rank)
        unit = min(P, c)
        items = math.ceil(P / unit)
        prompts = b * m.dp * k / ctx.output_tokens
        u = prompts * items
        per_rank = unit * max(1.0, u / m.dp)
        q = 1.0 - math.exp(-u)
        d1, db = m.decode_step_s(1.0), m.decode_step_s(b)
        sigma = max(0.0, m.prefill_step_s(per_rank) - d1)
        T = db + q * sigma
        n_it = max(1.0, ctx.output_tokens / k)
        z = self._z
        tpot_p = choice.layout.pp * (db + min(1.0, q + z * math.sqrt(q * (1.0 - q) / n_it)) * sigma) / k
        rate = b * m.dp * k / T / ctx.output_tokens
        rho = (u * unit / m.dp) / c
        t_full = db + sigma
        s = t_full * P / (c * m.dp)
        ttft = (kingman_wait_p(rho, s, ctx.arrival_cv, ctx.percentile) + 0.5 * T
                + choice.layout.pp * items * t_full)
        return {"tpot_s": tpot_p, "tpot_mean_s": choice.layout.pp * T / k, "ttft_s": ttft, "rate": rate, "rho": rho}

    def _colocated_perf(self, choice, fit) -> PoolPerf:
        ctx = self.ctx
        b_cap = min(float(choice.batch_per_rank), self._b_kv(choice, fit))

        def ok(b: float) -> bool:
            st = self.colocated_state(choice, b)
            return st["tpot_s"] <= ctx.tpot_slo_s and st["ttft_s"] <= ctx.ttft_slo_s and st["rho"] < 1.0

        b = self.pool_model(choice).max_decode_batch(ok, b_cap)
        if b is None:
            st = self.colocated_state(choice, 1.0)
            why = (f"KV room for {b_cap:.2f} sequences per rank" if b_cap < 1.0 else
                   f"at batch 1 per rank TPOT {st['tpot_s'] * 1e3:.1f} ms, TTFT {st['ttft_s'] * 1e3:.0f} ms "
                   f"(SLO {ctx.tpot_slo_s * 1e3:g} / {ctx.ttft_slo_s * 1e3:g} ms)")
            short = (1.0 / max(b_cap, 1e-9) if b_cap < 1.0 else
                     max(st["tpot_s"] / ctx.tpot_slo_s, st["ttft_s"] / ctx.ttft_slo_s))
            return PoolPerf(f"pool: {why}", shortfall=short)
        st = self.colocated_state(choice, b)
        return PoolPerf(None, cap_rps=st["rate"], b_star=b, tpot_s=st["tpot_s"], kv_capacity_tokens=fit.kv_capacity_tokens)

    # layout level -----------------------------------------------------------------------
    def _decode_at(self, choice, perf: PoolPerf, rate_per_instance: float) -> tuple[float, float]:
        """(batch per rank, TPOT percentile) of a decode instance carrying ``rate_per_instance`` requests/s."""
        if rate_per_instance >= perf.cap_rps * (1 - 1e-12):
            return perf.b_star, perf.tpot_s
        need = rate_per_instance * self.ctx.output_tokens
        thr, bs = self._decode_table(choice, perf)
        b = _interp(need, thr, bs)
        return b, self._decode_tpot_p(choice, b, rate_per_instance, perf.slots)

    def _decode_table(self, choice, perf: PoolPerf) -> tuple[tuple, tuple]:
        """(decode tokens/s, batch per rank) of one instance at the grid batches up to b*,
        for inverting the throughput curve by interpolation (cached per choice)."""
        t = self._dtab.get((choice, perf.b_star))
        if t is None:
            m, k = self.pool_model(choice), self.tokens_per_step(choice)
            grid = [2.0**e for e in range(0, _DEC_EXP_MAX + 1)]
            bs = sorted({0.0, perf.b_star, *(b for b in grid + [0.75 * g for g in grid[1:]] if b < perf.b_star)})
            thr = [b * m.dp * k / m.decode_step_s(b) for b in bs]
            t = (tuple(thr), tuple(bs))
            self._dtab[(choice, perf.b_star)] = t
        return t

    def _colocated_at(self, choice, perf: PoolPerf, rate_per_instance: float) -> dict:
        if rate_per_instance >= perf.cap_rps * (1 - 1e-12):
            return self.colocated_state(choice, perf.b_star)
        b = _bisect_max(lambda x: self.colocated_state(choice, x)["rate"] <= rate_per_instance, 1e-6, perf.b_star, 30)
        return self.colocated_state(choice, b)

    def _columns(self, choice, n: int) -> tuple[dict, str]:
        key = (choice, n)
        cols = self._cols.get(key)
        if cols is None:
            r = choice.role
            lay = choice.layout
            cols = {f"{r}_instances": n, f"{r}_devices_per_instance": choice.devices_per_instance,
                    f"{r}_attn_tp": lay.tp, f"{r}_attn_dp": lay.dp, f"{r}_attn_sp": lay.sp, f"{r}_pp": lay.pp,
                    f"{r}_moe_ep": lay.ep, f"{r}_moe_tp": lay.moe_tp_eff, f"{r}_redundant_experts": lay.redundant_experts,
                    f"{r}_micro_batches": lay.micro_batches, f"{r}_mtp_depth": choice.mtp_depth}
            if r != "prefill":
                cols[f"{r}_max_batch_size"] = choice.max_batch_size
            if r != "decode":
                cols[f"{r}_max_tokens_per_iteration"] = choice.max_tokens_per_iteration
            cols = (cols, choice.label(n))
            self._cols[key] = cols
        return cols

    def handoff_gap_s(self, prefill, n_prefill: int, decode, n_decode: int) -> float:
        """The share of TPOT a mean prompt's KV handoff takes: its time from a prefill instance
        to a decode instance (``hardware.kv_transfer.kv_transfer_seconds``, alone on the fabric
        between the pools) over the output's inter-token gaps (the engine's TPOT runs from the
        first token, which the prefill pool emits before the handoff)."""
        return self.handoff_gap_s_sizes(prefill.devices_per_instance, n_prefill, decode.devices_per_instance, n_decode)

    def handoff_gap_s_sizes(self, p_dev: int, n_prefill: int, d_dev: int, n_decode: int) -> float:
        """``handoff_gap_s`` by instance sizes (devices) and counts: all it depends on (memoised)."""
        key = (p_dev, d_dev, n_prefill, n_decode)
        gap = self._gaps.get(key)
        if gap is None:
            handoff_s = kv_transfer_seconds(self.kv_bytes_per_request, self.cluster, p_dev, d_dev,
                                            n_prefill * p_dev, n_decode * d_dev)
            gap = self._gaps[key] = handoff_s / max(self.ctx.output_tokens - 1.0, 1.0)
        return gap

    def decode_perf_after_handoff(self, choice, gap_s: float) -> PoolPerf:
        """``perf(choice)`` of a decode choice whose TPOT also holds ``gap_s`` of KV handoff
        (cached per gap: a gap depends on the instance sizes only, so there are few)."""
        base = self.perf(choice)
        if base.reason or gap_s <= 0.0:
            return base
        key = (choice, gap_s)
        p = self._perf_handoff.get(key)
        if p is None:
            try:
                p = self._decode_perf(choice, self.fit(choice), gap_s)
            except (ValueError, LookupError) as exc:
                p = PoolPerf(f"{choice.role}: {str(exc).splitlines()[0]}")
            self._perf_handoff[key] = p
        return p

    def result_key(self, choice) -> tuple:
        """Everything ``evaluate_layout`` reads of a feasible pool choice besides its labels:
        two choices of a role with equal keys give identical metrics in every layout
        (``planner.merge`` merges their rows). Of its ``PoolPerf`` it reads the capacity, the
        batch and TPOT there, the slots and the prefill TTFT table (not the KV capacity: a
        prefill instance's KV room enters through its TTFT table). A prefill choice is also
        read through its instance size (the KV handoff); a decode choice is re-solved after
        the handoff (``decode_perf_after_handoff``: its pool model, i.e. cost key, and the
        batch room ``b_cap``); a colocated one through ``colocated_state`` (its pool model and
        chunk size)."""
        p = self.perf(choice)
        key = (choice.role, choice.devices_per_instance, p.reason, p.cap_rps, p.b_star, p.tpot_s, p.slots, p.table)
        if p.reason is not None or choice.role == "prefill":
            return key
        if choice.role == "decode":
            fit = self.fit(choice)
            return key + (choice.cost_key, min(float(choice.batch_per_rank), self._b_kv(choice, fit)))
        return key + (choice.cost_key, choice.tokens_per_rank)

    def evaluate_layout(self, layout) -> dict:
        """Analytic metrics of one layout (see module docstring); never raises for a bad layout.
        The block of one layout of ``planner.rows.layout_rows`` (the grid evaluates many at once)."""
        out = Columns()
        layout_rows(self, layout.mode, [Block(tuple(c for c, _ in layout.pools), [tuple(n for _, n in layout.pools)])],
                    out)
        return out.row(0)


#: the ``Evaluator`` of each context this process keeps for pool-worker tasks: the one the
#: planning process shares (``share_with_workers``; a forked worker inherits it, with its warm
#: profile tables, cost-model memos and step tables), or one a worker made for its first task
_KEPT: dict = {}


def share_with_workers(ev: Evaluator | None) -> None:
    """Let pool workers forked from now on start from ``ev`` (``worker_evaluator``): what it
    memoised is the values they would compute. None: forget it (the plan is done)."""
    _KEPT.clear()
    if ev is not None:
        _KEPT[ev.ctx] = ev


def worker_evaluator(ctx) -> Evaluator:
    """The ``Evaluator`` a task of ``ctx`` uses: in a pool worker process the one it keeps from
    task to task (inherited from the planning process when it shared one); elsewhere a new one
    (nothing outlives the call)."""
    import multiprocessing

    if multiprocessing.parent_process() is None:
        return Evaluator(ctx)
    ev = _KEPT.get(ctx)
    if ev is None:
        _KEPT.clear()
        ev = _KEPT[ctx] = Evaluator(ctx)
    return ev
