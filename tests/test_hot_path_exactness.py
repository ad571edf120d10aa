"""The engine's hot-path shortcuts give exactly the values of the plain computations they replace:
the fast-forward run's cost-key boundaries (``fastforward._bucket_end``) against scanning every step
with ``bucket``, a run's KV growth in closed form (``fastforward._grown``) against listing every
growth step, the ITL histogram's batched binning against ``itl_bins``, and the MoE layer's
expected busiest-expert load against ``scipy.stats.binom.cdf`` summed term by term."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.fastforward import _bucket_end, _cached_steps, _grown
from simulator.metrics import _ITL_BINS, ItlHistogram, itl_bins
from simulator.policies import StepCostCache, bucket
from workloads.ops_blocks import expected_max_expert_load


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 300), st.integers(0, 3_000_000), st.integers(1, 4096))
def test_bucket_end_is_the_last_step_of_the_bucket(n, total0, span):
    ctx_of = lambda j: (total0 + j * n) / n  # noqa: E731
    j, last = 1, span
    while j <= last:
        b = bucket(ctx_of(j))
        hi = _bucket_end(ctx_of, j, last, b)
        assert j <= hi <= last and bucket(ctx_of(hi)) == b
        assert hi == last or bucket(ctx_of(hi + 1)) != b
        if hi - j < 50:  # every step between has the bucket too
            assert all(bucket(ctx_of(x)) == b for x in range(j, hi + 1))
        j = hi + 1


def test_cached_steps_stop_before_the_first_miss():
    costs = StepCostCache(lambda shape: (1.0, 1.0, 0.0))
    n, total0 = 7, 7 * 1000
    for j in range(1, 200):  # the steps the engine would cost, up to a gap at step 200
        costs.cost(n, (total0 + j * n) / n, 0, 0, 0.0)
    runs = _cached_steps(costs, n, total0, 500)
    assert runs[0][0] == 1 and all(a == prev[1] + 1 for prev, (a, *_) in zip(runs, runs[1:]))
    assert runs[-1][1] == 199 + sum(1 for x in range(200, 501)
                                    if bucket((total0 + x * n) / n) == bucket((total0 + 199 * n) / n))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=40), st.integers(1, 700))
def test_grown_counts_every_growth_step(first, last):
    """Streams first growing at ``first`` then every 64 steps: growths at steps <= s, for each s."""
    first = np.sort(np.array(first, dtype=np.int64))
    every = np.sort(np.concatenate([np.arange(f, last + 1, 64) for f in first.tolist()]))
    steps = np.arange(1, last + 1)
    assert (_grown(first, steps) == np.searchsorted(every, steps, side="right")).all()
    assert _grown(first, last) == every.size


def test_add_steps_held_and_binned_in_batches_counts_as_itl_bins():
    rng = np.random.default_rng(3)
    fast, ref = ItlHistogram(), np.zeros(_ITL_BINS, dtype=np.int64)
    for _ in range(400):  # past the held-gap bound: binned several times over
        gaps, streams = rng.uniform(1e-4, 0.2, int(rng.integers(1, 400))), int(rng.integers(1, 30))
        fast.add_steps(gaps, streams)
        ref += np.bincount(itl_bins(gaps), minlength=_ITL_BINS) * streams
    assert (fast.counts == ref).all() and fast.n == ref.sum()


@settings(max_examples=300, deadline=None)
@given(st.floats(1e-7, 50.0), st.floats(0.0, 0.05), st.integers(1, 40), st.integers(1, 64))
def test_add_steps_counts_as_itl_bins(gap, spread, size, streams):
    gaps = gap * (1.0 + spread * np.linspace(0.0, 1.0, size))
    fast, ref = ItlHistogram(), np.bincount(itl_bins(gaps), minlength=_ITL_BINS) * streams
    fast.add_steps(gaps, streams)
    assert (fast.counts == ref).all() and fast.n == streams * size


def test_add_steps_at_a_bin_edge():
    edge = 1e-6 * 1.01 ** 1234  # within rounding of a bin edge: the exact path decides
    for g in (edge, math.nextafter(edge, 0), math.nextafter(edge, 1)):
        fast = ItlHistogram()
        fast.add_steps(np.array([g, g]), 3)
        assert (fast.counts == np.bincount(itl_bins(np.array([g, g])), minlength=_ITL_BINS) * 3).all()


def _binom_sum(tokens, num_experts, top_k, experts):
    """The former formula: ``binom.cdf`` at every load, numpy scalars summed in order."""
    from scipy.stats import binom

    if tokens <= 0:
        return 0.0
    q = top_k / num_experts
    mean, sd = tokens * q, math.sqrt(tokens * q * (1 - q))
    hi = int(min(tokens, math.ceil(mean + 12 * sd + 10)))
    cdf = binom.cdf(list(range(0, hi + 1)), tokens, q)
    return float(sum(1.0 - cdf[x - 1] ** experts for x in range(1, hi + 1)))


def test_expected_max_expert_load_is_the_binomial_sum():
    rng = np.random.default_rng(0)
    tokens = list(range(0, 40)) + rng.integers(1, 200_000, 60).tolist()
    for t in tokens:
        for e, k, c in ((288, 8, 2), (256, 8, 8), (288, 8, 9), (64, 6, 1), (160, 6, 20)):
            assert expected_max_expert_load.__wrapped__(t, e, k, c) == _binom_sum(t, e, k, c), (t, e, k, c)


def test_poisson_pmf_is_scipy_stats():
    from scipy.stats import poisson

    from workloads.moe_routing import poisson_pmf

    for mu in (1e-6, 0.3, 1.0, 7.5, 64.0, 1000.0, 12345.6):
        x = np.arange(1, int(mu + 10 * math.sqrt(mu) + 128) + 1)
        assert (poisson_pmf(x, mu) == poisson.pmf(x, mu)).all(), mu


def _add_reference(counts, gaps):
    """The histogram's former ``add`` of non-uniform gaps: numpy's log over every gap."""
    idx = np.log(np.maximum(gaps, 1e-6) / 1e-6) / math.log(1.01)
    counts += np.bincount(np.minimum(idx.astype(np.int64), _ITL_BINS - 1), minlength=_ITL_BINS)
    return float(gaps.sum())


def test_add_of_a_batch_some_streams_joined_counts_every_gap():
    rng = np.random.default_rng(1)
    for size, odd in ((40, 3), (2000, 7), (2000, 1500), (64, 31), (33, 0)):
        gaps = np.full(size, float(rng.uniform(0.005, 0.2)))
        gaps[rng.choice(size, odd, replace=False)] = rng.uniform(1e-7, 3.0, odd)
        fast, ref = ItlHistogram(), np.zeros(_ITL_BINS, dtype=np.int64)
        total = fast.add(gaps)
        if odd:
            assert total == _add_reference(ref, gaps) and (fast.counts == ref).all()
        assert fast.n == size and fast.counts.sum() == size


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(0, 40_000), st.integers(1, 40), st.integers(1, 20_000),
       st.integers(0, 40_000), st.integers(1, 3))
def test_mixed_shape_without_revalidation_equals_the_validated_one(n, dctx, k, tokens, pctx, new_dec):
    """``shape_of`` builds a mixed key's BatchShape without re-validating it: the same model."""
    from simulator.policies import _even, shape_of
    from workloads.ops import BatchShape

    got = shape_of(("m", n, dctx, k, tokens, pctx), new_dec)
    ref = BatchShape(phase="prefill", num_seqs=n + k, new_tokens=(new_dec,) * n + _even(max(tokens, k), k),
                     context_tokens=(dctx,) * n + (pctx,) * k)
    assert got == ref and hash(got) == hash(ref) and got.model_dump() == ref.model_dump()
    assert got.model_fields_set == ref.model_fields_set and repr(got) == repr(ref)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 64), st.integers(0, 200_000), st.integers(0, 300), st.integers(0, 400))
