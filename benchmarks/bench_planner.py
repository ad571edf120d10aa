"""Serving-planner speed (issue 15): whole `clustersim plan` processes against a baseline checkout.

Each row is one command, run as a whole process (imports, profile load, the plan with its
worker pool and simulator verification, and writing --out), alternately with this checkout
and with the baseline (``--baseline DIR``: another checkout of the repository, e.g.
``git worktree add /tmp/planbase <commit>``; its code is imported through PYTHONPATH). For
each side it reports the median wall time, the CPU time of the process and its workers, and
the peak RSS of the largest process (``os.wait4``), then the ratio new / old, the issue's
target and whether the new side meets it, and whether both wrote the same
``best_deployment.yaml`` (meaningful when the baseline has the same cost model: a baseline
from before other model changes can answer differently for their sake).

Targets (issue 15, on 2 cores): ``plan_deepseek-v3_h200x32.yaml`` <= 2 s;
``plan_deepseek-v3_h800.yaml`` <= 4 s and <= 300 MB.

``--analytic`` also prints the earlier figures of this script (issue 6): analytic layouts/s
on one core over the h200x32 plan's whole space, and the plan's phases.

Usage: python benchmarks/bench_planner.py --baseline /tmp/planbase [--repeat 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without (re)installing the package
    sys.path.insert(0, str(ROOT))

#: (row, plan file, wall target s, peak RSS target MB)
ROWS = (
    ("plan h200x32", "examples/plan_deepseek-v3_h200x32.yaml", 2.0, None),
    ("plan h800", "examples/plan_deepseek-v3_h800.yaml", 4.0, 300.0),
)


def run_once(checkout: Path, plan: str, workers: int | None) -> dict:
    """One whole `clustersim plan` process of ``checkout``: wall, CPU (with its workers), peak RSS."""
    out = Path(tempfile.mkdtemp(prefix="bench_plan_"))
    cmd = [sys.executable, "-m", "clustersim.cli", "plan", str(checkout / plan), "--out", str(out), "--quiet"]
    if workers:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    best = out / "best_deployment.yaml"
    res = {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
           "rc": proc.returncode, "best": best.read_text() if best.exists() else None,
           "files": sorted(p.name for p in out.iterdir())}
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode not in (0, 3, 4):
        raise SystemExit(f"{checkout}: {' '.join(cmd)} exited {proc.returncode}: {err.strip()[-400:]}")
    return res


def compare(baseline: Path | None, repeat: int, workers: int | None) -> list[dict]:
    """Every row, alternating new and old runs (the order flips each round)."""
    out = []
    for name, plan, wall_target, rss_target in ROWS:
        runs: dict[str, list[dict]] = {"new": [], "old": []}
        for k in range(repeat):
            sides = [("new", ROOT), ("old", baseline)] if baseline else [("new", ROOT)]
            for side, checkout in (sides if k % 2 == 0 else sides[::-1]):
                runs[side].append(run_once(checkout, plan, workers))
        row = {"row": name, "plan": plan}
        for side, rs in runs.items():
            if rs:
                row[side] = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s", "rss_mb")}
                row[side]["walls_s"] = [round(r["wall_s"], 2) for r in rs]
        new = row["new"]
        met = new["wall_s"] <= wall_target and (rss_target is None or new["rss_mb"] <= rss_target)
        row.update(target=f"<= {wall_target:g} s" + (f", <= {rss_target:g} MB" if rss_target else ""), met=met)
        if runs["old"]:
            old = row["old"]
            row["ratio_wall"] = new["wall_s"] / old["wall_s"]
            row["ratio_cpu"] = new["cpu_s"] / old["cpu_s"]
            row["ratio_rss"] = new["rss_mb"] / old["rss_mb"]
            row["same_best_deployment"] = runs["new"][0]["best"] == runs["old"][0]["best"]
        row["files"] = runs["new"][0]["files"]
        out.append(row)
    return out


def print_table(rows: list[dict]) -> None:
    head = f"{'row':<14} {'old wall':>9} {'new wall':>9} {'ratio':>6} {'old cpu':>8} {'new cpu':>8} " \
           f"{'old MB':>7} {'new MB':>7} {'target':<18} {'met':<4} same best"
    print(head)
    for r in rows:
        o, n = r.get("old"), r["new"]
        fmt = lambda d, k, f: (f % d[k]) if d else "-"  # noqa: E731
        print(f"{r['row']:<14} {fmt(o, 'wall_s', '%8.2fs'):>9} {n['wall_s']:>8.2f}s "
              f"{(r['ratio_wall'] if o else float('nan')):>6.2f} {fmt(o, 'cpu_s', '%7.2fs'):>8} {n['cpu_s']:>7.2f}s "
              f"{fmt(o, 'rss_mb', '%7.0f'):>7} {n['rss_mb']:>7.0f} {r['target']:<18} {'yes' if r['met'] else 'no':<4} "
              f"{r.get('same_best_deployment', '-')}")


def analytic(workers: int, overrides: list[str]) -> dict:
    """Issue 6's figures: analytic layouts/s on one core (cold and warm) and a plan's phases."""
    import planner
    from planner.analytic import Evaluator
    from planner.executors import LocalExecutor
    from planner.space import context_from_plan, enumerate_layouts
    from workloads.models import get_model

    cfg = planner.load_plan(ROOT / ROWS[0][1], overrides)
    t = time.perf_counter()
    res = planner.plan(cfg, executor=LocalExecutor(workers, progress=False))
    t_plan = time.perf_counter() - t
    ctx = context_from_plan(cfg)
    ev = Evaluator(ctx)
    points = list(enumerate_layouts(ctx, cfg.search, get_model(cfg.model)))
    t1 = time.perf_counter()
    feasible = sum(1 for p in points if ev.evaluate_layout(p.layout)["feasible"])
    t_cold = time.perf_counter() - t1
    t2 = time.perf_counter()
    for p in points:
        ev.evaluate_layout(p.layout)
    t_warm = time.perf_counter() - t2
    return {"layouts": len(points), "layouts_feasible": feasible, "table_rows": len(res.table),
            "analytic_layouts_per_s_one_core_cold": len(points) / t_cold,
            "analytic_layouts_per_s_one_core_warm": len(points) / t_warm, "full_plan_wall_s": t_plan,
            "full_plan_phases_s": {k: round(res.stats[k], 3)
                                   for k in ("pool_phase_s", "rank_phase_s", "verify_phase_s")}}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, help="checkout to compare against (e.g. a git worktree of main)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per side and row (alternating)")
    ap.add_argument("--workers", type=int, default=None, help="--workers of each plan (default: the CLI's)")
    ap.add_argument("--analytic", action="store_true", help="also the analytic layouts/s figures (issue 6)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    if args.baseline is not None and not (args.baseline / "clustersim" / "cli.py").is_file():
        ap.error(f"--baseline {args.baseline}: not a clustersim checkout (no clustersim/cli.py)")
    rows = compare(args.baseline, args.repeat, args.workers)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}; median of {args.repeat} alternating runs")
        print_table(rows)
    if args.analytic:
        print(json.dumps(analytic(args.workers or 2, args.overrides), indent=2, default=str))
    return rows


if __name__ == "__main__":
    main()
