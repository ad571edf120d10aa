"""Byte-compare ``clustersim simulate --out`` of this tree against a baseline tree on every serving
example of ``examples/`` (a few hundred requests each, plus any ``--extra`` runs).

    python benchmarks/compare_simulate_outputs.py --baseline /work/base6
    python benchmarks/compare_simulate_outputs.py --baseline /work/base6 --requests 2000 --only llama

Both trees run as whole processes (``python -m clustersim.cli simulate EX --set
workload.num_requests=N --out DIR``, their own ``PYTHONPATH`` and cwd); every file each side wrote
must exist on the other and hold the same bytes, except that ``summary.json`` is compared with each
tree's own path replaced by ``<tree>`` and without its ``config_sha256`` line when the config
names a trace file by absolute path (both differ between two checkouts). Prints one line per
example and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(tree: Path, example: str, n: int, out: Path, extra: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    args = [sys.executable, "-m", "clustersim.cli", "simulate", example, "--out", str(out), *extra]
    if n:
        args += ["--set", f"workload.num_requests={n}"]
    p = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{tree}: {' '.join(args[3:])}: exit {p.returncode}: {p.stderr.strip()[-400:]}")


def same(name: str, a: Path, b: Path, tree_a: Path, tree_b: Path) -> bool:
    if name != "summary.json":
        return filecmp.cmp(a, b, shallow=False)
    ta, tb = a.read_text().replace(str(tree_a), "<tree>"), b.read_text().replace(str(tree_b), "<tree>")
    if ta == tb:
        return True
    drop = lambda t: [ln for ln in t.splitlines() if '"config_sha256"' not in ln]  # noqa: E731
    return str(tree_a) in a.read_text() and drop(ta) == drop(tb)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="/work/base6")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--only", nargs="*", help="substrings of example names")
    ap.add_argument("--trace", action="store_true", help="also write and compare trace.json")
    args = ap.parse_args(argv)
    base = Path(args.baseline).resolve()
    examples = sorted(p.name for p in (ROOT / "examples").glob("*.yaml")
                      if not p.name.startswith(("plan_", "train_")))
    if args.only:
        examples = [e for e in examples if any(s in e for s in args.only)]
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for ex in examples:
            a, b = Path(tmp) / f"new-{ex}", Path(tmp) / f"base-{ex}"
            extra = ["--trace"] if args.trace else []
            run(ROOT, f"examples/{ex}", args.requests, a, extra)
            run(base, f"examples/{ex}", args.requests, b, extra)
            names = sorted(set(os.listdir(a)) | set(os.listdir(b)))
            diff = [n for n in names if not (a / n).exists() or not (b / n).exists()
                    or not same(n, a / n, b / n, ROOT, base)]
            sizes = ", ".join(f"{n} {(a / n).stat().st_size:,} B" for n in names if (a / n).exists())
            print(f"{ex}: {'DIFFERENT ' + ' '.join(diff) if diff else 'identical'} ({sizes})", flush=True)
            bad += bool(diff)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
