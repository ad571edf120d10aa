"""Fit the in-step gap per measured compute op on the fit rows of our ground truth, and show it
on the hold-out rows (``clustersim.validation.fit_in_step_gap``).

A whole step runs its kernels back to back, each waiting on its predecessor; the per-op tables
time repeated independent calls, which do not wait. ``benchmarks/gt_kernel_profile.py`` sees the
difference directly (graph replay of Llama decode steps: 0.8-1.1 us per kernel beyond the kernels'
own durations); this script fits the one number the cost model adds per measured compute op, on
the ``fit`` rows only, and prints fit and hold-out errors without and with it.

    python benchmarks/fit_in_step_gap.py            # print
    python benchmarks/fit_in_step_gap.py --write    # also record it in the shipped H200 profile (in_step_gap_fit)
    python benchmarks/fit_in_step_gap.py --direct calibration/profiles/h200/in_step_gap.csv
        # also every row (none was fitted to it) at the gap the in_step_gap suite measured directly
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibration.store import write_atomic  # noqa: E402
from calibration.profile import load_profile  # noqa: E402
from clustersim.checks.core import measured_dir  # noqa: E402
from clustersim.checks.measured import SUBSETS  # noqa: E402
from clustersim.validation import fit_in_step_gap  # noqa: E402


def _line(df, col: str) -> str:
    e = df[col].abs()
    return f"median {100 * e.median():4.1f}%  p90 {100 * e.quantile(0.9):4.1f}%  worst {100 * e.max():5.1f}%"


def _direct(csv_path: Path, df, fitted_s: float) -> None:
    """Errors of every row at the gap an ``in_step_gap`` table states (each prediction is linear in
    the gap: ``error_nogap + (error - error_nogap) x gap / fitted``): a check of the direct
    measurement on rows none of which it was fitted to."""
    import csv

    from calibration.bench.in_step_gap import gap_from_rows

    with open(csv_path, newline="") as f:
        gap = gap_from_rows(list(csv.DictReader(f)))
    if gap is None or fitted_s <= 0:
        print(f"{csv_path}: no gap")
        return
    at = df.assign(error=df.error_nogap + (df.error - df.error_nogap) * (gap / fitted_s))
    print(f"direct gap {gap * 1e6:.3f} us ({csv_path}), every row a hold-out of it:")
    for split, d in at.groupby("split"):
        print(f"{split:8s} {len(d):4d} rows  at the direct gap: {_line(d, 'error')}")
    print(f"all      {len(at):4d} rows  no gap: {_line(at, 'error_nogap')}   direct: {_line(at, 'error')}   "
          f"fitted: {_line(df, 'error')}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="record the fitted gap in the shipped H200 profile's metadata "
                    "(in_step_gap_fit: a cross-check; the profile states its in_step_gap table's direct measurement)")
    ap.add_argument("--direct", type=Path, help="an in_step_gap.csv (calibration.bench.in_step_gap): errors at its gap")
    args = ap.parse_args(argv)
    prof = load_profile("h200")
    gap_s, df = fit_in_step_gap(measured_dir(), prof, SUBSETS)
    fit = df[df.split == "fit"]
    print(f"in-step gap per measured compute op: {gap_s * 1e6:.3f} us (least squares on {len(fit)} fit rows)")
    for split, d in df.groupby("split"):
        print(f"{split:8s} {len(d):4d} rows  no gap: {_line(d, 'error_nogap')}   with it: {_line(d, 'error')}")
    for (family, split), d in df.groupby(["family", "split"]):
        print(f"  {family:22s} {split:8s} {len(d):3d}  no gap: {_line(d, 'error_nogap')}   with it: {_line(d, 'error')}")
    if args.direct is not None:
        _direct(args.direct, df, gap_s)
    if args.write:
        path = Path(prof.path) / "metadata.json"
        meta = json.loads(path.read_text())
        meta["in_step_gap_fit"] = {
            "seconds": round(gap_s, 11),
            "method": "least squares on relative error over the fit rows of clustersim/data/measured (the first run's "
                      "per-point medians, the fit halves of wide/chunk/fp8moe/fp8dense), closed form "
                      "(clustersim.validation.fit_in_step_gap; benchmarks/fit_in_step_gap.py --write)",
            "fit_rows": int(len(fit)),
            "direct": "graph replay of Llama-3.1-8B and 70B-TP4 decode steps on the H200: 0.4-1.1 us per kernel beyond "
                      "the kernels' own durations (benchmarks/gt_kernel_profile.py, 2026-12-02)",
        }
        text = json.dumps(meta, indent=1) + "\n"  # the file's own layout: key order kept, new key last
        write_atomic(path, lambda tmp: tmp.write_text(text))
        print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
