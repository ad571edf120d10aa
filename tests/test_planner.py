"""Planner: PLAN.yaml errors, feasibility reasons, analytic model, ranking, determinism, what-if."""

from __future__ import annotations

import glob
import math

import pandas as pd
import pytest

import planner
from planner import whatif
from planner.analytic import Evaluator, UniformBatch, kingman_wait_p
from planner.executors import LocalExecutor, SerialExecutor
from planner.result import deployment_to_yaml, pareto_front
from planner.schema import ConfigError, load_plan_text
from planner.search import evaluate, evaluate_chunk, point_seed
from planner.space import Point, PoolChoice, ServingLayout, context_from_plan
from workloads.layout import Layout

SMALL = """
name: small
model: llama-3.1-70b
hardware: {cluster: h200-node, devices: 8}
workload:
  arrival: {kind: poisson, rate_per_s: 5}
  prompt_tokens: {kind: fixed, tokens: 1024}
  output_tokens: {kind: fixed, tokens: 128}
slo: {ttft_ms: 1000, tpot_ms: 30, percentile: 90}
search:
  devices_per_instance: [1, 2, 4]
  attention_tp: [1, 2, 4]
  micro_batches: [1]
  mtp: [false]
  decode_batch_per_rank: [16, 64, 256]
  prefill_tokens_per_rank: [2048, 8192]
  max_instances: 4
verify: {top: 1, num_requests: 60}
profile: null
"""


@pytest.fixture(scope="module")
def small_plan():
    return load_plan_text(SMALL, "small.yaml")


@pytest.fixture(scope="module")
def small_result(small_plan):
    return planner.plan(small_plan, executor=SerialExecutor())


# ---------------------------------------------------------------------------- PLAN.yaml


def test_example_plans_load():
    paths = sorted(glob.glob("examples/plan_*.yaml"))
    assert paths
    for p in paths:
        cfg = planner.load_plan(p)
        assert cfg.model


def test_unknown_field_is_located():
    text = SMALL.replace("  attention_tp: [1, 2, 4]", "  atention_tp: [1, 2, 4]")
    with pytest.raises(ConfigError, match=r"^small\.yaml:\d+:3: search\.atention_tp: unknown field \(valid: modes"):
        load_plan_text(text, "small.yaml")


def test_unknown_model_is_located():
    with pytest.raises(ConfigError, match=r"^small\.yaml:3:1: model: unknown model"):
        load_plan_text(SMALL.replace("model: llama-3.1-70b", "model: llama-9"), "small.yaml")


def test_budget_beyond_cluster_is_located():
    with pytest.raises(ConfigError, match=r"small\.yaml:4:\d+: hardware\.devices: budget 64 exceeds"):
        load_plan_text(SMALL.replace("devices: 8}", "devices: 64}"), "small.yaml")


