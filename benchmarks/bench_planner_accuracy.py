"""Planner accuracy (issue 11, item 13): analytic capacity of the top layouts vs the simulator.

For each of the plan's top verified layouts: the analytic claim (requests/s within the SLOs,
the rate behind tokens/s per device), and the capacity the simulator sustains in steady
state, found by bisection (7 steps over 0.5x..1.3x the claim). Each rate is simulated with the
planner's own step costs (``simulation_hooks``) for ``--lifetimes`` request lifetimes (10:
near the KV limit the decode batch takes several lifetimes to settle), the SLO percentiles
read over the next-to-last lifetime, on ``--seeds`` seeds (the rate passes when the median of
the seeds' p-TTFT and p-TPOT meet the SLO). Also the plan's wall time on ``--workers``.

Usage: python benchmarks/bench_planner_accuracy.py [--plan examples/plan_deepseek-v3_h200x32.yaml]
       [--top 3] [--seeds 2] [--workers 2] [--set key=value ...]
Runs against whatever ``planner`` is importable (PYTHONPATH), so the same script measures an
older checkout too (it needs only ``planner.plan``, ``planner.search.simulation_hooks`` and
``planner.search.layout_deployment``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without (re)installing the package
    sys.path.insert(0, str(ROOT))


def _steady(req, slo, lifetime_s, lifetimes):
    arr = req["arrival_s"].to_numpy()
    sel = (arr >= arr.min() + (lifetimes - 2) * lifetime_s) & (arr <= arr.max() - lifetime_s)
    if sel.sum() < 50:
        sel[:] = True
    q = slo.percentile
    tpot = req["tpot_s"].to_numpy()[sel]
    tpot = tpot[~np.isnan(tpot)]
    return (float(np.percentile(req["ttft_s"].to_numpy()[sel], q)) * 1e3,
            float(np.percentile(tpot, q)) * 1e3 if tpot.size else 0.0)


def sim_capacity(cfg, ctx, layout, claim, lifetime_s, seeds, lifetimes, steps=7):
    """Largest rate (req/s) whose median-over-seeds steady p-TTFT and p-TPOT meet the SLO."""
    from planner.search import layout_deployment, simulation_hooks
    from simulator.engine import simulate

    step_cost, kv = simulation_hooks(ctx, layout)
    cache: dict[float, tuple] = {}

    def ok(rate):
        if rate not in cache:
            runs = []
            for s in range(seeds):
                n = int(min(50_000, max(300, rate * lifetimes * lifetime_s)))
                dep = layout_deployment(cfg, ctx, layout, rate, seed=1000 + s)
                dep = dep.model_copy(update={"workload": dep.workload.model_copy(
                    update={"num_requests": n, "duration_s": None})})
                runs.append(_steady(simulate(dep, step_cost=step_cost, kv_capacity_tokens=kv).requests, dep.slo,
                                    lifetime_s, lifetimes))
            ttft, tpot = float(np.median([r[0] for r in runs])), float(np.median([r[1] for r in runs]))
            cache[rate] = (ttft <= cfg.slo.ttft_ms and tpot <= cfg.slo.tpot_ms, ttft, tpot)
        return cache[rate][0]

    lo, hi = 0.5 * claim, 1.3 * claim
    if not ok(lo):
        return lo, cache  # below the search range: report its floor
    if ok(hi):
        return hi, cache
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo, cache


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=str(ROOT / "examples" / "plan_deepseek-v3_h200x32.yaml"))
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--lifetimes", type=float, default=10.0,
                    help="request lifetimes per run; the SLO is read from lifetime L-2 to L-1 (the steady state)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args(argv)

    import planner
    from planner.executors import LocalExecutor
    from planner.space import context_from_plan

    cfg = planner.load_plan(args.plan, args.overrides + [f"verify.top={args.top}"])
    t0 = time.perf_counter()
    res = planner.plan(cfg, executor=LocalExecutor(args.workers, progress=False))
    wall = time.perf_counter() - t0
    ctx = context_from_plan(cfg)
    rows = []
    table = res.table.set_index("id")
    for pid, layout in res.layouts.items():
        row = table.loc[pid]
        claim = float(row["capacity_rps"])
        life = float(row["ttft_ms"]) / 1e3 + ctx.output_tokens * float(row["tpot_ms"]) / 1e3
        t1 = time.perf_counter()
        cap, tried = sim_capacity(cfg, ctx, layout, claim, life, args.seeds, args.lifetimes)
        rows.append({
            "rank": int(row["rank"]), "layout": row.get("layout", layout.mode), "devices": int(row["devices"]),
            "analytic_capacity_rps": round(claim, 3), "sim_capacity_rps": round(cap, 3),
            "gap": round(claim / cap - 1.0, 4),
            "analytic_tokens_per_s_per_device": round(float(row["tokens_per_s_per_device"]), 1),
            "sim_tokens_per_s_per_device": round(cap * ctx.output_tokens / int(row["devices"]), 1),
            "planner_verified_rps": None if "sim_capacity_rps" not in row else float(row["sim_capacity_rps"]),
            "rates_tried": {f"{k:.3g}": [v[0], round(v[1]), round(v[2], 1)] for k, v in sorted(tried.items())},
            "measure_s": round(time.perf_counter() - t1, 1)})
    out = {"plan": cfg.name, "plan_wall_s": round(wall, 2), "workers": args.workers,
           "phases_s": {k: round(res.stats[k], 2) for k in ("pool_phase_s", "rank_phase_s", "verify_phase_s")},
           "layouts": sorted(rows, key=lambda r: r["rank"])}
    print(json.dumps(out, indent=2, default=str))
    return out


if __name__ == "__main__":
    main()
