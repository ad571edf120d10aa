"""Planner speed (issue 6): analytic layouts/s on one core, and a full plan's wall time.

Scenario: DeepSeek-V3 (FP8) on 32 H200 GPUs (4 HGX nodes), 4,000-token prompts, 500-token
outputs, TTFT <= 2 s and TPOT <= 50 ms (examples/plan_deepseek-v3_h200x32.yaml).

1. layouts/s: every layout of the plan's full space (colocated + disaggregated, instance
   sizes 1..32, attention TP, micro-batches, MTP, batch and chunk limits, instance counts;
   infeasible ones included, each rejected with its reason) evaluated one by one with
   ``Evaluator.evaluate_layout`` in this process, from a cold cache (step costing included).
2. full plan: ``planner.plan`` (pool costing in a 2-worker process pool, ranking, and
   simulator verification of the top 3) timed end to end in a cold process (profile load
   included; Python imports reported apart). It runs before step 1, so no cache is warm.

Usage: python benchmarks/bench_planner.py [--workers 2] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "examples" / "plan_deepseek-v3_h200x32.yaml"
if str(ROOT) not in sys.path:  # run from a checkout without (re)installing the package
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args(argv)

    t_import = time.perf_counter()
    import planner
    from planner.analytic import Evaluator
    from planner.executors import LocalExecutor
    from planner.space import context_from_plan, enumerate_layouts
    from workloads.models import get_model

    t_import = time.perf_counter() - t_import
    cfg = planner.load_plan(PLAN, args.overrides)

    # 2. (run first, in a cold process) full plan on `workers` processes, verification included
    t3 = time.perf_counter()
    res = planner.plan(cfg, executor=LocalExecutor(args.workers, progress=False))
    t_plan = time.perf_counter() - t3
    # 1. analytic layouts/s, one core, cold cache
    ctx = context_from_plan(cfg)
    t0 = time.perf_counter()
    ev = Evaluator(ctx)
    t_profile = time.perf_counter() - t0
    points = list(enumerate_layouts(ctx, cfg.search, get_model(cfg.model)))
    t1 = time.perf_counter()
    feasible = sum(1 for p in points if ev.evaluate_layout(p.layout)["feasible"])
    t_eval = time.perf_counter() - t1
    t2 = time.perf_counter()
    for p in points:
        ev.evaluate_layout(p.layout)
    t_warm = time.perf_counter() - t2

    best = res.table.iloc[0]
    ver = res.verification
    out = {
        "scenario": "deepseek-v3 fp8, 32 x h200, 4000/500 tokens, TTFT<=2s, TPOT<=50ms (p90)",
        "profile": cfg.profile,
        "layouts": len(points),
        "layouts_feasible": feasible,
        "analytic_layouts_per_s_one_core_cold": len(points) / t_eval,
        "analytic_layouts_per_s_one_core_warm": len(points) / t_warm,
        "step_cost_calls": ev.step_calls(),
        "profile_load_s": t_profile,
        "full_plan_wall_s": t_plan,
        "full_plan_phases_s": {k: round(res.stats[k], 3) for k in ("pool_phase_s", "rank_phase_s", "verify_phase_s")},
        "workers": args.workers,
        "import_s": t_import,
        "best": {"mode": best["mode"], "devices": int(best["devices"]),
                 "tokens_per_s_per_device": round(float(best["tokens_per_s_per_device"]), 1),
                 "tokens_per_s_per_user": round(float(best["tokens_per_s_per_user"]), 1)},
        "verified": int(ver["ok"].sum()) if len(ver) else 0,
    }
    print(json.dumps(out, indent=2, default=str))
    return out


if __name__ == "__main__":
    main()
