"""A plan's verification rounds: which candidates, in which worker batches, begun when, and
how the simulator's answers re-rank the table (``planner.verify`` runs each check).

The first round can begin from the evaluated rows, before the table is merged and ranked
(``begin_verify``): the candidates are the ranking's first distinct claims, which merging
identical rows leaves as they are, so only the columns the ranking reads are needed. Each
candidate's check runs as two parts (``planner.verify.verify_part``: the emitted deployment;
the claimed capacity and the search) spread over the workers (``verify_batches``). ``verify``
collects the rounds (a second when the first's best verified figure falls below the next
claim), re-ranks (``planner.ranking.apply_verification``) and names the best verified layout.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from planner.executors import Executor, start
from planner.ranking import apply_verification, candidates, why_nothing_fits
from planner.space import PlanContext
from planner.verify import combine_parts, engine_available, layout_deployment, part_requests, verify_parts

if TYPE_CHECKING:  # imported where it is used (``planner.search``: after the plan forks its workers)
    import pandas as pd

__all__ = ["begin_verify", "verify", "verify_batches", "point_seed", "objective_column"]


def point_seed(seed: int, point_id: int) -> int:
    """The seed of one point: derived from the base seed and the point id (never worker order)."""
    import numpy as np

    return int(np.random.SeedSequence([int(seed), int(point_id)]).generate_state(1)[0])


def objective_column(cfg) -> str:
    return "tokens_per_s_per_kusd" if cfg.objective == "tokens_per_dollar" else "tokens_per_s_per_device"


def verify_batches(cfg, ctx, items: list[tuple], workers: int) -> list[list[tuple]]:
    """Verification tasks: each candidate's parts (``planner.verify.verify_part``: the emitted
    deployment, and the claimed capacity with its search) one task each, the largest first (by
    the requests they simulate), so the workers take them as they come free; a worker process
    keeps its step costs from task to task (``planner.verify.verify_parts``). One worker: one
    task of every part, in that order."""
    parts = []
    for item in items:
        names = ("both",) if cfg.workload.arrival.kind == "trace" else ("emitted", "claim")
        parts += [(part_requests(cfg, ctx, part, item[2]), (part,) + item) for part in names]
    order = [part for _cost, part in sorted(parts, key=lambda p: -p[0])]  # stable: candidates in rank order
    return [order] if workers <= 1 else [[part] for part in order]


def _verify_round(cfg, ctx, cands: list[dict], layout_of, executor: Executor, seed: int) -> tuple:
    """Begin verifying ``cands``: (items, batches, pending). On forked local workers one run per
    task, a failed claim's search spread over them (``planner.verify_sched``); elsewhere one
    part per task (``executors.start``)."""
    items = [(layout_of[r["id"]], r["id"], r, point_seed(seed, r["id"])) for r in cands]
    batches = verify_batches(cfg, ctx, items, executor.workers)
    if executor.workers > 1 and getattr(executor, "forks", False) and callable(getattr(executor, "start", None)):
        from planner.verify_sched import start_round

        return items, batches, start_round(cfg, ctx, items, [b[0] for b in batches], executor.workers,
                                           getattr(executor, "progress", None))
    return items, batches, start(executor, verify_parts, [(cfg, ctx, b) for b in batches], desc="verify")


def begin_verify(cfg, ctx, ranked_rows: pd.DataFrame, layout_of, executor: Executor, seed: int, verify_top: int):
    """The first verification round begun before the table is built: ``ranked_rows`` holds the
    ranking's columns (``planner.ranking.RANK_COLUMNS``) of the table's rows in rank order,
    which is all ``candidates`` reads. None when nothing will be verified (``verify`` says why)."""
    if not verify_top or not len(ranked_rows) or not ranked_rows["feasible"].any() or not engine_available():
        return None
    cands = candidates(ranked_rows, verify_top, set())
    return (cands,) + _verify_round(cfg, ctx, cands, layout_of, executor, seed) if cands else None


def verify(cfg, ctx: PlanContext, table: pd.DataFrame, layout_of: dict, executor: Executor, seed: int,
            verify_top: int, notes: list[str], begun: tuple | None = None) -> dict:
    """Verify the top candidates in the simulator, re-rank, and pick the best verified layout.

    A second batch of ``verify_top`` candidates is verified when the first batch's best
    verified figure falls below the analytic figure of the next unverified candidate.
    ``begun``: the first round, already running (``begin_verify``)."""
    import pandas as pd

    objective = objective_column(cfg)
    out = {"table": table, "verification": pd.DataFrame(), "best": None, "deployments": {}, "layouts": {},
           "status": "ok", "explanation": ""}
    if not len(table) or not table["feasible"].any():
        out.update(status="no_feasible", explanation=why_nothing_fits(table, ctx.budget_devices))
        return out
    if not verify_top or not engine_available():
        why = ("verify.top is 0" if not verify_top else "simulator.engine.simulate is not available")
        notes.append(f"{why}: no layout was checked in the simulator, so none is recommended; the table ranks "
                     "analytic estimates")
        out["status"] = "unverified"
        return out
    ver_rows: list[dict] = []
    done: set = set()
    for _round in range(2):
        if _round == 0 and begun is not None:
            cands, items, batches, pending = begun
        else:
            cands = candidates(table, verify_top, done)
            if not cands:
                break
            items, batches, pending = _verify_round(cfg, ctx, cands, layout_of, executor, seed)
        got_parts: dict[tuple, dict] = {}
        for batch, res in zip(batches, pending()):
            for part, r in zip(batch, res):
                got_parts[(part[0], part[2])] = r
        for layout, pid, row, _seed in items:
            if ("both", pid) in got_parts:
                ver_rows.append(combine_parts(cfg, ctx, pid, row, got_parts[("both", pid)]))
            else:
                emitted = got_parts[("emitted", pid)]
                claim = got_parts[("claim", pid)] if emitted.get("failed") is None else None
                ver_rows.append(combine_parts(cfg, ctx, pid, row, emitted, claim))
        done |= {r["id"] for r in cands}
        got = [r for r in ver_rows if r.get("ok")]
        best_sim = max((r["sim_capacity_rps"] / r["claimed_rps"] * _row(table, r["id"])[objective]
                        for r in got if r["claimed_rps"]), default=-math.inf)
        nxt = candidates(table, 1, done)
        if not nxt or not nxt[0][objective] > best_sim:
            break
    verification = pd.DataFrame(ver_rows)
    table = apply_verification(table, verification, objective, ctx.arrival_rate_per_s, ctx.output_tokens)
    out.update(table=table, verification=_verification_view(verification, table))
    top = table.iloc[0]
    if top["verified"] != "yes":
        fails = "; ".join(f"{_row(table, r['id'])['layout']}: {r['reason']}" for r in ver_rows)
        out.update(status="none_verified",
                   explanation=f"no layout passed verification in the simulator ({len(ver_rows)} checked): {fails}")
        return out
    bid = int(top["id"])
    out["best"] = layout_deployment(cfg, ctx, layout_of[bid], name=f"{cfg.name}-best")
    out["deployments"] = {bid: out["best"]}
    out["layouts"] = {int(i): layout_of[int(i)] for i in verification["id"]} if len(verification) else {}
    notes.append(f"best layout verified in the simulator: {top['sim_capacity_rps']:.3g} req/s within the SLOs "
                 f"(analytic claim {top['capacity_rps']:.3g} req/s, {top['capacity_gap']:+.1%})")
    if top["sim_capacity_rps"] < ctx.arrival_rate_per_s * (1 - 1e-9):
        notes.append(f"no verified layout within the budget serves the target {ctx.arrival_rate_per_s:g} req/s; the "
                     f"best serves {top['sim_capacity_rps']:.3g} req/s")
    return out


def _row(table: pd.DataFrame, point_id: int) -> pd.Series:
    return table.loc[table["id"] == point_id].iloc[0]


def _verification_view(ver: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Verification rows in the final rank order, with the layout and the gap as a column."""
    if ver.empty:
        return ver
    info = table.set_index("id")[["rank", "layout"]]
    ver = ver.join(info, on="id")
    lead = [c for c in ("rank", "id", "layout", "status", "claimed_rps", "sim_capacity_rps", "capacity_gap",
                        "analytic_ttft_ms", "sim_ttft_p_ms", "analytic_tpot_ms", "sim_tpot_p_ms", "reason") if c in ver]
    ver = ver.sort_values("rank", kind="mergesort")
    return ver[lead + [c for c in ver.columns if c not in lead]].reset_index(drop=True)


