"""Ranking of the layout table: Pareto layers, then cost; verified layouts first.

``rank_table`` orders the analytic table: feasible before infeasible, layouts serving the
target load first, then by Pareto layer (``result.pareto_layers`` on the objective, tokens/s
per device or per $1000, against tokens/s per user), then the objective, tokens/s per user,
hardware cost, devices, TTFT and point id. A layout dominated on both axes therefore never ranks
above the one dominating it, and exact ties go to the cheaper layout.

``candidates`` picks the rows to verify (the first distinct analytic estimates), and
``apply_verification`` merges the simulator's answers and re-ranks: layouts the simulator
verified first, by the verified figure (the capacity it sustained), then the unverified ones
as the analytic model ranks them, then those whose verification failed, then the infeasible.
``why_nothing_fits`` names the closest layout and the rule it breaks.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from planner.result import SUMMARY_COLUMNS, pareto_layers

if TYPE_CHECKING:  # pandas is imported where it is used (``planner.search``: after the plan forks its workers)
    import pandas as pd

__all__ = ["rank_table", "rank_positions", "ranked", "RANK_COLUMNS", "candidates", "apply_verification",
           "why_nothing_fits", "VERIFIED_COLUMNS"]

#: columns ``apply_verification`` adds (with ``sim_capacity_rps`` and ``sim_tokens_per_s_per_device``
#: of ``SUMMARY_COLUMNS``)
VERIFIED_COLUMNS = ("analytic_rank", "verified", "verify_reason", "capacity_gap", "sim_tokens_per_s_per_kusd")


def _order(df: pd.DataFrame, group: np.ndarray, x: str, y: str = "tokens_per_s_per_user") -> pd.DataFrame:
    """Rows sorted by ``group`` then (within it) Pareto layer of (x, y), x, y, shortfall (the
    infeasible: closest first), cost, devices, TTFT, id."""
    return df.iloc[_positions(df, group, x, y)].reset_index(drop=True)


def _positions(df: pd.DataFrame, group: np.ndarray, x: str, y: str = "tokens_per_s_per_user") -> np.ndarray:
    """The row positions of ``_order``."""
    xs = df[x].to_numpy(dtype=float)
    ys = df[y].to_numpy(dtype=float) if y in df else np.zeros(len(df))
    layer = np.full(len(df), np.iinfo(np.int64).max)
    ok = np.isfinite(xs) & np.isfinite(ys)
    for g in np.unique(group):
        sel = np.flatnonzero((group == g) & ok)
        if sel.size:
            layer[sel] = pareto_layers(xs[sel], ys[sel])
    usd = df["hardware_usd"].to_numpy(dtype=float) if "hardware_usd" in df else np.zeros(len(df))
    ttft = df["ttft_ms"].to_numpy(dtype=float) if "ttft_ms" in df else np.zeros(len(df))
    short = df["shortfall"].to_numpy(dtype=float) if "shortfall" in df else np.zeros(len(df))
    keys = (df["id"].to_numpy(), np.nan_to_num(ttft, nan=np.inf), df["devices"].to_numpy(),
            np.nan_to_num(usd, nan=np.inf), np.nan_to_num(short, nan=0.0, posinf=np.inf),
            -np.nan_to_num(ys, nan=-np.inf), -np.nan_to_num(xs, nan=-np.inf), layer, group)
    return np.lexsort(keys)


def _lead(df: pd.DataFrame) -> pd.DataFrame:
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    lead = [c for c in SUMMARY_COLUMNS if c in df] + [c for c in ("id", "mode", "feasible", "meets_load", "reason")
                                                     if c in df]
    return df[lead + [c for c in df.columns if c not in lead]]


def rank_table(df: pd.DataFrame, objective: str) -> pd.DataFrame:
    """The analytic ranking (module docstring); adds ``rank`` and puts ``SUMMARY_COLUMNS`` first."""
    if df.empty:
        return df
    return ranked(df.iloc[rank_positions(df, objective)].reset_index(drop=True), objective)


#: the columns the analytic ranking reads (``rank_positions``)
RANK_COLUMNS = ("mode", "devices", "feasible", "meets_load", "capacity_rps", "tokens_per_s_per_device",
                "tokens_per_s_per_user", "tokens_per_s_per_kusd", "ttft_ms", "tpot_ms", "hardware_usd", "shortfall",
                "id")


def rank_positions(df: pd.DataFrame, objective: str) -> np.ndarray:
    """The analytic ranking's row order (positions): what ``rank_table`` sorts by, read from
    ``RANK_COLUMNS`` only (a frame of those columns ranks like the whole table)."""
    for col in ("capacity_rps", objective, "tokens_per_s_per_device", "tokens_per_s_per_user"):
        if col not in df:
            df[col] = np.nan
    group = np.where(df["feasible"].to_numpy(dtype=bool), np.where(df["meets_load"].to_numpy(dtype=bool), 0, 1), 2)
    return _positions(df, group, objective)


def ranked(df: pd.DataFrame, objective: str) -> pd.DataFrame:
    """A table already in ``rank_positions`` order with ``rank`` added and ``SUMMARY_COLUMNS``
    first (the columns the ranking adds when missing, NaN)."""
    for col in ("capacity_rps", objective, "tokens_per_s_per_device", "tokens_per_s_per_user"):
        if col not in df:
            df[col] = np.nan
    return _lead(df)


def _estimate_key(row: dict) -> tuple:
    """Mode, devices, and capacity and tokens/s per user to 0.1%: rows that share it make the
    same claim, so verifying one of them says as much as verifying all."""
    def r(v) -> float | None:
        v = float(v)
        return float(f"{v:.3g}") if math.isfinite(v) else None

    return (row["mode"], int(row["devices"]), r(row["capacity_rps"]), r(row["tokens_per_s_per_user"]))


def candidates(table: pd.DataFrame, k: int, skip: set) -> list[dict]:
    """The first ``k`` feasible rows not in ``skip`` that make distinct claims (``_estimate_key``;
    the first row of a tie, which the ranking has put first for the lowest TTFT, stands for it)."""
    seen: set = set()
    out: list[dict] = []
    if not k or not len(table):
        return out
    feas = table["feasible"].to_numpy(dtype=bool).nonzero()[0]
    rows = (row for start in range(0, len(feas), 256)  # records a block at a time: the table can be 10^5 rows
            for row in table.iloc[feas[start:start + 256]].to_dict(orient="records"))
    for row in rows:
        key = _estimate_key(row)
        if row["id"] in skip or key in seen:
            seen.add(key)
            continue
        seen.add(key)
        out.append(row)
        if len(out) == k:
            break
    return out


def apply_verification(table: pd.DataFrame, ver: pd.DataFrame, objective: str, target_rps: float,
                       output_tokens: float) -> pd.DataFrame:
    """Merge verification rows (``planner.verify.verify_task``) into the table and re-rank."""
    df = table.drop(columns=["rank"])  # copy-on-write: the columns set below are copied, the rest shared
    df["analytic_rank"] = table["rank"].to_numpy()
    df["verified"] = np.where(df["feasible"].to_numpy(dtype=bool), "not run", "infeasible")
    df["verify_reason"] = ""
    for col in ("sim_capacity_rps", "sim_tokens_per_s_per_device", "sim_tokens_per_s_per_kusd", "capacity_gap"):
        df[col] = np.nan
    if len(ver):
        import pandas as pd

        pos = pd.Series(np.arange(len(df)), index=df["id"].to_numpy())
        for v in ver.to_dict(orient="records"):
            i = int(pos[v["id"]])
            df.iat[i, df.columns.get_loc("verified")] = "yes" if v.get("ok") else "failed"
            df.iat[i, df.columns.get_loc("verify_reason")] = v.get("reason") or ""
            cap = v.get("sim_capacity_rps")
            if v.get("ok") and cap is not None and cap == cap:
                tps = cap * output_tokens
                dev, usd = df.iat[i, df.columns.get_loc("devices")], df["hardware_usd"].iat[i] if "hardware_usd" in df else math.nan
                df.iat[i, df.columns.get_loc("sim_capacity_rps")] = cap
                df.iat[i, df.columns.get_loc("sim_tokens_per_s_per_device")] = tps / dev
                df.iat[i, df.columns.get_loc("sim_tokens_per_s_per_kusd")] = tps / usd * 1e3 if usd else math.nan
                df.iat[i, df.columns.get_loc("capacity_gap")] = v.get("capacity_gap")
    verified = (df["verified"] == "yes").to_numpy()
    serves = (df["sim_capacity_rps"].to_numpy(dtype=float) >= target_rps * (1 - 1e-9))
    meets = df["meets_load"].to_numpy(dtype=bool)
    feasible = df["feasible"].to_numpy(dtype=bool)
    failed = (df["verified"] == "failed").to_numpy()
    group = np.select([verified & serves, verified, feasible & ~failed & meets, feasible & ~failed, failed],
                      [0, 1, 2, 3, 4], 5)
    sim_x = "sim_tokens_per_s_per_kusd" if objective == "tokens_per_s_per_kusd" else "sim_tokens_per_s_per_device"
    df["_x"] = np.where(verified, df[sim_x].to_numpy(dtype=float), df[objective].to_numpy(dtype=float))
    out = _order(df, group, "_x").drop(columns="_x")
    return _lead(out)


def why_nothing_fits(table: pd.DataFrame, budget: int) -> str:
    """One line: the closest infeasible layout (smallest shortfall) and the rule it breaks."""
    if table.empty:
        return "the search space is empty (no layout to evaluate): widen search.* or the device budget"
    short = table["shortfall"].to_numpy(dtype=float) if "shortfall" in table else np.full(len(table), np.nan)
    finite = np.where(np.isfinite(short), short, np.inf)
    i = int(np.argmin(finite))  # the table puts the closest first; argmin keeps that on ties
    row = table.iloc[i]
    how = f" ({finite[i]:.2f}x over the limit)" if np.isfinite(finite[i]) else ""
    return (f"no layout fits within {budget} devices and the SLOs; the closest is {row['layout']} "
            f"({int(row['devices'])} devices): {row['reason']}{how}")
