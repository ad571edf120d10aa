"""Prediction error against our own GPU ground truth (``tests/data/measured``, ``calibrate --check``).

Each measured row (a whole-model step, or one EP rank's MoE layer, on one GPU) is predicted with
the same operator lists and cost model that ``clustersim estimate`` uses, compute only: the
ground truth ran on one GPU, so the TP all-reduces and EP all-to-alls it left out are left out
here too (``calibration.groundtruth.workload`` maps a row to its operators). The profile used
must not contain these composed measurements (it holds per-operator microbenchmarks only).

Every prediction row carries the row's ``family`` (dense prefill, dense decode, moe layer,
dense decode long, moe small, mla decode, mla prefill) and ``split``: the wide tables say
``fit`` or ``holdout`` per row; rows of the first run's tables, which the cost model was tuned
against, count as ``fit``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from calibration.groundtruth.workload import FAMILIES, MAIN_TABLES, row_ops
from hardware.catalog import get_cluster, list_clusters
from simulator.costmodel import CostModel, profile_device

DEFAULT_CLUSTER = "h200-node"


def ops_compute_seconds(cm: CostModel, ops) -> float:
    """Compute time of ``ops``; collectives (left out of one-GPU ground truth) are not costed,
    so an EP group larger than the cluster (an EP-32 rank measured on one GPU) still predicts."""
    return sum(cm.op_cost(o).total_s for o in ops if o.stream != "comm")


def predict_measured(measured_dir: str | Path, profile: Any, cluster: str = DEFAULT_CLUSTER,
                     kernels: str = "eager", recorded_routing: bool = True,
                     in_step_gap_s: float | None = None) -> pd.DataFrame:
    """One row per ground-truth point of every table in ``measured_dir``: family, split, case,
    point, measured and predicted seconds and the relative error.

    ``kernels="eager"``: the ground truth is written in plain torch ops (``calibration.groundtruth``),
    so its kernels are the eager set. ``recorded_routing``: an MoE layer row is costed at the
    routing draw it recorded (pairs, touched experts), else at the uniform-routing expectation
    (``calibration.groundtruth.workload.row_ops``). ``in_step_gap_s``: the gap per measured
    compute op (None: the profile's, ``simulator.costmodel.profile_in_step_gap_s``)."""
    d = Path(measured_dir)
    cm = CostModel(cluster=get_cluster(cluster), profile=profile, in_step_gap_s=in_step_gap_s)
    rows = []
    for table in FAMILIES:
        path = d / table
        if not path.exists():
            continue
        for r in pd.read_csv(path).to_dict("records"):
            work = row_ops(table, r, kernels, recorded_routing=recorded_routing)
            rows.append({"case": work.case, "point": work.point, "measured_s": float(r["seconds"]),
                         "predicted_s": ops_compute_seconds(cm, work.ops), "family": work.family,
                         "split": str(r.get("split", "fit"))})
    df = pd.DataFrame(rows)
    if not df.empty:
        df["error"] = df.predicted_s / df.measured_s - 1.0
    return df


def ground_truth_runs(measured_dir: str | Path) -> list[Path]:
    """The main ground-truth run and every repeat run (subdirectories holding the first run's
    tables; the widened ground truth in ``wide/`` is a different point set, not a repeat)."""
    d = Path(measured_dir)
    return [d] + sorted(p for p in d.iterdir() if p.is_dir() and any((p / t).exists() for t in MAIN_TABLES))


def predict_measured_runs(measured_dir: str | Path, profile: Any, cluster: str = DEFAULT_CLUSTER,
                          kernels: str = "eager", in_step_gap_s: float | None = None) -> pd.DataFrame:
    """Predictions against every ground-truth run and against the per-point median of the runs.

    Columns: case, point, predicted_s, one ``measured_s@<run>`` per run, ``measured_median_s``
    (median over the runs that measured that point with the same implementation as the main
    run) and ``error`` (prediction vs that median). A repeat whose MoE layer ran another
    implementation (no ``impl`` column: the per-expert loop) does not count for MoE points.
    """
    runs = ground_truth_runs(measured_dir)
    out, cols = None, []
    for r in runs:
        df = predict_measured(r, profile, cluster, kernels, in_step_gap_s=in_step_gap_s)
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


def all_measured_predictions(measured_root: str | Path, profile: Any, subsets: Sequence[str],
                             in_step_gap_s: float | None = None) -> pd.DataFrame:
    """One row per ground-truth point of the main set (measured: the median over its runs) and of
    each subset folder of ``measured_root``: set, family, split, case, point, measured_s,
    predicted_s, runs, error."""
    d = Path(measured_root)
    main = predict_measured(d, profile, in_step_gap_s=in_step_gap_s)
    runs = predict_measured_runs(d, profile, in_step_gap_s=in_step_gap_s)[["case", "point", "measured_median_s", "runs"]]
    main = main.merge(runs, on=["case", "point"], how="left")
    main["measured_s"] = main["measured_median_s"].fillna(main["measured_s"])
    parts = [main.drop(columns=["measured_median_s"]).assign(set="main")]
    for sub in subsets:
        if (d / sub).is_dir():
            parts.append(predict_measured(d / sub, profile, in_step_gap_s=in_step_gap_s).assign(set=sub, runs=1))
    df = pd.concat(parts, ignore_index=True)
    df["error"] = df.predicted_s / df.measured_s - 1.0
    return df


def fit_in_step_gap(measured_root: str | Path, profile: Any, subsets: Sequence[str]) -> tuple[float, pd.DataFrame]:
    """The in-step gap per measured compute op (``simulator.costmodel.profile_in_step_gap_s``) that
    minimises the squared relative error over the ``fit`` rows of our ground truth, and the
    predictions at no gap and at that gap (columns ``error_nogap``, ``error``; ``split`` says which
    rows the fit saw). Each row's prediction is linear in the gap (the gap counts once per measured
    op occurrence), so the least-squares gap is closed-form; it is kept within 0..10 us."""
    unit = 1e-6
    base = all_measured_predictions(measured_root, profile, subsets, in_step_gap_s=0.0)
    per_us = all_measured_predictions(measured_root, profile, subsets, in_step_gap_s=unit)
    a = base.predicted_s / base.measured_s - 1.0
    b = (per_us.predicted_s - base.predicted_s) / base.measured_s
    fit = (base.split == "fit").to_numpy()
    gap_us = float(-(a[fit] * b[fit]).sum() / max(float((b[fit] ** 2).sum()), 1e-30))
    gap_us = min(max(gap_us, 0.0), 10.0)
    out = base.assign(error_nogap=a, error=a + gap_us * b, predicted_s=base.predicted_s + gap_us * b * base.measured_s)
    return gap_us * unit, out


def error_summary(df: pd.DataFrame, by=("family", "split")) -> pd.DataFrame:
    """Points, median, p90 and worst absolute relative error per group of ``by``."""
    rows = []
    for key, g in df.groupby(list(by), sort=True):
        e = g.error.abs()
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "points": len(g),
                     "median": float(e.median()), "p90": float(e.quantile(0.9)), "worst": float(e.max())})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- calibrate --check


