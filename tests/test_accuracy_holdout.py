"""Hold-out accuracy on the widened H200 ground truth (tests/data/measured/wide, issue 14).

Every wide row carries ``split`` (fit | holdout), fixed before measuring (a checkerboard over each
grid, calibration/groundtruth/cases.py). Nothing in the cost model is fitted to a ground-truth
step: the profile holds microbenchmarks only (its fitted parameters - the serial key walk of
``attn_decode_long``, the kernel's key tile - come from microbenchmark tables), and the modelling
choices of issue 14 were checked on fit-split points (and the first run's tables, all "fit") only.
The hold-out half is reported here, apart.

Target of issue 14 for the hold-out half (compute families; collectives are the communication
half's): median <= 5%, p90 <= 12%, worst <= 25% over at least 80 points, including MoE layers at
1-64 tokens, MLA decode over batch x context and batch-1 long context. Measured with the shipped
profile (2026-12-01): median 2.9%, p90 9.5%, worst 14.5% over 100 hold-out points (MoE rows at
their recorded routing draw; at the uniform-routing expectation 3.0% / 9.4% / 17.0%). The per-family
bounds below pin those numbers with some room, so a regression fails; ``pytest -s`` prints them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from calibration.profile import load_profile
from clustersim.validation import error_summary, predict_measured

WIDE = Path(__file__).parent / "data" / "measured" / "wide"

#: family -> (median, worst) bound of |error| on its hold-out half (measured 2026-12-01 in brackets)
HOLDOUT_BOUNDS = {
    "dense decode long": (0.04, 0.08),  # 2.0%, 4.6%: torch's serial key walk at misaligned keys
    "mla decode": (0.04, 0.14),  # 2.3%, 10.5%: SDPA MLA per implementation + touched experts + glue
    "mla prefill": (0.08, 0.10),  # 5.4%, 6.6%: still ~6% fast (see simulator/README.md)
    "moe small": (0.09, 0.18),  # 6.3%, 14.5%: small layers ~10% fast (per-kernel gaps not modelled)
}


@pytest.fixture(scope="module")
def wide() -> pd.DataFrame:
    df = predict_measured(WIDE, load_profile("h200"))
    print("\n" + error_summary(df).to_string())
    return df


def test_split_is_in_the_data_and_disjoint():
    for f in sorted(WIDE.glob("gt_*.csv")):
        d = pd.read_csv(f)
        assert set(d.split) == {"fit", "holdout"}, f.name
        key = [c for c in ("model", "ep", "layers", "tp", "batch", "context", "seq", "tokens_per_rank") if c in d]
        assert not d.duplicated(key).any(), f.name  # no point is in both halves


def test_every_family_has_both_halves(wide):
    for fam in HOLDOUT_BOUNDS:
        sub = wide[wide.family == fam]
        assert {"fit", "holdout"} == set(sub.split), fam


@pytest.mark.parametrize("family", sorted(HOLDOUT_BOUNDS))
def test_holdout_error_by_family(wide, family):
    median, worst = HOLDOUT_BOUNDS[family]
    e = wide[(wide.family == family) & (wide.split == "holdout")].error.abs()
    assert len(e) >= 6
    assert e.median() <= median and e.max() <= worst


def test_holdout_meets_the_issue_target(wide):
    e = wide[wide.split == "holdout"].error.abs()
    assert len(e) >= 80
    assert e.median() <= 0.05 and e.quantile(0.9) <= 0.12 and e.max() <= 0.25


def test_holdout_meets_the_target_at_the_routing_expectation():
    """The same with MoE layers costed as an estimate costs them (expected touched experts, not
    the draw the step recorded)."""
    e = predict_measured(WIDE, load_profile("h200"), recorded_routing=False).query("split == 'holdout'").error.abs()
    assert len(e) >= 80 and e.median() <= 0.05 and e.quantile(0.9) <= 0.12 and e.max() <= 0.25


def test_fit_half_is_no_better_by_construction(wide):
    """Nothing is tuned to the fit half either: both halves err alike (a fitted half would read ~0)."""
    fit, hold = (wide[wide.split == s].error.abs().median() for s in ("fit", "holdout"))
    assert fit > 0.01 and abs(fit - hold) < 0.02
