"""Composed predictions against our own H200 ground truth (tests/data/measured).

The issue's target is a median error <= 5% and worst <= 15%. The ground truth was measured on
four machines (``measured/``, ``repeat/``, ``repeat2/``, ``repeat3/``; dense points differ by up
to 5.6% between them). Against the per-point median of the runs: median 4.3%, worst 7.3%; against
the first run alone: median 4.1%, worst 8.9% (2026-12-01, after the issue-14 mechanisms: touched
experts and the routed tile spill, torch's serial key walk at misaligned decode keys; the ground
truth is plain torch, so the eager kernel set predicts it). These bounds pin that with a little room, so a regression fails. The
per-point errors print with ``pytest -s``. The profile holds per-operator microbenchmarks only,
never these steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from calibration.profile import load_profile
from clustersim.validation import predict_measured, predict_measured_runs

MEASURED = Path(__file__).parent / "data" / "measured"


@pytest.fixture(scope="module")
def errors():
    df = predict_measured(MEASURED, load_profile("h200"))
    for r in df.itertuples():
        print(f"{r.case:32s} {r.point:14s} measured {r.measured_s * 1e3:8.3f} ms  predicted "
              f"{r.predicted_s * 1e3:8.3f} ms  {r.error:+.1%}")
    return df


def test_profile_excludes_the_composed_measurements():
    prof = load_profile("h200")
    assert not any(name.startswith("gt_") for name in prof.tables)


def test_every_ground_truth_point_is_predicted(errors):
    assert len(errors) == 25 and errors.predicted_s.gt(0).all()


def test_median_and_worst_error(errors):
    e = errors.error.abs()
    assert e.median() <= 0.055
    assert e.max() <= 0.12


def test_median_of_runs_meets_the_target():
    df = predict_measured_runs(MEASURED, load_profile("h200"))
    for r in df.itertuples():
        print(f"{r.case:32s} {r.point:14s} runs {r.runs}  median measured {r.measured_median_s * 1e3:8.3f} ms  "
              f"predicted {r.predicted_s * 1e3:8.3f} ms  {r.error:+.1%}")
    e = df.error.abs()
    assert (df.runs >= 2).all()
    assert e.median() <= 0.05
    assert e.max() <= 0.12


def test_fused_kernel_set_misses_the_eager_glue():
    """The same steps costed with serving-engine kernels are faster: the eager glue (separate
    residual adds, unfused norms, top-k, bf16 index_add_) is what the ground truth runs."""
    fused = predict_measured(MEASURED, load_profile("h200"), kernels="fused")
    eager = predict_measured(MEASURED, load_profile("h200"), kernels="eager")
    assert (fused.predicted_s < eager.predicted_s).all()
    assert fused.error.abs().median() > 2 * eager.error.abs().median()


@pytest.mark.parametrize("family,bound", [("prefill", 0.10), ("decode", 0.10), ("moe layer", 0.12)])
def test_error_by_family(errors, family, bound):
    sub = errors[errors.case.str.endswith(family)]
    assert len(sub) and sub.error.abs().max() <= bound
