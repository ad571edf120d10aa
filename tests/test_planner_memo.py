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
