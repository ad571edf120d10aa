"""Device-time plan of a calibration run: ``python -m calibration.bench.plan [--suite ...] [--quick]``.

Suites that can size their grid (``plan(ctx)`` giving FLOPs, bytes and setup bytes per point)
are estimated the way :func:`calibration.bench.common.time_calls` spends time on one H200: a
call costs ``FLOPs / PEAK_FLOPS_PER_S + bytes / HBM_BYTES_PER_S + LAUNCH_S``; a point runs about
``CALLS_LONG`` calls when a call is long, else about ``GRAPH_WINDOW_S`` of replays times
``REPLAYS`` plus the capture; plus creating its inputs (``RANDN_BYTES_PER_S``) and a fixed
``POINT_FIXED_S`` (allocation, cache release). The other suites show the seconds the shipped
H200 profile recorded for them (``metadata.json`` ``suite_seconds``), else the registry's
``eta_s``, else ``GUESS_S`` marked as a guess; the distributed suites are skipped on one GPU.
``calibration.run`` shows these as each suite's ETA. No torch needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from calibration.bench import REGISTRY, SUITES
from calibration.bench.common import BenchContext

PEAK_FLOPS_PER_S = 700e12
HBM_BYTES_PER_S = 4e12
LAUNCH_S = 5e-6
GRAPH_WINDOW_S = 2e-3  # time_calls captures calls worth ~2 ms per replay
REPLAYS = 11
CALLS_LONG = 15  # warm-up, estimate and 11 replays of one call, plus rotation warm-ups
CAPTURE_S = 5e-6  # per call recorded
RANDN_BYTES_PER_S = 0.5e12
POINT_FIXED_S = 0.02
GUESS_S = 30.0
SAFETY = 1.5


def _planners() -> dict:
    from calibration.bench import REGISTRY

    return {n: s.load_planner() for n, s in REGISTRY.items() if s.planner}


def point_seconds(flops: float, nbytes: float, setup_bytes: float) -> float:
    call = flops / PEAK_FLOPS_PER_S + nbytes / HBM_BYTES_PER_S + LAUNCH_S
    inner = max(1, min(400, int(GRAPH_WINDOW_S / call)))
    timed = CALLS_LONG * call if inner == 1 else REPLAYS * inner * call + inner * CAPTURE_S + 2 * call
    return timed + setup_bytes / RANDN_BYTES_PER_S + POINT_FIXED_S


def recorded_seconds() -> dict[str, float]:
    """``suite_seconds`` of the shipped H200 profile (what a full run spent per suite)."""
    from calibration.profile import load_profile

    try:
        return dict(load_profile("h200").metadata.get("suite_seconds", {}))
    except LookupError:
        return {}


def plan_suites(suites, quick: bool = False) -> list[dict]:
    """One row per suite: points (or None), estimated seconds and where the estimate comes from."""
    ctx = BenchContext(out_dir=Path("."), device="cuda", quick=quick)
    planners, recorded = _planners(), recorded_seconds()
    rows = []
    for s in suites:
        if s in planners:
            pts = planners[s](ctx)
            rows.append(dict(suite=s, points=len(pts), seconds=sum(point_seconds(*p) for p in pts),
                             source="sized from its grid"))
        elif REGISTRY[s].distributed:
            rows.append(dict(suite=s, points=None, seconds=0.0, source="skipped on one GPU"))
        elif s in recorded:
            rows.append(dict(suite=s, points=None, seconds=float(recorded[s]), source="recorded (h200 profile)"))
        elif REGISTRY[s].eta_s is not None:
            rows.append(dict(suite=s, points=None, seconds=REGISTRY[s].eta_s, source="estimate (registry)"))
        else:
            rows.append(dict(suite=s, points=None, seconds=GUESS_S, source="guess"))
    return rows


def format_plan(rows: list[dict]) -> str:
    lines = [f"{'suite':20s} {'points':>6s} {'est s':>7s}  source"]
    for r in rows:
        pts = "" if r["points"] is None else str(r["points"])
        lines.append(f"{r['suite']:20s} {pts:>6s} {r['seconds']:7.1f}  {r['source']}")
    total = sum(r["seconds"] for r in rows)
    lines.append(f"total estimated {total:.0f} s ({total * SAFETY:.0f} s with x{SAFETY} safety)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibration.bench.plan", description=__doc__.splitlines()[0])
    p.add_argument("--suite", default=",".join(SUITES))
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    suites = [s for s in a.suite.split(",") if s and s != "all"] or list(SUITES)
    print(format_plan(plan_suites(suites, a.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
