"""Merged layouts (planner.merge): a merged row equals every layout it stands for, the ranking is
the unmerged one, ids are the unmerged grid's; ranked.parquet holds the table, ranked.csv its top."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

import planner
from clustersim.cli import app
from planner.analytic import Evaluator
from planner.executors import SerialExecutor
from planner.merge import COUNT, VARIANTS, LayoutIndex, choice_classes, merged_blocks
from planner.ranking import rank_table
from planner.schema import load_plan_text
from planner.space import all_pool_choices, context_from_plan, layouts_of
from tests.test_planner import SMALL
from workloads.models import get_model

# DeepSeek-V3 on 64 H800: redundant experts and batch limits that change nothing merge
DSV3 = ["hardware.devices=64", "search.devices_per_instance=[16,32]", "search.decode_batch_per_rank=[64,128]",
        "search.max_instances=4", "search.micro_batches=[2]", "search.attention_tp=[1]"]


@pytest.fixture(scope="module", params=["llama-small", "dsv3-h800-64"])
def planned(request):
    if request.param == "llama-small":
        cfg = load_plan_text(SMALL, "small.yaml")
    else:
        cfg = planner.load_plan("examples/plan_deepseek-v3_h800.yaml", DSV3)
    return cfg, planner.plan(cfg, executor=SerialExecutor(), verify_top=0)


def _unmerged(cfg) -> pd.DataFrame:
    """Every layout of the plan's grid evaluated one at a time (and the rejected choices' rows)."""
    ctx = context_from_plan(cfg)
    ev = Evaluator(ctx)
    choices = all_pool_choices(ctx, cfg.search, get_model(cfg.model))
    rejected = [c for r in choices for c in choices[r] if ev.perf(c).reason is not None]
    feasible = {r: [c for c in choices[r] if ev.perf(c).reason is None] for r in choices}
    from planner.space import ServingLayout

    rows = [{**ev.evaluate_layout(ServingLayout("colocated" if c.role == "pool" else "disaggregated", ((c, 1),))),
             "id": i} for i, c in enumerate(rejected)]
    rows += [{**ev.evaluate_layout(lay), "id": len(rejected) + i}
             for i, lay in enumerate(layouts_of(ctx, cfg.search, feasible))]
    return pd.DataFrame(rows)


def _labels(df: pd.DataFrame) -> list[str]:
    from planner.merge import RESULT_COLUMNS

    return [c for c in df.columns if c.startswith(("pool_", "prefill_", "decode_")) and c not in RESULT_COLUMNS]


def _key(row: pd.Series, cols: list[str]) -> tuple:
    return tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row[cols])


def test_merged_rows_equal_every_layout_they_stand_for(planned):
    cfg, res = planned
    full = _unmerged(cfg)
    table = res.table
    assert int(table[COUNT].sum()) == len(full) == res.stats["layouts"] + res.stats["pool_choices_rejected"]
    assert len(table) <= len(full)
    # a merged row is its own layout's row, value for value (ids are the unmerged grid's)
    common = [c for c in full.columns if c in table.columns]
    by_id = full.set_index("id")
    for _, row in table.iterrows():
        mine = by_id.loc[row["id"], [c for c in common if c != "id"]]
        for c, v in mine.items():
            w = row[c]
            assert v == w or (isinstance(v, float) and math.isnan(v) and math.isnan(w)), (row["id"], c, v, w)
    # every layout's results are a merged row's, and the row is the lowest id among them
    results = [c for c in common if c not in _labels(full) and c not in ("id", "layout")]
    first: dict[tuple, int] = {}
    counts: dict[tuple, int] = {}
    for _, row in full.sort_values("id").iterrows():
        k = _key(row, results)
        first.setdefault(k, int(row["id"]))
        counts[k] = counts.get(k, 0) + 1
    got = {_key(row, results): (int(row["id"]), int(row[COUNT])) for _, row in table.iterrows()}
    assert got == {k: (first[k], counts[k]) for k in first}


def test_ranking_is_the_unmerged_ranking(planned):
    cfg, res = planned
    full = rank_table(_unmerged(cfg), "tokens_per_s_per_device")
    ids = set(res.table["id"])
    assert [i for i in full["id"] if i in ids] == list(res.table["id"])


def test_variants_name_what_differs(planned):
    _cfg, res = planned
    t = res.table
    one = t[t[COUNT] == 1]
    assert (one[VARIANTS] == "").all()
    many = t[t[COUNT] > 1]
    if len(many):
        assert (many[VARIANTS].str.len() > 0).all()
        assert many[VARIANTS].str.contains(r"^\w+ [^;]+\|").all()  # "column v1|v2; ..."


def test_layout_index_gives_the_enumerated_layouts(planned):
    cfg, _res = planned
    ctx = context_from_plan(cfg)
    ev = Evaluator(ctx)
    choices = all_pool_choices(ctx, cfg.search, get_model(cfg.model))
    feasible = {r: [c for c in choices[r] if ev.perf(c).reason is None] for r in choices}
    grid = list(layouts_of(ctx, cfg.search, feasible))
    classes = {r: choice_classes(cs, ev.result_key) for r, cs in feasible.items()}
    index = LayoutIndex()
    n = 0
    for block in merged_blocks(ctx, cfg.search, classes, feasible):
        index.add_block(block)
        for i in range(len(block.counts)):
            assert grid[block.first + i] == block.layout(i)
            n += block.count
    assert n == len(grid)
    ids = [b.first for b in merged_blocks(ctx, cfg.search, classes, feasible)]
    assert all(index[i] == grid[i] for i in ids) and (len(grid) + 5) not in index


def test_plan_writes_parquet_and_top_csv(tmp_path):
    plan = tmp_path / "small.yaml"
    plan.write_text(SMALL)
    out = tmp_path / "p"
    r = CliRunner().invoke(app, ["plan", str(plan), "--out", str(out), "--csv-rows", "7"])
    assert r.exit_code == 0, r.output
    full = pd.read_parquet(out / "ranked.parquet")
    top = pd.read_csv(out / "ranked.csv")
    assert len(full) == json.loads((out / "plan.json").read_text())["stats"]["rows"] > 7 == len(top)
    assert list(top.columns) == list(full.columns) and list(top["id"]) == list(full["id"].head(7))
    assert list(full["rank"]) == list(range(1, len(full) + 1)) and {COUNT, VARIANTS} <= set(full.columns)
    r = CliRunner().invoke(app, ["plan", str(plan), "--out", str(out), "--csv-rows", "0"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(out / "ranked.csv")) == len(pd.read_parquet(out / "ranked.parquet"))


def test_unverified_order_does_not_depend_on_copies_of_a_verified_layout():
    """A layout with the same results as a verified one (e.g. its redundant-expert variant) used
    to stay a row of its own, unverified, and push the unverified layouts it dominates a Pareto
    layer down: on examples/plan_deepseek-r1_cloudmatrix384.yaml one fell from 3rd to 977th
    because of such a copy. Merged into the verified row (``planner.merge``), the copy no longer
    decides how other layouts rank: U (not dominated by any unverified layout) ranks before V."""
    from planner.ranking import apply_verification

    def table(rows):
        df = pd.DataFrame([{"id": i, "layout": name, "mode": "disaggregated", "devices": 8, "feasible": True,
                            "meets_load": True, "capacity_rps": x, "tokens_per_s_per_device": x,
                            "tokens_per_s_per_user": y, "hardware_usd": 8.0, "ttft_ms": 100.0, "tpot_ms": 1e3 / y,
                            "shortfall": math.nan} for i, (name, x, y) in enumerate(rows)])
        return rank_table(df, "tokens_per_s_per_device")

    ver = pd.DataFrame([{"id": 0, "ok": True, "reason": "", "sim_capacity_rps": 10.0, "capacity_gap": 0.0}])
    rows = [("R", 10.0, 5.0), ("U", 9.9, 4.9), ("V", 9.0, 6.0)]
    merged = apply_verification(table(rows), ver, "tokens_per_s_per_device", 1.0, 8.0)
    assert list(merged["layout"]) == ["R", "U", "V"]
    with_copy = apply_verification(table(rows + [("R copy", 10.0, 5.0)]), ver, "tokens_per_s_per_device", 1.0, 8.0)
    assert list(with_copy["layout"]) == ["R", "R copy", "V", "U"]  # what the unmerged table did
