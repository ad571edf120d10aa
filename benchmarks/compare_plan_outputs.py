"""Compare ``clustersim plan --out`` of this tree against a baseline tree on the plan examples
(the serving plans and the training plan of ``examples/``).

    python benchmarks/compare_plan_outputs.py --baseline /work/base7
    python benchmarks/compare_plan_outputs.py --baseline /work/base7 --only h200x32 --workers 1

Both trees run as whole processes (``python -m clustersim.cli plan EX --out DIR``, their own
``PYTHONPATH`` and cwd, ``--workers N`` when given). What must match: ``best_deployment.yaml``,
``ranked.csv`` and ``pareto.csv`` byte for byte, ``ranked.parquet``'s contents (the same
columns, dtypes and values, NaN equal to NaN), and ``plan.json`` without its timing fields
(``stats.*_s``, a verification row's ``sim_wall_s``; ``stats.step_cost_calls``, the steps the
planning process costed itself, which depends on how its tasks were spread). ``pareto.png`` is not compared (a
drawing). Prints one line per example and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"h200x32": "examples/plan_deepseek-v3_h200x32.yaml", "h800": "examples/plan_deepseek-v3_h800.yaml",
            "cm384": "examples/plan_deepseek-r1_cloudmatrix384.yaml", "train": "examples/train_deepseek-v3_h800_2048.yaml"}
BYTES = ("best_deployment.yaml", "ranked.csv", "pareto.csv")


def run(tree: Path, example: str, out: Path, workers: int | None) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    args = [sys.executable, "-m", "clustersim.cli", "plan", example, "--out", str(out), "--quiet"]
    if workers:
        args += ["--workers", str(workers)]
    p = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True)
    if p.returncode not in (0, 3, 4):
        raise RuntimeError(f"{tree}: {' '.join(args[3:])}: exit {p.returncode}: {p.stderr.strip()[-400:]}")


def _untimed(path: Path) -> dict:
    data = json.loads(path.read_text())
    # ``stats.step_cost_calls`` counts the steps the planning process costed itself: it depends
    # on how the pool tasks were spread over the processes, like a timing
    data["stats"] = {k: v for k, v in data.get("stats", {}).items() if not k.endswith("_s") and k != "step_cost_calls"}
    data["verification"] = [{k: v for k, v in r.items() if k != "sim_wall_s"} for r in data.get("verification", [])]
    return data


def _same_parquet(a: Path, b: Path) -> bool:
    import pandas as pd

    x, y = pd.read_parquet(a), pd.read_parquet(b)
    return list(x.columns) == list(y.columns) and list(x.dtypes) == list(y.dtypes) and x.equals(y)


def differences(new: Path, base: Path) -> list[str]:
    names = {p.name for p in new.iterdir()} | {p.name for p in base.iterdir()}
    out = []
    for name in sorted(names - {"pareto.png"}):
        a, b = new / name, base / name
        if not (a.exists() and b.exists()):
            out.append(f"{name} written by one side only")
        elif name == "plan.json":
            if _untimed(a) != _untimed(b):
                out.append(name)
        elif name.endswith(".parquet"):
            if not _same_parquet(a, b):
                out.append(name)
        elif not filecmp.cmp(a, b, shallow=False):
            out.append(name)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, required=True)
    ap.add_argument("--only", nargs="*", choices=sorted(EXAMPLES), help="examples (default: all)")
    ap.add_argument("--workers", type=int, default=None, help="--workers for both sides")
    args = ap.parse_args()
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.only or list(EXAMPLES):
            new, base = Path(tmp) / f"{key}-new", Path(tmp) / f"{key}-base"
            run(ROOT, EXAMPLES[key], new, args.workers)
            run(args.baseline.resolve(), EXAMPLES[key], base, args.workers)
            diff = differences(new, base)
            print(f"{key:8s} {'identical' if not diff else 'DIFFERENT: ' + ', '.join(diff)} "
                  f"({len(list(new.iterdir()))} files)")
            bad += bool(diff)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
