"""Prediction error against our own GPU ground truth (``tests/data/measured``).

Each measured row (a whole-model step, or one EP rank's MoE layer, on one H200) is predicted
with the same operator lists and cost model that ``clustersim estimate`` uses, compute only:
the ground truth ran on one GPU, so the TP all-reduces and EP all-to-alls it left out are
left out here too. The profile used must not contain these composed measurements (it holds
per-operator microbenchmarks only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hardware.catalog import get_cluster
from simulator.costmodel import CostModel
from workloads.models import get_model
from workloads.ops import BatchShape, Parallelism, moe_layer_ops, step_ops

def _compute_seconds(cm: CostModel, ops: list) -> float:
    return sum(c.total_s for c in (cm.op_cost(o) for o in ops) if c.stream != "comm")


def predict_measured(measured_dir: str | Path, profile: Any, cluster: str = "h200-node",
                     kernels: str = "eager") -> pd.DataFrame:
    """One row per ground-truth point: measured and predicted seconds and the relative error.

    ``kernels="eager"``: the ground truth is written in plain torch ops (``calibration.groundtruth``),
    so its glue kernels are the eager set."""
    d = Path(measured_dir)
    cm = CostModel(cluster=get_cluster(cluster), profile=profile)
    rows = []
    for phase in ("prefill", "decode"):
        path = d / f"gt_dense_{phase}.csv"
        if not path.exists():
            continue
        for r in pd.read_csv(path).itertuples():
            m = get_model(r.model)
            if phase == "prefill":
                shape = BatchShape.prefill(int(r.batch), int(r.seq))
                point = f"B={r.batch} S={r.seq}"
            else:
                shape = BatchShape.decode(int(r.batch), int(r.context))
                point = f"B={r.batch} C={r.context}"
            ops = step_ops(m, shape, Parallelism(tp=int(r.tp)), kernels=kernels)
            rows.append({"case": f"{r.model} tp{r.tp} {phase}", "point": point, "measured_s": float(r.seconds),
                         "predicted_s": _compute_seconds(cm, ops)})
    path = d / "gt_moe_layer.csv"
    if path.exists():
        for r in pd.read_csv(path).itertuples():
            m = get_model(r.model)
            ep = int(r.ep)
            ops = moe_layer_ops(step_ops(m, BatchShape.prefill(ep, int(r.tokens_per_rank)),
                                         Parallelism(ep=ep, attn_dp=ep, moe_tp=1), kernels=kernels))
            rows.append({"case": f"{r.model} ep{ep} moe layer", "point": f"T={r.tokens_per_rank}",
                         "measured_s": float(r.seconds), "predicted_s": _compute_seconds(cm, ops)})
    df = pd.DataFrame(rows)
    if not df.empty:
        df["error"] = df.predicted_s / df.measured_s - 1.0
    return df


def ground_truth_runs(measured_dir: str | Path) -> list[Path]:
    """The main ground-truth run and every repeat run (subdirectories holding ``gt_*.csv``)."""
    d = Path(measured_dir)
    return [d] + sorted(p for p in d.iterdir() if p.is_dir() and any(p.glob("gt_*.csv")))


def predict_measured_runs(measured_dir: str | Path, profile: Any, cluster: str = "h200-node",
                          kernels: str = "eager") -> pd.DataFrame:
    """Predictions against every ground-truth run and against the per-point median of the runs.

    Columns: case, point, predicted_s, one ``measured_s@<run>`` per run, ``measured_median_s``
    (median over the runs that measured that point with the same implementation as the main
    run) and ``error`` (prediction vs that median). A repeat whose MoE layer ran another
    implementation (no ``impl`` column: the per-expert loop) does not count for MoE points.
    """
    runs = ground_truth_runs(measured_dir)
    out, cols = None, []
    for r in runs:
        df = predict_measured(r, profile, cluster, kernels)
        if out is None:  # the main run: its points and predictions are the rows
            out = df[["case", "point", "predicted_s"]].copy()
        moe = r / "gt_moe_layer.csv"
        if moe.exists() and "impl" not in pd.read_csv(moe, nrows=1).columns:
            df = df[~df.case.str.endswith("moe layer")]
        name = "main" if r == runs[0] else r.name
        cols.append(f"measured_s@{name}")
        out = out.merge(df[["case", "point", "measured_s"]].rename(columns={"measured_s": cols[-1]}),
                        on=["case", "point"], how="left")
    out["measured_median_s"] = out[cols].median(axis=1, skipna=True)
    out["runs"] = out[cols].notna().sum(axis=1)
    out["error"] = out.predicted_s / out.measured_median_s - 1.0
    return out

