"""Training plan speed (issue 15): ``clustersim plan examples/train_deepseek-v3_h800_2048.yaml``,
this tree against a baseline tree, in the same run.

Each round runs the whole command (a fresh process: imports, profile load, the 400 simulated
layouts, the table) once per tree, alternating which goes first, and records its wall time and
CPU time (the process and its workers: on a loaded machine the CPU ratio is the steadier
figure). Both trees plan this tree's example file, and both write ``ranked.csv`` (``--out``); the
report says whether the two tables are byte-identical, i.e. the same ranking with the same
figures. The baseline is main at 2572bd0 (simpy pipeline, one layout after another on one core)
unless ``--baseline DIR`` names another checkout; it is extracted with ``git archive`` into a
temporary folder (no worktree is created).

Usage: python benchmarks/bench_training_plan.py [--workers 2] [--rounds 1] [--baseline DIR]
       [--commit 2572bd0] [--set key=value ...]
Prints a table and one JSON line (``--json``: only the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "train_deepseek-v3_h800_2048.yaml"
BASELINE_COMMIT = "2572bd0"


def _extract(commit: str, into: Path) -> Path:
    """``git archive`` of ``commit`` from this checkout, unpacked into ``into``."""
    tar = into / "baseline.tar"
    with open(tar, "wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", commit], stdout=fh, check=True)
    with tarfile.open(tar) as tf:
        tf.extractall(into / "tree", filter="data")
    return into / "tree"


def _run(tree: Path, out: Path, workers: int, overrides: list[str]) -> dict:
    """One whole ``clustersim plan`` process from ``tree``: wall and CPU seconds (with workers)."""
    cmd = [sys.executable, "-m", "clustersim.cli", "plan", str(EXAMPLE), "--quiet", "--workers", str(workers),
           "--out", str(out)]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "PYTHONPATH": str(tree), "CLUSTERSIM_PROGRESS": "never"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(tree), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: clustersim plan failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "csv": (out / "ranked.csv").read_bytes()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--baseline", type=Path, default=None, help="a checkout of the baseline (default: --commit)")
    ap.add_argument("--commit", default=BASELINE_COMMIT)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_training_plan_") as tmp:
        tmp_p = Path(tmp)
        base = args.baseline.resolve() if args.baseline else _extract(args.commit, tmp_p)
        runs: dict[str, list[dict]] = {"baseline": [], "new": []}
        for r in range(args.rounds):
            order = [("new", ROOT), ("baseline", base)]
            for name, tree in order if r % 2 == 0 else order[::-1]:
                runs[name].append(_run(tree, tmp_p / f"{name}{r}", args.workers, args.overrides))
    same = all(a["csv"] == b["csv"] for a, b in zip(runs["baseline"], runs["new"]))
    best = {k: {m: min(x[m] for x in v) for m in ("wall_s", "cpu_s")} for k, v in runs.items()}
    out = {"command": f"clustersim plan {EXAMPLE.relative_to(ROOT)} --workers {args.workers}",
           "cores": os.cpu_count(), "rounds": args.rounds, "baseline": str(args.baseline or args.commit),
           "baseline_best": best["baseline"], "new_best": best["new"],
           "wall_ratio": best["baseline"]["wall_s"] / best["new"]["wall_s"],
           "cpu_ratio": best["baseline"]["cpu_s"] / best["new"]["cpu_s"],
           "same_table": same, "load_avg_1min": os.getloadavg()[0]}
    if not args.json:
        print(f"{out['command']}  ({out['cores']} cores, load {out['load_avg_1min']:.1f}, best of {args.rounds})")
        print(f"{'':10} {'wall s':>8} {'CPU s':>8}")
        for k in ("baseline", "new"):
            print(f"{k:10} {best[k]['wall_s']:8.2f} {best[k]['cpu_s']:8.2f}")
        print(f"ratio (baseline / new): wall {out['wall_ratio']:.1f}x, CPU {out['cpu_ratio']:.1f}x; "
              f"ranked.csv identical: {same}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
