"""DeepGEMM's measured FP8 kernels (calibration.deepgemm_lookup, the H200 profile's deepgemm_fp8
table measured by benchmarks/device_deepgemm.sh): the lookup's interpolation rules, the fused set's
use of it, and its accuracy on the table's hold-out rows (clustersim check kernels.deepgemm_fp8)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from calibration.deepgemm_lookup import DEEPGEMM_TABLE, DeepGemmTable
from calibration.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]


def _toy() -> DeepGemmTable:
    """Two groups counts (2 and 8) of one (N, K) with a flat-then-linear curve, and a dense curve."""
    rows = [("masked", 2, m, t) for m, t in ((1, 10.0), (64, 10.0), (256, 20.0), (1024, 80.0))]
    rows += [("masked", 8, m, t) for m, t in ((1, 40.0), (64, 40.0), (256, 60.0), (1024, 240.0))]
    rows += [("masked", 4, 256, 1.0)]  # a single M: no curve of 4 groups
    rows += [("dense", 1, m, t) for m, t in ((1, 5.0), (128, 6.0), (4096, 100.0))]
    cols = {"kind": [r[0] for r in rows], "groups": [r[1] for r in rows], "m_per_group": [r[2] for r in rows],
            "n": [4096] * len(rows), "k": [7168] * len(rows), "seconds": [r[3] * 1e-6 for r in rows]}
    return DeepGemmTable(cols)


def test_lookup_rules_on_a_toy_table():
    t = _toy()
    us = lambda r: r[0] * 1e6
    assert us(t.grouped_seconds(2, 64, 4096, 7168)) == pytest.approx(10.0)  # a measured point
    assert us(t.grouped_seconds(2, 160, 4096, 7168)) == pytest.approx(15.0)  # linear in M between points
    assert us(t.grouped_seconds(2, 0.5, 4096, 7168)) == pytest.approx(10.0)  # clamped below (weights read)
    assert us(t.grouped_seconds(2, 2048, 4096, 7168)) == pytest.approx(160.0)  # linear in M above
    assert us(t.grouped_seconds(4, 64, 4096, 7168)) == pytest.approx(20.0)  # log-log in groups: sqrt(10 x 40)
    assert us(t.grouped_seconds(16, 64, 4096, 7168)) == pytest.approx(80.0)  # linear in groups above 8
    assert us(t.grouped_seconds(1, 64, 4096, 7168)) == pytest.approx(5.0)  # and below 2
    assert t.grouped_seconds(2, 64, 1024, 1024) is None and t.dense_seconds(64, 1024, 1024) is None
    assert us(t.dense_seconds(128, 4096, 7168)) == pytest.approx(6.0)
    assert us(t.dense_seconds(8192, 4096, 7168)) == pytest.approx(200.0)
    assert "log-log between 2 and 8 groups" in t.grouped_seconds(4, 64, 4096, 7168)[1]


def test_shipped_table_times_the_fused_moe_gemm_and_leaves_other_ops_alone():
    from hardware.catalog import get_cluster
    from simulator.costmodel import CostModel
    from workloads.op import GROUPED_GEMM, Op

    p = load_profile("h200")
    assert DEEPGEMM_TABLE in p.tables and "deepgemm_fp8_table" in p.metadata
    shape = {"groups": 2, "m_per_group": 8, "n": 4096, "k": 7168, "tokens_total": 16, "active_groups": 2}
    op = Op("g", GROUPED_GEMM, shape, 2.0 * 16 * 4096 * 7168, 1.0, 1.0, dtype="fp8", layer="moe",
            meta={"impl": "fused_moe"})
    t, src = p.op_seconds(op)
    assert t == pytest.approx(2.2967e-05, rel=1e-9) and "deepgemm_fp8" in src  # the measured decode row
    bf16 = Op("g", GROUPED_GEMM, shape, 1.0, 1.0, 1.0, dtype="bf16", layer="moe", meta={"impl": "fused_moe"})
    assert "deepgemm" not in (p.op_seconds(bf16) or (0, ""))[1]
    # transferred to another device through the cost model like every profile table
    cm = CostModel(cluster=get_cluster("h800-mpft"), profile=load_profile("h200"))
    assert "deepgemm_fp8" in cm.compute_seconds(op)[1]


def test_hold_out_accuracy_of_the_lookup():
    """From the fit rows alone, the hold-out rows (all 8-group rows, every contiguous and routed row, masked M
    2/16/64/256, dense M 8/64/512) come within a median 10% (6.5% on 2026-12-02), none failing."""
    from clustersim.checks.kernels import deepgemm_measured_checks

    checks = deepgemm_measured_checks()
    hold = [abs(c.error) for c in checks if c.role == "holdout"]
    assert len(checks) == 154 and len(hold) == 104
    assert np.median(hold) <= 0.10 and all(c.status != "fail" for c in checks)


def test_probe_points_put_the_published_rows_first_and_are_distinct():
    spec = importlib.util.spec_from_file_location("deepgemm_probe", ROOT / "benchmarks" / "deepgemm_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    every = probe.points({"masked", "contiguous", "dense"})
    assert len(every) == len(set(every)) == 130
    assert every[0] == ("masked", 1, 1024, 4096, 7168)
    assert {p[0] for p in probe.points({"dense"})} == {"dense"}


def test_probe_rows_append_measure_errors_and_warmups(tmp_path):
    """benchmarks/probe_rows.append_rows: header once, a failing point written with its error, a
    warm-up (None) not written, a second run appending to the same file."""
    spec = importlib.util.spec_from_file_location("probe_rows", ROOT / "benchmarks" / "probe_rows.py")
    rows = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rows)

    def row_of(p):
        if p == 2:
            raise ValueError("no kernel")
        return None if p == 3 else (p, 2 * p)

    out = tmp_path / "probe.csv"
    rows.append_rows(str(out), ("a", "b"), [1, 2, 3, 4], row_of, lambda p, msg: (p, msg))
    rows.append_rows(str(out), ("a", "b"), [5], row_of, lambda p, msg: (p, msg))
    assert out.read_text().splitlines() == ["a,b", "1,2", "2,ValueError: no kernel", "4,8", "5,10"]