def test_cached_steps_equal_a_scan_of_every_step(n, total0, last, gap):
    """``_cached_steps`` (with its one-key shortcut) against keying every step 1..last and stopping
    at the first key not cached (the cache holds the keys of steps below ``gap``)."""
    costs = StepCostCache(lambda shape: (1.0, 1.0, 0.0))
    for j in range(1, gap):
        costs.cost(n, (total0 + j * n) / n, 0, 0, 0.0)
    ref = []
    for j in range(1, last + 1):
        key = ("d", bucket(n), bucket((total0 + j * n) / n))
        if key not in costs._cache:
            break
        if ref and ref[-1][2] == key:
            ref[-1] = (ref[-1][0], j, key, ref[-1][3])
        else:
            ref.append((j, j, key, costs._cache[key]))
    assert _cached_steps(costs, n, total0, last) == ref


@settings(max_examples=300, deadline=None)
@given(st.integers(33, 3000), st.lists(st.integers(0, 40), min_size=0, max_size=32), st.integers(0, 2**32 - 1))
def test_add_led_with_a_few_joiners_counts_as_numpy(lead, picks, seed):
    """``add_led``'s Python comparisons and ``math.log`` bins (``_bins_few``) for a few joiners give
    ``add``'s counts and sum, gaps on and next to bin edges included."""
    rng = np.random.default_rng(seed)
    edges = 1e-6 * 1.01 ** rng.integers(1, 2000, 8)  # gaps on (or next to) bin edges as well
    pool = np.concatenate((rng.uniform(1e-4, 0.2, 24), edges, np.nextafter(edges, 0), np.nextafter(edges, 1)))
    g = float(pool[seed % pool.size])
    tail = [g if p % 3 == 0 else float(pool[p % pool.size]) for p in picks]
    gaps = np.array([g] * lead + tail)
    h, ref = ItlHistogram(), ItlHistogram()
    got, want = h.add_led(gaps, lead), ref.add(gaps)  # add: numpy's comparisons, bins and sum
    assert (h.counts == ref.counts).all() and got == want and h.n == ref.n == gaps.size
