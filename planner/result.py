"""``PlanResult``: the ranked table, the Pareto front, the best deployment and its verification.

Data only: the facade decides what to print or write. ``SUMMARY_COLUMNS`` are the columns a
reader sees first: the CLI table shows them, and ``PlanResult.table`` (hence ``ranked.csv``
and ``--json``) starts with them. ``deployment_to_yaml(dep)`` renders a
``workloads.deployment.Deployment`` as YAML that ``load_deployment`` reads back to an equal
object (``clustersim simulate`` runs it as it is). ``pareto_layers`` is the non-dominated
sorting the ranking uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # imported where it is used (``planner.search``: after the plan forks its workers)
    import pandas as pd

__all__ = ["PlanResult", "deployment_to_yaml", "pareto_front", "pareto_layers", "SUMMARY_COLUMNS", "STATUS_EXIT_CODES"]

#: the columns every view of a plan shows first (CLI table, ranked.csv, --json), in order:
#: the layout, its latencies and throughputs (analytic, at capacity), and what the simulator
#: said (``verified``: yes / failed / not run; the capacity it sustained and the tokens/s per
#: device that gives)
SUMMARY_COLUMNS = ("rank", "layout", "devices", "ttft_ms", "tpot_ms", "tokens_per_s_per_device",
                   "tokens_per_s_per_user", "capacity_rps", "verified", "sim_capacity_rps",
                   "sim_tokens_per_s_per_device")

#: ``PlanResult.status`` -> the CLI's exit code: 0 a verified layout was found (or verification
#: was switched off), 3 no layout is feasible, 4 feasible layouts exist but none verified
STATUS_EXIT_CODES = {"ok": 0, "unverified": 0, "no_feasible": 3, "none_verified": 4}


def deployment_to_yaml(dep, header: str = "") -> str:
    """YAML text of a Deployment (defaults left out); ``header`` lines become comments on top."""
    import yaml

    data = dep.model_dump(mode="json", exclude_defaults=True)
    # discriminators and required fields survive exclude_defaults; keep name/seed explicit
    data = {"name": dep.name, **{k: v for k, v in data.items() if k not in ("name", "seed")}, "seed": dep.seed}
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text
    return text


def pareto_front(table: pd.DataFrame, x: str = "tokens_per_s_per_device", y: str = "tokens_per_s_per_user") -> pd.DataFrame:
    """Rows of ``table`` (feasible ones) not dominated in (x, y), sorted by x descending."""
    if table.empty or x not in table or y not in table:
        return table.iloc[0:0]
    xs, ys = table[x].to_numpy(dtype=float), table[y].to_numpy(dtype=float)
    ok = np.flatnonzero(table["feasible"].to_numpy(dtype=bool) & ~np.isnan(xs) & ~np.isnan(ys))
    # x descending, then y descending, then id (positions, not a copy of the feasible rows)
    ok = ok[np.lexsort((table["id"].to_numpy()[ok], -ys[ok], -xs[ok]))]
    keep, best_y = [], -math.inf
    for i, yv in zip(ok.tolist(), ys[ok].tolist()):
        if yv > best_y + 1e-9 * abs(yv):
            keep.append(i)
            best_y = yv
    return table.iloc[keep].reset_index(drop=True)


def pareto_layers(x, y) -> np.ndarray:
    """Non-dominated sorting rank of points (maximising both ``x`` and ``y``): 1 for the
    Pareto front, 2 for the front of the rest, ... Equal points share a layer; a point that is
    dominated (no worse on both, better on one) is always in a later layer than the point
    dominating it. O(n log n): points by ``x`` descending, each put in the first layer whose
    best ``y`` so far is below its own."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    order = np.lexsort((-y, -x))
    layer = np.zeros(x.size, dtype=np.int64)
    tops: list[float] = []  # best y per layer, non-increasing
    prev, prev_layer = None, 0
    for i in order:
        key = (x[i], y[i])
        if key == prev:
            layer[i] = prev_layer
            continue
        lo, hi = 0, len(tops)
        while lo < hi:  # first layer whose best y is below this point's
            mid = (lo + hi) // 2
            if tops[mid] < y[i]:
                hi = mid
            else:
                lo = mid + 1
        if lo == len(tops):
            tops.append(y[i])
        else:
            tops[lo] = y[i]
        layer[i] = prev_layer = lo + 1
        prev = key
    return layer


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _jsonable(v.item())
    return v


