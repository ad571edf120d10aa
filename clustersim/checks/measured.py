"""Checks against our own GPU ground truth (``clustersim/data/measured``): every point of every
family, predicted by ``clustersim.validation`` with the shipped H200 profile, fit or holdout.

The main set (the first run's tables, the points the cost model was tuned against: ``fit``) is
compared with the per-point median over its runs; the later sets (``wide/``, ``chunk/``: chunked
prefill after cached context, ``fp8moe/``: FP8 MoE layers, ``fp8dense/``: an FP8 dense model, ``denseoos/``: dense models and TP ranks off the tables, ``moeoos/``: DeepSeek-V2's MoE layer, ``mlaoos/``: DeepSeek-V2 and V3 cut to 4 layers) with their one run, each row's own ``split``. Tolerance and known gaps: ``accuracy_targets.yaml`` beside the data.
"""

from __future__ import annotations

import json
from functools import lru_cache

import pandas as pd

from clustersim.checks.core import Check, Tolerance, load_yaml, measured_dir

__all__ = ["measured_checks", "measured_predictions", "accuracy_targets", "SUBSETS"]

#: ground-truth sets measured after the first run, each in its own folder of ``measured/``
SUBSETS = ("wide", "chunk", "fp8moe", "fp8dense", "denseoos", "moeoos", "mlaoos")


def accuracy_targets() -> dict:
    return load_yaml(str(measured_dir() / "accuracy_targets.yaml"))


@lru_cache(maxsize=1)
def measured_predictions() -> pd.DataFrame:
    """One row per ground-truth point: set, family, split, case, point, measured_s (median over
    runs for the main set), predicted_s, runs, error."""
    from calibration.profile import load_profile
    from clustersim.validation import all_measured_predictions

    return all_measured_predictions(measured_dir(), load_profile("h200"), SUBSETS)


def _source(set_name: str) -> str:
    sub = "" if set_name == "main" else set_name
    path = measured_dir() / sub / "groundtruth_metadata.json"
    meta = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    runs = "median of the runs in measured/ and repeat*/" if set_name == "main" else "one run"
    return (f"our ground truth: {meta.get('gpu_name', '?')}, torch {meta.get('torch', '?')}, "
            f"{meta.get('date_utc', '?')[:10]} (clustersim/data/measured/{sub + '/' if sub else ''}; {runs})")


def measured_checks() -> list[Check]:
    """One check per measured point, in milliseconds."""
    targets = accuracy_targets()
    tol = Tolerance.parse(targets["tolerance"])
    gaps = targets.get("known_gaps") or {}
    sources = {s: _source(s) for s in ("main",) + SUBSETS if (s == "main" or (measured_dir() / s).is_dir())}
    out = []
    for r in measured_predictions().itertuples(index=False):
        out.append(Check(
            family=f"measured.{r.family}", id=f"{r.set}/{r.case}/{r.point}", source=sources[r.set],
            setting=f"{r.case}, {r.point}, one H200, compute only (no collectives), eager kernels",
            quantity="step time", unit="ms", published=float(r.measured_s) * 1e3, predicted=float(r.predicted_s) * 1e3,
            tolerance=tol, role=str(r.split), source_status="measured",
            known_gap=" ".join(str(gaps.get(r.family, "")).split()), extra={"runs": int(r.runs)}))
    return out
