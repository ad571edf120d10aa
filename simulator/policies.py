"""Who decides: request routers and the step-cost quantisation policy (batch formation is in
``simulator.batching``, preemption in ``simulator.preemption``, the name -> class registries in
``simulator.registry``).

Routers pick an instance of a pool for a request (at arrival for the colocated/prefill
pool, at prefill completion for the decode pool):

* ``round_robin``: instances in turn.
* ``least_outstanding``: fewest requests assigned and not yet finished (or handed off);
  ties go to the lowest index.
* ``kv_aware``: without a prefix cache, most free KV blocks after the blocks of requests
  already queued there (a proxy for both memory headroom and load). With ``prefix_cache``
  (``simulator.prefix_cache``) it weighs cache affinity against load, in the form of Dynamo's
  KV router: the least (blocks the request would prefill there: its prompt less the prefix
  cached there) + (blocks queued there) + w x (blocks in use there), w =
  ``prefix_cache.kv_aware_load_weight``. Dynamo weighs the two equally; w = 0.1 (default) gave
  both higher hit rates and lower TTFT in multi-turn runs (simulator/README.md), as KV in use is
  a weak proxy of load when contexts are long. With no prefix cached anywhere it balances by
  queued + w x used blocks.

A router's ``choose(servers, r)`` gets the pool's servers and the request id.

``StepCostCache`` quantises a batch before asking the cost model, so one run calls the
(expensive) operator-level cost model a few hundred times instead of once per iteration.
The approximation (documented in simulator/README.md):

* decode part: (sequences, mean context) with both bucketed on a 5% geometric grid
  (exact below 32); every sequence is costed at the bucket's representative context;
* prefill part: (chunks, total chunk tokens, mean cached context): tokens on the 5% grid,
  chunks exact up to 4 and then on a 25% grid, context on a 10% grid; tokens are split
  evenly over the chunks (attention's quadratic term is then that of equal-length chunks,
  and for a batch of k chunks of T tokens it is ~T^2/(2k): a 25% step in k moves a prefill
  step by a few percent at most, since attention is a minor share of prefill FLOPs);
* a mixed (Sarathi) batch is one ``prefill``-phase BatchShape holding decode sequences
  (new tokens = 1 + MTP depth) and prefill chunks, so linear layers see one GEMM over all
  tokens and weights are read once.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from workloads.ops import BatchShape

#: geometric bucket ratio of the quantised batch shapes (5%)
BUCKET_RATIO = 1.05
#: values up to this are kept exact
EXACT_BELOW = 32
#: log(BUCKET_RATIO): the grid step of ``bucket`` in log space
LOG_BUCKET_RATIO = math.log(BUCKET_RATIO)


def bucket(x: float, exact_below: int = EXACT_BELOW, log_ratio: float = LOG_BUCKET_RATIO) -> int:
    """Representative of ``x`` on a geometric grid (exact up to ``exact_below``; 0 stays 0)."""
    if x <= exact_below:
        return max(int(round(x)), 1) if x > 0 else 0
    return int(round(math.exp(round(math.log(x) / log_ratio) * log_ratio)))


_LOG_COARSE = math.log(1.25)
_LOG_CTX = math.log(1.10)


def _even(total: int, parts: int) -> tuple[int, ...]:
    base, extra = divmod(total, parts)
    return tuple(base + (1 if i < extra else 0) for i in range(parts))


def shape_of(key: tuple, decode_new_tokens: int) -> BatchShape:
    """BatchShape of a quantised key (see StepCostCache)."""
    kind = key[0]
    if kind == "d":
        _, n, ctx = key
        return BatchShape.decode(n, ctx, new_tokens=decode_new_tokens)
    if kind == "p":
        _, k, tokens, ctx = key
        return BatchShape.prefill(k, _even(max(tokens, k), k), ctx)
    _, n, dctx, k, tokens, pctx = key
    new = (decode_new_tokens,) * n + _even(max(tokens, k), k)
    ctx = (dctx,) * n + (pctx,) * k
    # valid by construction (Python ints, n + k of each, new >= 1, context >= 0): the validated model's
    # fields, without re-checking them (``tests/test_hot_path_exactness.py`` compares both)
    return BatchShape.trusted("prefill", n + k, new, ctx)


class StepCostCache:
    """(seconds, compute_s, comm_s) of a quantised batch of one pool, memoised.

    ``cost_fn(shape) -> (seconds, compute_s, comm_s[, detail])``. ``detail``, when given, is a
    mapping (e.g. operator seconds by source and kind) kept per shape; ``hits`` counts the steps
    costed at each shape, so ``detail_totals()`` sums the detail over the run (one dict
    increment per step, nothing more in the hot loop).
    """

    __slots__ = ("_cost_fn", "_cache", "decode_new_tokens", "misses", "hits", "details", "_fine", "_coarse")

    def __init__(self, cost_fn: Callable[[BatchShape], tuple], decode_new_tokens: int = 1):
        self._cost_fn = cost_fn
        self._cache: dict[tuple, tuple[float, float, float]] = {}
        self.decode_new_tokens = decode_new_tokens
        self.misses = 0
        self.hits: dict[tuple, int] = {}
        self.details: dict[tuple, Any] = {}
        # ``bucket`` of the integer counts (streams, chunk tokens; chunks on the coarse grid), memoised:
        # a pure function of the value, few distinct values in a run
        self._fine: dict[int, int] = {}
        self._coarse: dict[int, int] = {}

    def cost(self, n_dec: int, dec_ctx: float, n_chunks: int, chunk_tokens: int, chunk_ctx: float) -> tuple[float, float, float]:
        fine = self._fine
        bn = fine.get(n_dec)
        if bn is None:
            bn = fine[n_dec] = bucket(n_dec)
        if n_chunks == 0:
            key: tuple = ("d", bn, bucket(dec_ctx))
        else:
            bt = fine.get(chunk_tokens)
            if bt is None:
                bt = fine[chunk_tokens] = bucket(chunk_tokens)
            bk = self._coarse.get(n_chunks)
            if bk is None:
                bk = self._coarse[n_chunks] = bucket(n_chunks, 4, _LOG_COARSE)
            if n_dec == 0:
                key = ("p", bk, bt, bucket(chunk_ctx, 32, _LOG_CTX))
            else:
                key = ("m", bn, bucket(dec_ctx), bk, bt, bucket(chunk_ctx, 32, _LOG_CTX))
        hit = self._cache.get(key)
        if hit is None:
            self.misses += 1
            full = self._cost_fn(shape_of(key, self.decode_new_tokens))
            hit = self._cache[key] = tuple(full[:3])
            if len(full) > 3:
                self.details[key] = full[3]
            self.hits[key] = 0
        self.hits[key] += 1
        return hit

    def decode(self, n_dec: int, dec_ctx: float) -> tuple[tuple, tuple[float, float, float]]:
        """``cost(n_dec, dec_ctx, 0, 0, 0.0)`` of a decode-only step (``n_dec`` >= 1), with its key:
        (key, cost)."""
        fine = self._fine
        bn = fine.get(n_dec)
        if bn is None:
            bn = fine[n_dec] = bucket(n_dec)
        key = ("d", bn, bucket(dec_ctx))
        hit = self._cache.get(key)
        if hit is None:
            return key, self.cost(n_dec, dec_ctx, 0, 0, 0.0)  # the miss, as ``cost`` makes it
        self.hits[key] += 1
        return key, hit

    def detail_totals(self) -> dict:
        """The shapes' ``detail`` mappings summed over every step costed (values x steps)."""
        out: dict = {}
        for key, detail in self.details.items():
            n = self.hits.get(key, 0)
            for k, v in detail.items():
                out[k] = out.get(k, 0.0) + v * n
        return out