def test_overrides_apply(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(SMALL)
    cfg = planner.load_plan(p, ["slo.tpot_ms=20", "search.attention_tp=[2]"])
    assert cfg.slo.tpot_ms == 20 and cfg.search.attention_tp == [2]
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        planner.load_plan(p, ["slo.tpot_ms"])


# ---------------------------------------------------------------------------- feasibility


def _choice(role="decode", d=8, tp=1, ep=None, red=0, mb=1, mtp=0, b=64, c=8192):
    return PoolChoice(role, Layout(tp=tp, dp=d // tp, ep=ep if ep is not None else d, moe_tp=1, redundant_experts=red,
                                   micro_batches=mb), mtp, b, c)


def test_ep_must_divide_experts_reason():
    cfg = load_plan_text(SMALL.replace("llama-3.1-70b", "deepseek-v3").replace("cluster: h200-node, devices: 8",
                                                                              "cluster: h800-mpft, devices: 64"))
    ev = Evaluator(context_from_plan(cfg))
    perf = ev.perf(_choice(d=24, ep=24))
    assert perf.reason.startswith("decode.moe.ep: 24 does not divide 256 routed experts")


def test_memory_reason():
    cfg = load_plan_text(SMALL.replace("llama-3.1-70b", "llama-3.1-405b"))
    ev = Evaluator(context_from_plan(cfg))
    perf = ev.perf(_choice(d=1, ep=1))
    assert "weights" in perf.reason and "exceed" in perf.reason


def test_tpot_unreachable_reason(small_plan):
    cfg = load_plan_text(SMALL.replace("tpot_ms: 30", "tpot_ms: 0.5"))
    perf = Evaluator(context_from_plan(cfg)).perf(_choice(d=2, tp=2, ep=1))
    assert perf.reason.startswith("decode: TPOT at batch 1 per rank is")


def test_uniform_batch_gives_identical_step_costs():
    from hardware.catalog import get_cluster
    from simulator.instance import InstanceCost, InstanceSpec
    from workloads.models import get_model
    from workloads.ops import BatchShape

    spec = InstanceSpec(model=get_model("deepseek-v3"), cluster=get_cluster("h800-mpft"),
                        layout=Layout(dp=8, ep=8, micro_batches=2), weight_dtype="fp8", mtp_depth=1)
    a, b = InstanceCost(spec), InstanceCost(spec)
    for shape in (BatchShape.decode(37, 3000, new_tokens=2), BatchShape.prefill(5, 2000, 100)):
        fast = UniformBatch(**shape.model_dump())
        assert a.step(fast).seconds == pytest.approx(b.step(shape).seconds, rel=1e-12)


# ---------------------------------------------------------------------------- analytic model


def test_kingman_is_md1_mean_oracle():
    # P(W > t) = rho exp(-rho t / W): the mean of that tail is W = rho s / (2 (1 - rho)) for M/D/1
    rho, s = 0.7, 0.1
    mean = rho * s / (2 * (1 - rho))
    p50 = kingman_wait_p(rho, s, 1.0, 50.0)
    assert p50 == pytest.approx(mean / rho * math.log(rho / 0.5))
    assert kingman_wait_p(0.05, s, 1.0, 90.0) == 0.0  # rho below the tail mass: no wait at p90
    assert kingman_wait_p(1.0, s, 1.0, 90.0) == math.inf


def test_tighter_tpot_lowers_decode_throughput(small_plan):
    rows = []
    for tpot in (60, 30, 15):
        cfg = load_plan_text(SMALL.replace("tpot_ms: 30", f"tpot_ms: {tpot}"))
        perf = Evaluator(context_from_plan(cfg)).perf(_choice(d=2, tp=2, ep=1, b=1024))
        rows.append(perf.cap_rps if perf.reason is None else 0.0)
    assert rows[0] > rows[1] > rows[2]


# ---------------------------------------------------------------------------- plan()


def test_plan_ranks_and_returns_runnable_best(small_result):
    r = small_result
    t = r.table
    assert list(t["rank"]) == list(range(1, len(t) + 1))
    feas = t[t["feasible"]]
    assert len(feas) and (~t["feasible"]).sum() > 0
    assert (t.loc[~t["feasible"], "reason"].str.len() > 0).all()
    # verified layouts first, then the rest as the analytic model ranks them
    assert t.iloc[0]["verified"] == "yes" and r.status == "ok"
    rest = feas[(feas["verified"] == "not run") & feas["meets_load"]]
    assert rest["analytic_rank"].is_monotonic_increasing
    from workloads.deployment import load_deployment_text

    text = deployment_to_yaml(r.best)
    again = load_deployment_text(text, "best.yaml")
    assert again == r.best
    assert r.best_yaml().startswith("# best layout")


def test_pareto_front_is_not_dominated(small_result):
    p = small_result.pareto
    assert len(p) >= 1
    x, y = p["tokens_per_s_per_device"].to_numpy(), p["tokens_per_s_per_user"].to_numpy()
    assert (x[:-1] >= x[1:]).all() and (y[:-1] < y[1:]).all()
    feas = small_result.table[small_result.table["feasible"]]
    fx, fy = feas["tokens_per_s_per_device"].to_numpy(), feas["tokens_per_s_per_user"].to_numpy()
    for xp, yp in zip(x, y):  # no feasible layout beats a front point on both axes
        assert not ((fx > xp * (1 + 1e-9)) & (fy > yp * (1 + 1e-9))).any()
    assert pareto_front(feas.iloc[0:0]).empty


def test_verification_runs_when_engine_exists(small_result):
    v = small_result.verification
    from planner.search import engine_available

    if not engine_available():
        assert small_result.status == "unverified" and small_result.best is None
        return
    assert len(v) == 1 and bool(v.iloc[0]["ok"]), v.to_dict("records")
    assert v.iloc[0]["status"] == "verified" and v.iloc[0]["runs"] >= 2  # the emitted YAML, then the claim
    assert v.iloc[0]["sim_capacity_rps"] <= v.iloc[0]["claimed_rps"]


def test_results_identical_across_executors(small_plan):
    a = planner.plan(small_plan, executor=SerialExecutor(), verify_top=0).table
    b = planner.plan(small_plan, executor=LocalExecutor(2), verify_top=0).table
    pd.testing.assert_frame_equal(a, b)


def test_evaluate_is_pure_and_order_free(small_plan):
    ctx = context_from_plan(small_plan)
    pts = [Point(i, ServingLayout("colocated", ((_choice("pool", d=d, tp=d, ep=1, b=64, c=2048), 1),)), ctx)
           for i, d in enumerate((1, 2, 4))]  # d=1 is rejected (memory): still a row
    one = evaluate(pts[1], seed=7)
    assert one == evaluate(pts[1], seed=7)
    assert one["seed"] == point_seed(7, 1) != point_seed(8, 1)
    fwd = evaluate_chunk(ctx, pts, 7)
    rev = evaluate_chunk(ctx, list(reversed(pts)), 7)
    assert fwd == rev and [r["id"] for r in fwd] == [0, 1, 2]


def test_optuna_search_is_seeded(small_plan):
    pytest.importorskip("optuna")
    cfg = load_plan_text(SMALL.replace("max_instances: 4", "max_instances: 4\n  method: optuna\n  optuna_trials: 40"))
    a = planner.plan(cfg, executor=SerialExecutor(), verify_top=0)
    b = planner.plan(cfg, executor=SerialExecutor(), verify_top=0)
    assert a.stats["method"] == "optuna"
    pd.testing.assert_frame_equal(a.table, b.table)


# ---------------------------------------------------------------------------- what-if


def test_sweep_load_and_capacity(small_plan):
    df = whatif.sweep(small_plan, "load", [1.0, 10_000.0], executor=SerialExecutor())
    assert list(df["load"]) == [1.0, 10_000.0]
    assert bool(df.iloc[0]["meets_load"]) and not bool(df.iloc[1]["meets_load"])
    cap = whatif.capacity(small_plan, target_rate_per_s=2.0, device_counts=[1, 2, 4, 8], executor=SerialExecutor())
    assert cap.attrs["fewest_devices"] is not None and cap.attrs["fewest_devices"] <= 8
    assert bool(cap.iloc[-1]["meets_load"])


def test_bandwidth_and_hbm_sweeps(small_plan):
    bw = whatif.sweep(small_plan, "bandwidth", [0.25, 1.0], executor=SerialExecutor())
    hbm = whatif.sweep(small_plan, "hbm", [1.0], executor=SerialExecutor())
    assert bw["tokens_per_s_per_device"].iloc[0] <= bw["tokens_per_s_per_device"].iloc[1] * (1 + 1e-9)
    assert hbm["feasible_layouts"].iloc[0] > 0
    with pytest.raises(ValueError, match="unknown what-if parameter"):
        whatif.sweep(small_plan, "color", [1])


def test_compare_hardware_and_plots(small_plan, small_result):
    df = whatif.compare_hardware(small_plan, ["h200-node", "gb200-nvl72"], devices=8, executor=SerialExecutor())
    assert list(df["hardware"]) == ["h200-node", "gb200-nvl72"]
    assert (df["tokens_per_s_per_device"] > 0).all()
    pytest.importorskip("matplotlib")
    from planner import plot

    for png in (plot.plot_pareto(small_result), plot.plot_compare(df), plot.plot_sweep(df, x="hardware")):
        assert png[:4] == b"\x89PNG"
