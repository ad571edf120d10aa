"""The analytic evaluator's memos answer what the functions they memoise answer: a pool choice's
fit (``Evaluator.fit``, its memory account shared by the choices of one layout) and a colocated
instance's state (``Evaluator.colocated_state``, shared by choices that differ only in what it
does not read, e.g. batch limits)."""

from __future__ import annotations

import math

import planner
from planner.analytic import Evaluator
from planner.feasibility import pool_fit
from planner.schema import load_plan_text
from planner.space import all_pool_choices, context_from_plan
from tests.test_planner import SMALL
from workloads.models import get_model


def _choices(cfg):
    ctx = context_from_plan(cfg)
    ev = Evaluator(ctx)
    choices = all_pool_choices(ctx, cfg.search, get_model(cfg.model))
    return ctx, ev, [c for role in choices for c in choices[role]]


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_fit_is_pool_fit_for_every_choice():
    for cfg in (load_plan_text(SMALL, "small.yaml"), planner.load_plan("examples/plan_deepseek-v3_h200x32.yaml")):
        ctx, ev, choices = _choices(cfg)
        assert len({(c.layout, c.mtp_depth > 0) for c in choices}) < len(choices)  # the memory memo is shared
        for c in choices:
            want, got = pool_fit(ctx, c, ev.model, ev.cluster), ev.fit(c)
            assert all(_same(getattr(got, f), getattr(want, f)) for f in want.__dataclass_fields__), c
            assert ev.fit(c) is got


def test_colocated_state_memo_answers_the_uncached_state():
    cfg = load_plan_text(SMALL, "small.yaml")
    _ctx, ev, choices = _choices(cfg)
    pools = [c for c in choices if c.role == "pool" and ev.rules_reason(c) is None and ev.fit(c).reason is None]
    assert len({(c.cost_key, c.tokens_per_rank) for c in pools}) < len(pools)  # choices share a memo key
    fresh = Evaluator(ev.ctx)
    for c in pools:
        for b in (1.0, 3.5, 17.25, float(c.batch_per_rank)):
            assert ev.colocated_state(c, b) == fresh._colocated_state(c, b)


def test_decode_segments_and_queue_nodes_are_the_plain_arithmetic():
    """``PoolModel.decode_step_s`` reads memoised grid intervals (``_segment``): the same floats as
    ``t0 + (t1 - t0) * (b - lo) / lo`` on the grid, and ``batch_for_rate`` the same bisection;
    ``planner.queueing._nodes`` (memoised by staircase) is the uncached ``_nodes_of``, read-only."""
    import numpy as np

    from planner import queueing

    cfg = load_plan_text(SMALL, "small.yaml")
    ctx, ev, choices = _choices(cfg)
    dec = next(c for c in choices if c.role in ("decode", "pool") and ev.perf(c).reason is None)
    m = ev.pool_model(dec)
    rng = np.random.default_rng(3)
    for b in np.concatenate([rng.uniform(1.0, 2.0**14, 300), 2.0 ** np.arange(0, 15), [2.0**15, 3e4]]):
        e = min(int(math.log2(b)), 13)
        t0, t1, lo = m._dec_at(e), m._dec_at(e + 1), 1 << e
        assert m.decode_step_s(float(b)) == t0 + (t1 - t0) * (float(b) - lo) / lo
    for lam in (0.5, 5.0, 50.0):
        lo, hi = 0.0, 64.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if mid * m.dp * 2.0 / m.decode_step_s(mid) / 100.0 <= lam else (lo, mid)
        want = 64.0 if 64.0 * m.dp * 2.0 / m.decode_step_s(64.0) / 100.0 <= lam else lo
        assert m.batch_for_rate(lam, 64.0, 2.0, 100.0) == want
    for cap in (1, 5, 40, 131):
        S = np.concatenate([[0.0], 0.01 * np.ceil(np.arange(1, cap + 1) / 4.0) + 0.002 * np.arange(1, cap + 1)])
        got = queueing._nodes(S, cap)
        assert np.array_equal(got, queueing._nodes_of(S.copy(), cap)) and not got.flags.writeable
        assert queueing._nodes(S.copy(), cap) is got


def test_batch_for_rate_memo_answers_the_bisection():
    """``PoolModel.batch_for_rate`` (memoised) answers ``_batch_for_rate`` (the bisection) for the
    rates a decode capacity search asks, asked again, and the memo is hit."""
    ctx, ev, choices = _choices(load_plan_text(SMALL, "small.yaml"))
    decode = [c for c in choices if c.role in ("decode", "pool") and ev.perf(c).reason is None][:4]
    assert decode
    for c in decode:
        m = ev.pool_model(c)
        k, out, b_hi = ev.tokens_per_step(c), ctx.output_tokens, max(1.0, ev.perf(c).b_star)
        hi = b_hi * m.dp * k / m.decode_step_s(b_hi) / out
        for lam in [hi * f for f in (0.0, 0.1, 0.37, 0.5, 0.99, 1.0, 1.5)]:
            want = m._batch_for_rate(lam, b_hi, k, out)
            assert m.batch_for_rate(lam, b_hi, k, out) == want
            assert (lam, b_hi, k, out) in m._bfr and m.batch_for_rate(lam, b_hi, k, out) == want
