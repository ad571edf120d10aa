"""The planner's parallel paths give what one process gives: ranking shares in workers, the
verification's parts begun early, tasks begun while the caller works, the Pareto PNG drawn by a
helper process."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

import planner
import planner.search as search
from clustersim import outputs
from clustersim.plotproc import PlotProcess
from planner.executors import LocalExecutor, SerialExecutor, start
from planner.schema import load_plan_text
from tests.test_planner import SMALL


def _pid(x: int) -> tuple[int, int]:
    return x, os.getpid()


def test_start_runs_tasks_in_workers_while_the_caller_works():
    pending = start(LocalExecutor(2), _pid, [(1,)])  # one task: still a worker process
    here = os.getpid()
    (x, pid), = pending()
    assert x == 1 and pid != here
    got = start(LocalExecutor(2), _pid, [(i,) for i in range(5)])()
    assert [x for x, _ in got] == list(range(5)) and all(p != here for _, p in got)
    assert start(SerialExecutor(), _pid, [(7,)])() == [(7, here)]

    class MapOnly:  # an executor without start(): its map runs when waited for
        workers = 1

        def map(self, fn, tasks, desc=""):
            return [fn(*t) for t in tasks]

    assert start(MapOnly(), _pid, [(3,)])() == [(3, here)]
    pending = start(LocalExecutor(2), _pid, [(1,), (2,)])
    pending.cancel()  # ends the workers; a second cancel does nothing
    pending.cancel()


@pytest.fixture(scope="module")
def small():
    return load_plan_text(SMALL, "small.yaml")


def test_parallel_ranking_and_early_verification_match_one_process(small, monkeypatch):
    """Ranking shares in workers (``rank_task``) and the first verification round begun before
    the table is built give the serial plan's table, verification and best layout."""
    one = planner.plan(small, executor=SerialExecutor())
    monkeypatch.setattr(search, "_PARALLEL_ROWS", 20)  # the small plan's ~150 rows in shares
    assert len(search._shares([b for b in _blocks(small)], 2)) == 2
    two = planner.plan(small, executor=LocalExecutor(2))
    pd.testing.assert_frame_equal(one.table, two.table)
    assert one.best == two.best and one.status == two.status == "ok"
    cols = [c for c in one.verification.columns if c != "sim_wall_s"]
    pd.testing.assert_frame_equal(one.verification[cols], two.verification[cols])
    # workers that do not inherit this process's evaluator get its memos as a state (``rank_task``)
    sent = LocalExecutor(2)
    assert sent.forks
    sent.forks = False
    pd.testing.assert_frame_equal(one.table, planner.plan(small, executor=sent).table)


def _blocks(cfg):
    from planner.analytic import Evaluator
    from planner.merge import choice_classes, merged_blocks
    from planner.space import all_pool_choices, context_from_plan
    from workloads.models import get_model

    ctx = context_from_plan(cfg)
    ev = Evaluator(ctx)
    choices = all_pool_choices(ctx, cfg.search, get_model(cfg.model))
    feasible = {r: [c for c in cs if ev.perf(c).reason is None] for r, cs in choices.items()}
    classes = {r: choice_classes(cs, ev.result_key) for r, cs in feasible.items()}
    return merged_blocks(ctx, cfg.search, classes, feasible)


def test_verification_parts_make_the_row_one_check_makes(small):
    """``verify_task`` (the emitted run, then the claim) and the parts run apart give one row."""
    from planner.verify import combine_parts, verify_part, verify_task

    res = planner.plan(small, executor=SerialExecutor(), verify_top=0)
    from planner.space import context_from_plan

    ctx = context_from_plan(small)
    row = res.table[res.table["feasible"]].iloc[0].to_dict()
    layout = _layout(small, row["id"])
    whole = verify_task(small, ctx, layout, row["id"], row, 11)
    parts = combine_parts(small, ctx, row["id"], row, verify_part(small, ctx, "emitted", layout, row["id"], row, 11),
                          verify_part(small, ctx, "claim", layout, row["id"], row, 11))
    whole.pop("sim_wall_s")
    parts.pop("sim_wall_s")
    assert whole == parts and whole["ok"]


def _layout(cfg, point_id: int):
    blocks = list(_blocks(cfg))
    rejected = int(planner.plan(cfg, executor=SerialExecutor(), verify_top=0).stats["pool_choices_rejected"])
    for b in blocks:
        if b.first <= point_id - rejected < b.first + len(b.counts):
            return b.layout(point_id - rejected - b.first)
    raise KeyError(point_id)


def test_pareto_png_from_the_helper_is_the_one_drawn_here(small, tmp_path, monkeypatch):
    res = planner.plan(small, executor=SerialExecutor())
    here, there, broken = tmp_path / "here", tmp_path / "there", tmp_path / "broken"
    outputs.write_plan(outputs.OutputDir.prepare(here), res)
    with PlotProcess() as helper:
        outputs.write_plan(outputs.OutputDir.prepare(there), res, plotter=helper)
    assert (here / "pareto.png").read_bytes() == (there / "pareto.png").read_bytes()
    import clustersim.plotproc as plotproc

    monkeypatch.setattr(plotproc, "_CHILD", "import sys; sys.exit(3)")  # a helper that fails: drawn here
    with PlotProcess() as helper:
        outputs.write_plan(outputs.OutputDir.prepare(broken), res, plotter=helper)
    assert (broken / "pareto.png").read_bytes() == (here / "pareto.png").read_bytes()
    assert not [p for p in broken.iterdir() if p.name.startswith(".")]  # no helper file left behind


def test_pool_costs_taken_from_both_ends_match_one_process(monkeypatch):
    """With forked workers the pool groups are taken from both ends of one queue
    (``search._steal_pools``, the worker from the front): the worker's and this process's
    capacities together are the serial pool phase's, and the worker costed some."""
    from planner.analytic import Evaluator, share_with_workers
    from planner.space import all_pool_choices, context_from_plan
    from workloads.models import get_model

    cfg = planner.load_plan("examples/plan_deepseek-v3_h200x32.yaml", [
        "search.attention_tp=[1,8]", "search.decode_batch_per_rank=[16,64]", "search.prefill_tokens_per_rank=[16384]",
        "hardware.devices=16"])
    ctx = context_from_plan(cfg)
    choices = [c for cs in all_pool_choices(ctx, cfg.search, get_model(cfg.model)).values() for c in cs]
    one = Evaluator(ctx)
    search._pool_phase(ctx, cfg.search, choices, SerialExecutor(), one)
    taken = []
    steal = search._steal_pools
    monkeypatch.setattr(search, "_steal_pools", lambda *a: taken.append(len(a[3])) or steal(*a))

    def worker_first() -> None:  # this process begins once the worker has taken a group
        (_tasks, ends), = search._FORKED_POOL_TASKS.values()
        deadline = time.monotonic() + 60
        while ends[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.005)

    monkeypatch.setattr(search, "_import_later", worker_first)
    two = Evaluator(ctx)
    ex = LocalExecutor(2)
    assert ex.forks
    share_with_workers(two)
    try:
        search._pool_phase(ctx, cfg.search, choices, ex, two)
    finally:
        share_with_workers(None)
    assert taken and taken[0] >= 4  # the groups went to both ends
    assert {c: two.perf(c) for c in choices} == {c: one.perf(c) for c in choices}
    assert two.step_calls() < one.step_calls()  # the worker's groups came back as their tables
