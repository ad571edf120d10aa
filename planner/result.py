"""``PlanResult``: the ranked table, the Pareto front, the best deployment and its verification.

Data only: the facade decides what to print or write. ``deployment_to_yaml(dep)`` renders a
``workloads.deployment.Deployment`` as YAML that ``load_deployment`` reads back to an equal
object (``clustersim simulate`` runs it as it is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["PlanResult", "deployment_to_yaml", "pareto_front"]


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
    ok = table[table["feasible"].astype(bool)].dropna(subset=[x, y])
    if ok.empty:
        return ok
    ok = ok.sort_values([x, y, "id"], ascending=[False, False, True])
    keep, best_y = [], -math.inf
    for idx, yv in zip(ok.index, ok[y].to_numpy()):
        if yv > best_y + 1e-9 * abs(yv):
            keep.append(idx)
            best_y = yv
    return ok.loc[keep].reset_index(drop=True)


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
    """

    plan: Any
    table: pd.DataFrame
    pareto: pd.DataFrame
    best: Any
    verification: pd.DataFrame
    stats: dict
    notes: tuple[str, ...] = field(default=())
    deployments: dict = field(default_factory=dict)  # point id -> Deployment of the verified candidates
    layouts: dict = field(default_factory=dict)  # point id -> planner.space.Layout of the same

    def best_yaml(self) -> str | None:
        """The best deployment as YAML (with the caveats as a comment header)."""
        if self.best is None:
            return None
        head = f"best layout of plan {self.plan.name} (clustersim plan)"
        if self.notes:
            head += "\n" + "\n".join(self.notes)
        return deployment_to_yaml(self.best, head)

    def top(self, n: int = 10, feasible_only: bool = True) -> pd.DataFrame:
        t = self.table[self.table["feasible"]] if feasible_only else self.table
        return t.head(n)

    def to_dict(self, rows: int = 50) -> dict:
        """JSON-ready summary (``--json``): stats, the top rows, the Pareto front, verification."""
        def records(df: pd.DataFrame) -> list[dict]:
            return [{k: _jsonable(v) for k, v in r.items() if not (isinstance(v, float) and math.isnan(v))}
                    for r in df.to_dict(orient="records")]

        return {
            "plan": self.plan.name,
            "stats": {k: _jsonable(v) for k, v in self.stats.items()},
            "notes": list(self.notes),
            "best": self.best.model_dump(mode="json") if self.best is not None else None,
            "ranked": records(self.table.head(rows)),
            "pareto": records(self.pareto),
            "verification": records(self.verification),
        }
