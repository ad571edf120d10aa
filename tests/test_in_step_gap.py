"""The in-step gap per measured compute op (``simulator.costmodel.profile_in_step_gap_s``): added to
every op a measured profile times inside a step, on the profile's device and on others of the same
vendor (same runtime), not on another vendor's; kernel-level checks pass ``in_step_gap_s=0``."""

from __future__ import annotations

import math

import pytest

from calibration.profile import load_profile
from hardware.catalog import get_cluster
from simulator.costmodel import CostModel, profile_in_step_gap_s
from workloads.ops_blocks import gemm


def _t(cluster: str, gap: float | None) -> float:
    cm = CostModel(cluster=get_cluster(cluster), profile=load_profile("h200"), in_step_gap_s=gap)
    return cm.compute_seconds(gemm("g", 64, 4096, 4096, dtype="bf16", layer="x", count=1))[0]


def test_gap_adds_once_per_measured_op_on_the_same_vendor():
    for cluster in ("h200-node", "h800-mpft"):  # measured device; transferred to another NVIDIA device
        assert _t(cluster, 1e-6) - _t(cluster, 0.0) == pytest.approx(1e-6, rel=1e-9)
        assert _t(cluster, None) - _t(cluster, 0.0) == pytest.approx(profile_in_step_gap_s(load_profile("h200")))


def test_no_gap_on_another_vendor():
    assert _t("cloudmatrix384", 1e-6) == _t("cloudmatrix384", 0.0)


def test_profile_gap_is_bounded(tmp_path):
    class P:
        metadata = {"in_step_gap": {"seconds": float("nan")}}

    assert profile_in_step_gap_s(P()) == 0.0
    P.metadata = {"in_step_gap": {"seconds": 1.0}}  # a second per op is not a gap
    assert profile_in_step_gap_s(P()) == 0.0
    P.metadata = {}
    assert profile_in_step_gap_s(P()) == 0.0 and profile_in_step_gap_s(None) == 0.0
    assert 0.3e-6 < profile_in_step_gap_s(load_profile("h200")) < 1.5e-6 and math.isfinite(_t("h200-node", None))