def cluster_for_profile(profile: Any) -> str:
    """The smallest catalog cluster built of the device a profile was measured on (its own
    device, so no transfer applies); ``h200-node`` when the device is not in the catalog."""
    dev = profile_device(profile)
    if dev is not None:
        same = [get_cluster(n) for n in list_clusters() if get_cluster(n).device.name == dev.name]
        if same:
            return min(same, key=lambda c: c.num_devices).name
    return DEFAULT_CLUSTER


def predict_check(profile_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """Predict the steps ``calibration.run --check`` measured into ``<profile_dir>/check`` with
    the profile in ``profile_dir`` itself, as ``--profile DIR`` would use it (``calibration.resolve``:
    tables it lacks come from the shipped profile, named in ``profile_info``); returns (table, summary)."""
    from calibration.profile import load_profile
    from calibration.resolve import profile_info, resolve_profile

    d = Path(profile_dir)
    cluster = cluster_for_profile(load_profile(d))
    device = get_cluster(cluster).device.name
    prof = resolve_profile(str(d.resolve()), device)
    df = predict_measured(d / "check", prof, cluster=cluster)
    if df.empty:
        raise ValueError(f"{d / 'check'}: no measured check steps (was the check cut short by --max-seconds?)")
    e = df.error.abs()
    summary = {"profile": str(d), "gpu_name": prof.metadata.get("gpu_name", "?"), "cluster": cluster,
               "kernels": "eager", "points": int(len(df)), "median_abs_error": float(e.median()),
               "worst_abs_error": float(e.max()),
               "note": "predicted from this profile's microbenchmarks; measured with calibration.groundtruth "
                       "(set 'check') on the same device right after them",
               "profile_info": profile_info(prof, device)}
    if cluster == DEFAULT_CLUSTER and profile_device(prof) is None:
        summary["note"] += f"; the profile's device is not in the hardware catalog, costed as {cluster}"
    return df, summary


def format_check(df: pd.DataFrame, summary: dict) -> str:
    lines = [f"self-check: predicted ({summary['cluster']}, profile {summary['profile']}) vs measured "
             f"on {summary['gpu_name']}",
             f"{'case':36s} {'point':14s} {'measured ms':>12s} {'predicted ms':>13s} {'error':>8s}"]
    for r in df.itertuples():
        lines.append(f"{r.case:36s} {r.point:14s} {r.measured_s * 1e3:12.3f} {r.predicted_s * 1e3:13.3f} "
                     f"{r.error:+8.1%}")
    lines.append(f"median |error| {summary['median_abs_error']:.1%}, worst {summary['worst_abs_error']:.1%} "
                 f"over {summary['points']} steps")
    return "\n".join(lines)
