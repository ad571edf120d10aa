"""Prediction error against our own H200 ground truth, per family and split (fit / holdout).

    python benchmarks/accuracy_report.py [--measured tests/data/measured] [--profile h200]
                                         [--kernels eager] [--expected-routing] [--markdown] [--points]

Reads the first run's tables in ``--measured`` (the points the cost model was tuned against:
``fit``) and the later sets in ``--measured/wide`` and ``--measured/chunk`` when present (each
row's own ``split``), predicts every row with ``clustersim.validation.predict_measured`` and prints the
number of points, the median, p90 and worst absolute relative error per family and split, and
over all families. ``--markdown`` prints the same table as Markdown (the README's accuracy
section is generated from ``summary_table`` by docs/gen_numbers.py, never typed by hand);
``--points`` every row. MoE layer rows are costed at the routing draw they recorded unless
``--expected-routing`` (the uniform-routing expectation an estimate uses).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibration.profile import load_profile  # noqa: E402
from clustersim.validation import error_summary, predict_measured  # noqa: E402
from workloads.kernel_sets import KERNEL_SETS  # noqa: E402


def collect(measured: Path, profile, kernels: str = "eager", recorded_routing: bool = True) -> pd.DataFrame:
    """Predictions of the first run's tables and of the later sets (``clustersim.checks.measured.SUBSETS``:
    ``wide/``, ``chunk/``, ``fp8moe/``, if present), one row per point."""
    from clustersim.checks.measured import SUBSETS

    parts = [predict_measured(measured, profile, kernels=kernels, recorded_routing=recorded_routing)]
    for sub in SUBSETS:
        if (measured / sub).is_dir():
            parts.append(predict_measured(measured / sub, profile, kernels=kernels, recorded_routing=recorded_routing))
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (family, split) plus an 'all' family per split."""
    per = error_summary(df)
    overall = error_summary(df.assign(family="all"))
    return pd.concat([per, overall], ignore_index=True)


def render(table: pd.DataFrame, markdown: bool) -> str:
    rows = [(r.family, r.split, str(r.points), f"{r.median:.1%}", f"{r.p90:.1%}", f"{r.worst:.1%}")
            for r in table.itertuples()]
    head = ("family", "split", "points", "median", "p90", "worst")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    fmt = "{:20s} {:8s} {:>6s} {:>8s} {:>8s} {:>8s}"
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--measured", type=Path, default=ROOT / "tests" / "data" / "measured")
    p.add_argument("--profile", default="h200", help="profile name or directory")
    p.add_argument("--kernels", default="eager", choices=tuple(KERNEL_SETS))
    p.add_argument("--expected-routing", action="store_true",
                   help="cost MoE layers at the uniform-routing expectation, not the recorded draw")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--points", action="store_true", help="also print every point")
    a = p.parse_args(argv)
    df = collect(a.measured, load_profile(a.profile), a.kernels, recorded_routing=not a.expected_routing)
    if df.empty:
        print(f"{a.measured}: no ground-truth tables", file=sys.stderr)
        return 1
    if a.points:
        for r in df.sort_values(["family", "split", "case"]).itertuples():
            print(f"{r.family:18s} {r.split:8s} {r.case:36s} {r.point:14s} measured {r.measured_s * 1e3:9.3f} ms "
                  f"predicted {r.predicted_s * 1e3:9.3f} ms {r.error:+7.1%}")
    print(render(summary_table(df), a.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