@dataclass(frozen=True)
class PlanResult:
    """What ``planner.plan`` returns.

    ``table``: one row per evaluated layout (or per rejected pool choice), ranked (``rank`` 1 is
    the best); layout fields, analytic metrics, ``feasible``, ``meets_load``, ``reason``.
    ``pareto``: feasible rows not dominated in tokens/s per device vs tokens/s per user.
    ``best``: the best layout as a Deployment (None when nothing is feasible).
    ``verification``: simulator runs of the top candidates against their analytic estimates.
    ``stats``: counts and wall times; ``notes``: caveats the user should read.
    ``status``: ``ok`` (``best`` is a layout the simulator verified), ``no_feasible`` (no
    layout fits: ``explanation`` names the closest and the rule it breaks), ``none_verified``
    (``explanation`` lists the failed checks) or ``unverified`` (verification switched off:
    no best is named); ``STATUS_EXIT_CODES`` maps it to the CLI's exit code.
    """

    plan: Any
    table: pd.DataFrame
    pareto: pd.DataFrame
    best: Any
    verification: pd.DataFrame
    stats: dict
    notes: tuple[str, ...] = field(default=())
    deployments: dict = field(default_factory=dict)  # point id -> Deployment of the verified candidates
    layouts: dict = field(default_factory=dict)  # point id -> planner.space.ServingLayout of the same
    status: str = "ok"
    explanation: str = ""

    @property
    def exit_code(self) -> int:
        return STATUS_EXIT_CODES.get(self.status, 1)

    def summary(self, n: int = 10) -> pd.DataFrame:
        """The first ``n`` feasible rows and every layout whose verification failed (they rank
        below the unverified ones), ``SUMMARY_COLUMNS`` only; when none is feasible, the ``n``
        closest layouts with the rule each breaks (``reason``)."""
        t = self.table
        if len(t) and t["feasible"].any():
            rows = t.iloc[t["feasible"].to_numpy(dtype=bool).nonzero()[0][:n]]
            if "verified" in t:
                import pandas as pd

                rows = pd.concat([rows, t[(t["verified"] == "failed") & ~t["id"].isin(rows["id"])]])
            return rows[[c for c in SUMMARY_COLUMNS if c in t.columns]]
        return t.head(n)[[c for c in ("rank", "layout", "devices", "reason") if c in t.columns]]

    def best_yaml(self) -> str | None:
        """The best deployment as YAML (with the caveats as a comment header)."""
        if self.best is None:
            return None
        head = f"best layout of plan {self.plan.name} (clustersim plan)"
        if self.notes:
            head += "\n" + "\n".join(self.notes)
        return deployment_to_yaml(self.best, head)

    def top(self, n: int = 10, feasible_only: bool = True) -> pd.DataFrame:
        t = self.table
        return t.iloc[t["feasible"].to_numpy(dtype=bool).nonzero()[0][:n]] if feasible_only else t.head(n)

    def to_dict(self, rows: int = 50) -> dict:
        """JSON-ready summary (``--json``): stats, the top rows, the Pareto front, verification."""
        def records(df: pd.DataFrame) -> list[dict]:
            return [{k: _jsonable(v) for k, v in r.items() if not (isinstance(v, float) and math.isnan(v))}
                    for r in df.to_dict(orient="records")]

        return {
            "plan": self.plan.name,
            "status": self.status,
            "explanation": self.explanation,
            "stats": {k: _jsonable(v) for k, v in self.stats.items()},
            "notes": list(self.notes),
            "best": self.best.model_dump(mode="json") if self.best is not None else None,
            "ranked": records(self.table.head(rows)),
            "pareto": records(self.pareto),
            "verification": records(self.verification),
        }
