"""Memory-bounded end-of-run reductions give the numbers of the whole-column computation they
replace, bit for bit: ``metrics._pairwise_sum`` against ``np.add.reduce``, ``metrics._pool_internals``
(chunked) against pandas/numpy over whole columns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from simulator import metrics
from test_steplog import CAPACITY, _fill


@pytest.mark.parametrize("chunk", [1, 8, 100, 129, 1000, 1 << 18])
def test_pairwise_sum_is_numpy_sum(monkeypatch, chunk):
    monkeypatch.setattr(metrics, "_CHUNK_ROWS", chunk)
    rng = np.random.default_rng(chunk)
    for n in list(range(0, 40)) + [127, 128, 129, 130, 1000, 4099, 65_543, 300_001]:
        v = rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 8, n)
        assert metrics._pairwise_sum(n, lambda lo, hi: v[lo:hi]) == float(np.add.reduce(v)), (n, chunk)


def _whole_columns(steps) -> dict:
    """The pandas computation over whole columns (the code before the chunked one)."""
    out = {}
    for pool, rows in steps.pool_rows():
        def col(name):
            v = steps[name]
            return pd.Series(v if rows is None else v[rows])
        step = col("step_s")
        busy = float(step.sum())
        w = step.to_numpy()
        comp, comm = float(col("compute_s").sum()), float(col("comm_s").sum())
        stats = {"iterations": int(len(w)), "busy_s": busy}
        for name in ("batch_size", "kv_used_fraction"):
            v = col(name)
            stats[f"mean_{name}"] = float(np.average(v, weights=w)) if busy > 0 else 0.0
            stats[f"max_{name}"] = int(v.max()) if name == "batch_size" else float(v.max())
        out[str(pool)] = {**stats, "compute_share": comp / (comp + comm) if comp + comm > 0 else None,
                          "comm_share": comm / (comp + comm) if comp + comm > 0 else None}
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 18])
def test_pool_internals_as_whole_columns(monkeypatch, chunk):
    monkeypatch.setattr(metrics, "_CHUNK_ROWS", chunk)
    for seed in range(6):
        log, _ = _fill(seed)
        pools = ["decode", "prefill", "decode", "b"] if seed % 2 else ["p"] * 4
        table = log.table(pools, CAPACITY)
        if seed >= 3:  # no NaN seconds (KV fractions are never NaN): the sums and means are numbers
            for name in ("step_s", "compute_s", "comm_s"):
                table._shapes[name] = np.nan_to_num(table._shapes[name], nan=0.125)
        got, want = metrics._pool_internals(table), _whole_columns(table)
        assert list(got) == list(want)
        for pool in want:
            assert list(got[pool]) == list(want[pool])
            for k, v in want[pool].items():
                assert _same(got[pool][k], v), (seed, pool, k, got[pool][k], v)


def test_stats_partition_in_place_as_a_copy():
    """``_stats_ms`` takes the mean first and then partitions its fresh array in place: the numbers
    of ``np.percentile`` on a copy and ``mean`` of the unpartitioned values."""
    rng = np.random.default_rng(1)
    for n in (2, 5, 100, 10_001, 200_000):
        a = rng.exponential(size=n)
        a[::7] = np.nan
        v = a[np.isfinite(a)]
        p = np.percentile(v, [50, 90, 99])
        want = {"mean": float(v.mean() * 1e3), "p50": float(p[0] * 1e3), "p90": float(p[1] * 1e3),
                "p99": float(p[2] * 1e3)}
        assert metrics._stats_ms(a) == want
