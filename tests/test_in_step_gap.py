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


def _profile_with_gaps(tmp_path, gaps_us: list[float], stated: float | None = None):
    """A copy of the shipped H200 profile whose ``in_step_gap`` table holds ``gaps_us`` and whose
    metadata states ``stated`` seconds (None: no entry, as a fresh ``calibrate`` writes)."""
    import json
    import shutil

    from calibration.bench.in_step_gap import COLUMNS

    src = load_profile("h200").path
    d = tmp_path / "p"
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    meta = json.loads((d / "metadata.json").read_text())
    meta.pop("in_step_gap", None)
    if stated is not None:
        meta["in_step_gap"] = {"seconds": stated}
    (d / "metadata.json").write_text(json.dumps(meta))
    rows = [",".join(COLUMNS)] + [f"c,1,1,1,1,{i},9,0,0,{g * 1e-6},cuda_graph" for i, g in enumerate(gaps_us)]
    (d / "in_step_gap.csv").write_text("\n".join(rows) + "\n")
    return load_profile(d)


def test_a_profile_without_the_entry_states_its_tables_median(tmp_path):
    """A fresh ``calibrate`` profile (no metadata entry) adds the median gap of its own in_step_gap table."""
    prof = _profile_with_gaps(tmp_path, [0.5, 2.0, 0.9])
    assert profile_in_step_gap_s(prof) == pytest.approx(0.9e-6)
    cm = CostModel(cluster=get_cluster("h200-node"), profile=prof)
    op = gemm("g", 64, 4096, 4096, dtype="bf16", layer="x", count=1)
    assert cm.compute_seconds(op)[0] - _t("h200-node", 0.0) == pytest.approx(0.9e-6, rel=1e-6)


def test_the_metadata_entry_takes_precedence_and_bounds_hold(tmp_path):
    assert profile_in_step_gap_s(_profile_with_gaps(tmp_path / "a", [0.5, 0.9], stated=0.3e-6)) == pytest.approx(0.3e-6)
    assert profile_in_step_gap_s(_profile_with_gaps(tmp_path / "b", [-3.0, -1.0, 2.0])) == 0.0  # a negative median


def test_the_direct_measurement_improves_ground_truth_it_never_saw():
    """The shipped H200 profile's in_step_gap table (the suite on the device, 2026-12-02): its median
    gap, applied to every ground-truth row (none was fitted to it), lowers the median and p90 error
    against no gap; it lies near the gap fitted on the fit rows (0.81 us)."""
    import csv

    from calibration.bench.in_step_gap import gap_from_rows
    from clustersim.checks.core import measured_dir
    from clustersim.checks.measured import SUBSETS
    from clustersim.validation import fit_in_step_gap

    prof = load_profile("h200")
    with open(prof.path / "in_step_gap.csv", newline="") as f:
        direct = gap_from_rows(list(csv.DictReader(f)))
    fitted, df = fit_in_step_gap(measured_dir(), prof, SUBSETS)
    assert 0.3e-6 < direct < 3e-6 and 0.5 < direct / fitted < 2.0
    at = (df.error_nogap + (df.error - df.error_nogap) * (direct / fitted)).abs()
    none = df.error_nogap.abs()
    assert at.median() < 0.85 * none.median() and at.quantile(0.9) < 0.85 * none.quantile(0.9)


def test_a_layered_profile_states_its_primarys_gap_else_the_fallbacks(tmp_path):
    """A partial profile over the shipped one: its own table's gap when it has one, else the shipped
    profile's, for every op (the gap belongs to the whole step, not to the table an op is read from)."""
    from calibration.resolve import LayeredProfile

    h200 = load_profile("h200")
    own = LayeredProfile(_profile_with_gaps(tmp_path / "a", [2.0]), h200)
    assert profile_in_step_gap_s(own) == pytest.approx(2e-6)
    bare = _profile_with_gaps(tmp_path / "b", [])
    (bare.path / "in_step_gap.csv").unlink()
    none = LayeredProfile(load_profile(bare.path), h200)
    assert profile_in_step_gap_s(none) == profile_in_step_gap_s(h200) > 0
    cm = CostModel(cluster=get_cluster("h200-node"), profile=none)
    op = gemm("g", 64, 4096, 4096, dtype="bf16", layer="x", count=1)
    assert cm.compute_seconds(op)[0] == pytest.approx(_t("h200-node", None), rel=1e-12)
