"""A verification round run one simulation per task on forked workers, with speculative runs
(``planner.verify_sched``), gives the parts ``verify_part`` gives run whole in one process."""

from __future__ import annotations

import multiprocessing as mp

import pytest

import planner
from planner.executors import SerialExecutor
from planner.rounds import point_seed, verify_batches
from planner.schema import load_plan_text
from planner.space import context_from_plan
from planner.verify import claim_search, verify_part
from planner.verify_sched import next_rates, start_round
from tests.test_planner import SMALL
from tests.test_planner_parallel import _layout

pytestmark = pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="forked workers only")


def _answers(passing_below: float):
    """A fake ``run``: the SLO holds below ``passing_below`` req/s."""
    return lambda rate: {"ttft_ms": rate, "tpot_ms": 1.0, "met": rate < passing_below, "measured": 60}


def test_next_rates_are_the_rates_the_search_asks_next():
    """Once the claim has failed, whatever the pending run answers, the search's next rate is
    one ``next_rates`` named; nothing is named while the claim itself is pending."""
    claimed = 10.0
    assert next_rates(claimed, {}, claimed) == []
    assert next_rates(claimed, {claimed: _answers(0.0)(claimed)}, 9.0) == [9.5, 7.5]  # pass: bisect; fail: 0.75x
    for capacity in (0.5, 2.0, 6.0, 7.7, 8.9, 9.2, 9.9, 11.0):
        asked: list[float] = []
        known: dict[float, dict] = {}
        run = _answers(capacity)

        def record(rate: float) -> dict:
            asked.append(rate)
            return run(rate)

        claim_search(claimed, record)
        for i, rate in enumerate(asked[:-1]):
            known[rate] = run(rate)
            if i:  # the claim failed
                before = {r: known[r] for r in asked[:i]}
                assert asked[i + 1] in next_rates(claimed, before, rate)
        assert len(asked) > 1 or capacity > claimed


@pytest.fixture(scope="module")
def small():
    return load_plan_text(SMALL, "small.yaml")


def _raised_claims(small):
    """Two candidates whose claims are raised so that the simulator will not hold them (their
    searches run several rates), and their parts in ``verify_batches``' order."""
    ctx = context_from_plan(small)
    res = planner.plan(small, executor=SerialExecutor(), verify_top=0)
    rows = res.table[res.table["feasible"]].head(2).to_dict("records")
    items = []
    for k, row in enumerate(rows):
        row["capacity_rps"] *= 1.3 + 0.4 * k  # claims the simulator will not hold: a search each
        items.append((_layout(small, row["id"]), row["id"], row, point_seed(3, row["id"])))
    return ctx, items, [b[0] for b in verify_batches(small, ctx, items, 2)]


def _same_parts(got: list, want: list) -> None:
    for (g,), w in zip(got, want, strict=True):
        g.pop("wall_s", None)
        w.pop("wall_s", None)
        assert g == w


def test_round_on_forked_workers_matches_the_parts_run_whole(small):
    """The searches run several rates, some speculatively: each part's dict equals ``verify_part``'s."""
    ctx, items, parts = _raised_claims(small)
    want = [verify_part(small, ctx, *p) for p in parts]
    _same_parts(start_round(small, ctx, items, parts, 2)(), want)
    assert sum(w["runs"] for w in want if w["part"] == "claim") > 4  # the searches ran


def test_speculative_runs_never_asked_are_dropped(small, monkeypatch):
    """Speculative runs at rates no search asks (the claims last, so some still run when the
    round is complete: their workers are ended) leave the parts as ``verify_part`` makes them."""
    import planner.verify_sched as sched

    monkeypatch.setattr(sched, "next_rates", lambda claimed, known, pending: [pending * 3.1, pending * 2.9])
    ctx, items, parts = _raised_claims(small)
    parts = sorted(parts, key=lambda p: p[0] != "emitted")
    _same_parts(start_round(small, ctx, items, parts, 2)(), [verify_part(small, ctx, *p) for p in parts])
    _same_parts(start_round(small, ctx, items, parts, 2)(), [verify_part(small, ctx, *p) for p in parts])  # again
