"""The widened ground truth (issue 14): point sets, fit/holdout split, plan, MLA math, CPU run, and
that every point of every ground-truth table is predicted (no accuracy bound for the new families)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from calibration.groundtruth import cases as K
from calibration.groundtruth.plan import SAFETY, plan_cases

MEASURED = Path(__file__).parent / "data" / "measured"
NEW_TABLES = (K.MOE_SMALL, K.MLA_DECODE, K.MLA_PREFILL, K.DENSE_DECODE_LONG)


def _points(quick=False):
    return [(c.table.file, p) for c in K.wide_cases(quick) for p in c.points]


def test_wide_set_size_and_split_balance():
    pts = _points()
    assert len(pts) >= 170
    holdout = [p for _, p in pts if p["split"] == "holdout"]
    assert len(holdout) >= 85 and len(pts) - len(holdout) >= 85
    assert _points() == pts  # deterministic
    keys = [(f, tuple(p[k] for k in t.key)) for t in NEW_TABLES for f, p in pts if f == t.file]
    assert len(keys) == len(set(keys))  # no point measured twice, so none is in both halves


@pytest.mark.parametrize("table,axes", [(K.MOE_SMALL, ("tokens_per_rank",)), (K.MLA_DECODE, ("batch", "context")),
                                        (K.MLA_PREFILL, ("batch", "seq")), (K.DENSE_DECODE_LONG, ("batch", "context"))])
def test_both_halves_span_each_family(table, axes):
    df = pd.DataFrame([p for f, p in _points() if f == table.file])
    for ax in axes:
        lo, hi = sorted(df[ax].unique())[:2], sorted(df[ax].unique())[-2:]
        for split, g in df.groupby("split"):
            assert set(g[ax]) & set(lo) and set(g[ax]) & set(hi), (split, ax)


def test_wide_families_cover_the_issue_regimes():
    pts = _points()
    moe = {(p["model"], p["ep"]) for f, p in pts if f == K.MOE_SMALL.file}
    assert {("deepseek-v3", 1), ("deepseek-v3", 4), ("deepseek-v2-lite", 1)} <= moe
    assert {p["tokens_per_rank"] for f, p in pts if f == K.MOE_SMALL.file} >= {1, 2, 4, 8, 16, 32, 64}
    mla = [p for f, p in pts if f == K.MLA_DECODE.file]
    assert {p["batch"] for p in mla} >= {1, 256} and {p["context"] for p in mla} >= {1024, 32768}
    assert all(p["batch"] * p["context"] <= K.MLA_MAX_CACHED_TOKENS for p in mla)
    assert {p["model"] for p in mla} == {"deepseek-v2-lite"} and {p["layers"] for p in mla} == {27}
    long = [p for f, p in pts if f == K.DENSE_DECODE_LONG.file and p["model"] == "llama-3.1-8b"]
    assert {p["batch"] for p in long} >= {1, 8} and {p["context"] for p in long} >= {8192, 16384, 32768}


def test_plans_fit_the_device_budgets():
    """The wide set must fit device_gt_wide.sh's ground-truth budget and the check set the
    reserve calibration.run keeps for --check, with the plan's safety factor."""
    from calibration.run import CHECK_RESERVE_S

    wide = sum(r["seconds"] for r in plan_cases(K.wide_cases(False)))
    check = sum(r["seconds"] for r in plan_cases(K.check_cases(False)))
    assert 30 < wide * SAFETY <= 300
    assert 3 < check * SAFETY <= CHECK_RESERVE_S


def test_configs_come_from_the_catalog_unchanged():
    from calibration.groundtruth import configs as C

    assert C.LLAMA_8B == C.DenseConfig("llama-3.1-8b", 32, 4096, 32, 8, 128, 14336, 128256)
    assert C.LLAMA_70B_TP4 == C.DenseConfig("llama-3.1-70b", 80, 8192, 16, 2, 128, 7168, 32064, tp=4)
    assert C.DSV3_MOE_EP4 == C.MoEConfig("deepseek-v3", 7168, 2048, 256, 8, 4)
    lite = C.moe_config("deepseek-v2-lite")
    assert (lite.hidden, lite.moe_inter, lite.routed_experts, lite.top_k, lite.shared_experts, lite.scoring) == \
        (2048, 1408, 64, 6, 2, "softmax")
    m = C.model_config("deepseek-v2-lite", 3)
    assert (m.num_layers, m.num_dense_layers, m.attention.kv_lora_rank) == (3, 1, 512)