# ------------------------------------------------------------------ routers


class RoundRobin:
    __slots__ = ("_next",)

    def __init__(self):
        self._next = 0

    def choose(self, servers, r: int) -> int:
        i = self._next % len(servers)
        self._next += 1
        return i


class LeastOutstanding:
    __slots__ = ()

    def choose(self, servers, r: int) -> int:
        best, best_load = 0, None
        for i, s in enumerate(servers):
            if best_load is None or s.outstanding < best_load:
                best, best_load = i, s.outstanding
        return best


class KvAware:
    __slots__ = ()

    def choose(self, servers, r: int) -> int:
        cache = servers[0].cache
        if cache is not None and cache.local is not None:
            return self._cache_aware(servers, r, cache.load_weight)
        if len(servers) == 1:
            return 0
        best, best_free = 0, None
        for i, s in enumerate(servers):
            kv = s.kv
            free = kv.capacity_blocks - kv.used_blocks - s.queued_blocks  # kv.free_blocks, inline
            if best_free is None or free > best_free:
                best, best_free = i, free
        return best

    @staticmethod
    def _cache_aware(servers, r: int, load_weight: float) -> int:
        """Least prefill work + load: -cached prefix blocks + queued blocks + w x blocks in use
        (the request's own prompt blocks are the same everywhere and left out)."""
        best, best_cost = 0, None
        for i, s in enumerate(servers):
            cost = s.queued_blocks + load_weight * s.kv.used_blocks - s.cache.local_hit_blocks(r)
            if best_cost is None or cost < best_cost:
                best, best_cost = i, cost
        return best

