"""The microbenchmark suites added for issue 14 (tiny shapes on CPU), their plan, and
``clustersim calibrate --check`` through the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest

NEW_SUITES = {
    "grouped_mm_sparse_bf16.csv": ["groups", "active_groups", "m_per_active", "n", "k", "tokens",
                                   "weight_bytes_active", "seconds", "gbps_active", "tflops", "rotation", "method"],
    "mla_decode_impls_bf16.csv": ["batch", "context", "heads_q", "head_dim_qk", "head_dim_v", "impl", "seconds",
                                  "kv_bytes", "gbps", "tflops", "impl_detail", "method", "backend"],
    "attn_decode_long_bf16.csv": ["batch", "context", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v",
                                  "seconds", "kv_bytes", "gbps", "tflops", "backend", "gqa_impl", "method"],
    "mla_glue_bf16.csv": ["op", "tokens", "heads", "bytes", "seconds", "gbps", "method"],
}


def test_new_suites_quick_cpu_schema_and_resume(tmp_path):
    torch = pytest.importorskip("torch")
    from calibration import run

    suites = "grouped_mm_sparse,mla_decode_impls,attn_decode_long,mla_glue"
    assert run.main(["--out", str(tmp_path), "--quick", "--device", "cpu", "--suite", suites]) == 0
    for name, cols in NEW_SUITES.items():
        if name.startswith("grouped") and not hasattr(torch, "_grouped_mm"):
            continue
        df = pd.read_csv(tmp_path / name)
        assert list(df.columns) == cols and len(df) and (df.seconds > 0).all(), name
    sizes = {n: len(pd.read_csv(tmp_path / n)) for n in NEW_SUITES if (tmp_path / n).exists()}
    assert run.main(["--out", str(tmp_path), "--quick", "--device", "cpu", "--suite", suites]) == 0
    assert {n: len(pd.read_csv(tmp_path / n)) for n in sizes} == sizes
    impls = pd.read_csv(tmp_path / "mla_decode_impls_bf16.csv")
    assert set(impls.impl) == {"bmm", "sdpa"} and (impls.context % 2 == 1).all()  # C cached + 1 new key
    glue = pd.read_csv(tmp_path / "mla_glue_bf16.csv")
    from calibration.bench import mla_glue

    assert set(glue.op) == set(mla_glue.OPS)


def test_sparse_groups_are_spread_and_rotate():
    from calibration.bench.grouped_sparse import active_counts

    c = active_counts(16, 4, 3, shift=1)
    assert list(c.nonzero()[0]) == [1, 5, 9, 13] and c.sum() == 12
    assert list(active_counts(8, 8, 2, 0)) == [2] * 8


def test_suite_plan_sizes_the_new_suites():
    from calibration.bench import SUITES
    from calibration.bench.plan import plan_suites

    rows = {r["suite"]: r for r in plan_suites(SUITES)}
    assert set(rows) == set(SUITES)
    for s in ("grouped_mm_sparse", "mla_decode_impls", "attn_decode_long", "mla_glue"):
        assert rows[s]["points"] > 50 and 1 < rows[s]["seconds"] < 60, s
    assert rows["collectives"]["seconds"] == 0


def test_calibrate_check_cli_quick_cpu(tmp_path):
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from clustersim.cli import app

    out = tmp_path / "prof"
    res = CliRunner().invoke(app, ["calibrate", "--out", str(out), "--device", "cpu", "--quick", "--check",
                                   "--suite", "gemm,elementwise,mla_decode"])
    assert res.exit_code == 0, res.output
    assert "self-check" in res.output and "median |error|" in res.output
    table = pd.read_csv(out / "check.csv")
    assert set(table.family) == {"dense prefill", "dense decode", "moe layer", "moe small", "mla decode"}
    assert (table.measured_s > 0).all() and (table.predicted_s > 0).all()
    doc = json.loads((out / "check.json").read_text())
    assert doc["points"] == len(table) and doc["profile"] == str(out) and len(doc["rows"]) == len(table)
    from calibration.profile import load_profile

    assert not any(t.startswith("gt_") for t in load_profile(out).tables)  # composed steps stay in check/


def test_calibrate_check_needs_a_calibration(tmp_path):
    from typer.testing import CliRunner

    from clustersim.cli import app

    res = CliRunner().invoke(app, ["calibrate", "--out", str(tmp_path / "p"), "--device", "cpu", "--check",
                                   "--suite", "nope"])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_check_is_costed_on_the_profiles_own_gpu():
    from calibration.profile import load_profile
    from clustersim.validation import cluster_for_profile

    assert cluster_for_profile(load_profile("h200")) == "h200-node"