def test_absorbed_mla_decode_equals_the_decompressed_attention():
    """The ground truth's absorbed decode (W_UK into q, SDPA over the latent, W_UV after) computes
    the same attention as decompressing the latent cache into per-head K and V."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from calibration.groundtruth import mla

    g = torch.Generator().manual_seed(0)
    B, H, C, lat, dn, r, dv = 2, 3, 5, 8, 4, 2, 4
    q_nope, q_pe = torch.randn(B, H, dn, generator=g), torch.randn(B, H, r, generator=g)
    cache = torch.randn(B, C, lat + r, generator=g)
    kv_b = torch.randn(H, dn + dv, lat, generator=g)
    w_uk, w_uv = kv_b[:, :dn], kv_b[:, dn:]
    scale = (dn + r) ** -0.5
    q = mla.absorbed_query(q_nope, q_pe, w_uk)
    kc = cache.view(B, 1, C, lat + r)
    o = F.scaled_dot_product_attention(q.view(B, 1, H, lat + r), kc, kc[..., :lat], scale=scale)
    got = mla.absorbed_output(o.reshape(B, H, lat), w_uv.transpose(1, 2)).view(B, H, dv)
    k_nope = torch.einsum("bcl,hdl->bhcd", cache[..., :lat], w_uk)
    v = torch.einsum("bcl,hdl->bhcd", cache[..., :lat], w_uv)
    k = torch.cat((k_nope, cache[:, None, :, lat:].expand(B, H, C, r)), -1)
    p = torch.softmax(torch.einsum("bhd,bhcd->bhc", torch.cat((q_nope, q_pe), -1), k) * scale, -1)
    torch.testing.assert_close(got, torch.einsum("bhc,bhcd->bhd", p, v), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def wide_quick(tmp_path_factory):
    pytest.importorskip("torch")
    from calibration import groundtruth

    out = tmp_path_factory.mktemp("wide")
    assert groundtruth.main(["--out", str(out), "--set", "wide", "--quick", "--device", "cpu"]) == 0
    return out


def test_wide_quick_cpu_tables_resume(wide_quick):
    from calibration import groundtruth

    sizes = {}
    for t in NEW_TABLES:
        df = pd.read_csv(wide_quick / t.file)
        assert tuple(df.columns) == t.columns and len(df) and (df.seconds > 0).all(), t.file
        assert set(df.split) == {"fit", "holdout"}, t.file
        sizes[t.file] = len(df)
    moe = pd.read_csv(wide_quick / K.MOE_SMALL.file)
    assert ((moe.experts_touched >= 1) & (moe.experts_touched <= moe.local_experts)).all()
    assert (moe.experts_touched <= moe.received_pairs).all()
    meta = json.loads((wide_quick / "groundtruth_metadata.json").read_text())
    assert meta["set"] == "wide" and meta["excluded"]
    assert groundtruth.main(["--out", str(wide_quick), "--set", "wide", "--quick", "--device", "cpu"]) == 0
    assert {t.file: len(pd.read_csv(wide_quick / t.file)) for t in NEW_TABLES} == sizes


def _data_dirs():
    dirs = [MEASURED] + sorted(p for p in MEASURED.iterdir() if p.is_dir())
    return [d for d in dirs if any(d.glob("gt_*.csv"))]


@pytest.mark.parametrize("measured", _data_dirs(), ids=lambda p: p.name)
def test_every_measured_point_is_predicted(measured):
    from calibration.groundtruth.workload import FAMILIES
    from calibration.profile import load_profile
    from clustersim.validation import predict_measured

    df = predict_measured(measured, load_profile("h200"))
    rows = sum(len(pd.read_csv(measured / t)) for t in FAMILIES if (measured / t).exists())
    assert len(df) == rows and (df.predicted_s > 0).all() and df.split.isin(["fit", "holdout"]).all()


def test_every_family_of_the_quick_run_is_predicted(wide_quick):
    from calibration.profile import load_profile
    from clustersim.validation import error_summary, predict_measured

    df = predict_measured(wide_quick, load_profile("h200"))
    assert set(df.family) == {"moe small", "mla decode", "mla prefill", "dense decode long"}
    assert (df.predicted_s > 0).all() and df.error.notna().all()
    summ = error_summary(df)
    assert set(summ.split) == {"fit", "holdout"} and (summ.points > 0).all()


def test_accuracy_report_script(wide_quick, tmp_path, capsys):
    import shutil
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import accuracy_report

    for f in ("gt_dense_decode.csv",):
        shutil.copy(MEASURED / f, tmp_path / f)
    shutil.copytree(wide_quick, tmp_path / "wide")
    assert accuracy_report.main(["--measured", str(tmp_path), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| mla decode | holdout |" in out and "| dense decode | fit | 9 |" in out and "| all | holdout |" in out


def test_every_planned_point_can_be_predicted():
    """Before device time is spent: every wide and check point maps to operators that the cost
    model prices (EP-32 ranks included, their collectives left out)."""
    from calibration.groundtruth.workload import row_ops
    from calibration.profile import load_profile
    from clustersim.validation import ops_compute_seconds
    from hardware.catalog import get_cluster
    from simulator.costmodel import CostModel

    cm = CostModel(cluster=get_cluster("h200-node"), profile=load_profile("h200"))
    for c in K.wide_cases(False) + K.check_cases(False):
        for p in c.points:
            assert ops_compute_seconds(cm, row_ops(c.table.file, p).ops) > 0, (c.part, p)


def test_every_planned_moe_point_receives_pairs():
    """A rank that receives no pair would hand the grouped GEMM an empty input: the seeded
    routings of every planned MoE point (numpy only) give each rank at least one pair."""
    from calibration.groundtruth import configs as C
    from calibration.groundtruth.moe import uniform_routing

    for c in K.wide_cases(False) + K.check_cases(False):
        if c.table in (K.MOE_SMALL, K.MOE_LAYER):
            cfg = C.moe_config(c.model[1], c.model[2])
            for p in c.points:
                exp, _ = uniform_routing(cfg, p["tokens_per_rank"], p["seed"])
                assert len(exp) > 0, (c.model, p)


def test_grouped_mm_path_equals_the_per_expert_loop():
    """The MoE block's ``torch._grouped_mm`` path (what the GPU runs) computes what the per-expert
    loop computes, empty experts included (checked on CPU where torch has the kernel)."""
    torch = pytest.importorskip("torch")
    if not hasattr(torch, "_grouped_mm"):
        pytest.skip("torch._grouped_mm unavailable")
    from calibration.groundtruth import configs as C
    from calibration.groundtruth.moe import MoEBlock, make_route

    cfg = C.moe_config("tiny-mla", 1)  # 16 experts, top-4: 2 tokens leave most experts empty
    gen = torch.Generator().manual_seed(0)
    loop = MoEBlock(cfg, "cpu", gen, impl="loop")
    grouped = MoEBlock(cfg, "cpu", torch.Generator().manual_seed(0), impl="grouped_mm")
    route = make_route(cfg, 2, seed=3, device="cpu")
    assert route.info["experts_touched"] < cfg.local_experts
    x = torch.randn(route.rows, cfg.hidden, dtype=torch.bfloat16)
    out = [torch.empty(route.rows, cfg.hidden, dtype=torch.bfloat16) for _ in range(2)]
    try:
        got = grouped.routed(x, route, out[0]).float()
    except (RuntimeError, NotImplementedError) as exc:  # a torch without the CPU kernel
        pytest.skip(f"grouped_mm on CPU: {exc}")
    torch.testing.assert_close(got, loop.routed(x, route, out[1]).float(), rtol=2e-2, atol=2e-2)
