"""Training plan speed (issue 15): ``clustersim plan examples/train_deepseek-v3_h800_2048.yaml``,
the new code path against the old one, in the same run.

* **new**: the command as shipped: every layout's pipeline is a longest-path pass over its
  schedule's DAG (compiled once per (schedule, pp, micro-batches) shape, a batch of layouts
  per pass), the layouts simulated on the planner's process pool (``--workers``).
* **old** (default baseline): the same command from the same tree with the pipeline run as
  before: the simpy event simulation, one layout after another, in one process
  (``simulate_trainings`` replaced by ``simulate_training(trace=True)`` per job). Everything
  else (cost model, memory, table) is the tree's own, so the ratio is what this change buys.
* ``--commit SHA``: the baseline is that commit's whole tree instead (``git archive`` into a
  temporary folder, no worktree), e.g. 2572bd0, main before this change.

Each round runs both whole processes (imports, profile load, the simulated layouts, the
table), alternating which goes first, and records wall and CPU time (the process and its
workers; on a loaded machine the CPU ratio is the steadier figure). Both write ``ranked.csv``;
the report says whether the two are byte-identical: the same ranking with the same figures.

Usage: python benchmarks/bench_training_plan.py [--workers 2] [--rounds 1] [--commit SHA]
       [--set key=value ...] [--json]
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

#: the old pipeline path, run inside the CLI process of this tree
OLD_PATH = """
import sys
import simulator.training as training

def events_one_by_one(jobs, *, profile=None):
    out = []
    for job in jobs:
        try:
            out.append(training.simulate_training(job, profile=profile, check_memory=False, trace=True))
        except ValueError as exc:
            out.append(exc)
    return out

training.simulate_trainings = events_one_by_one
from clustersim.cli import app
app(sys.argv[1:])
"""


def _extract(commit: str, into: Path) -> Path:
    """``git archive`` of ``commit`` from this checkout, unpacked into ``into``."""
    tar = into / "baseline.tar"
    with open(tar, "wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", commit], stdout=fh, check=True)
    with tarfile.open(tar) as tf:
        tf.extractall(into / "tree", filter="data")
    return into / "tree"


def _run(prefix: list[str], tree: Path, out: Path, workers: int, overrides: list[str]) -> dict:
    """One whole ``clustersim plan`` process: wall and CPU seconds (with its workers), ranked.csv."""
    cmd = [*prefix, "plan", str(EXAMPLE), "--quiet", "--workers", str(workers), "--out", str(out)]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "PYTHONPATH": str(tree), "CLUSTERSIM_PROGRESS": "never"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(tree), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])}: failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "csv": (out / "ranked.csv").read_bytes()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--commit", default=None, help="baseline: this commit's tree (default: the old path here)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cli = [sys.executable, "-m", "clustersim.cli"]
    with tempfile.TemporaryDirectory(prefix="bench_training_plan_") as tmp:
        tmp_p = Path(tmp)
        if args.commit:
            base = (cli, _extract(args.commit, tmp_p), args.workers)
        else:
            base = ([sys.executable, "-c", OLD_PATH], ROOT, 1)
        runs: dict[str, list[dict]] = {"old": [], "new": []}
        for r in range(args.rounds):
            order = [("new", (cli, ROOT, args.workers)), ("old", base)]
            for name, (prefix, tree, workers) in order if r % 2 == 0 else order[::-1]:
                runs[name].append(_run(prefix, tree, tmp_p / f"{name}{r}", workers, args.overrides))
    same = all(a["csv"] == b["csv"] for a, b in zip(runs["old"], runs["new"]))
    best = {k: {m: min(x[m] for x in v) for m in ("wall_s", "cpu_s")} for k, v in runs.items()}
    out = {"command": f"clustersim plan {EXAMPLE.relative_to(ROOT)} --workers {args.workers}",
           "baseline": f"commit {args.commit}" if args.commit else "old path (simpy, serial) in this tree",
           "cores": os.cpu_count(), "rounds": args.rounds, "old_best": best["old"], "new_best": best["new"],
           "wall_ratio": best["old"]["wall_s"] / best["new"]["wall_s"],
           "cpu_ratio": best["old"]["cpu_s"] / best["new"]["cpu_s"],
           "same_table": same, "load_avg_1min": os.getloadavg()[0]}
    if not args.json:
        print(f"{out['command']}: {out['cores']} cores, load {out['load_avg_1min']:.1f}, best of {args.rounds}; "
              f"baseline: {out['baseline']}")
        print(f"{'':6} {'wall s':>8} {'CPU s':>8}")
        for k in ("old", "new"):
            print(f"{k:6} {best[k]['wall_s']:8.2f} {best[k]['cpu_s']:8.2f}")
        print(f"ratio (old / new): wall {out['wall_ratio']:.1f}x, CPU {out['cpu_ratio']:.1f}x; "
              f"ranked.csv identical: {same}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
