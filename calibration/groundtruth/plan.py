"""Device-time plan of a ground-truth run, sized from each point's operators (no torch).

Each point's step is sized with ``workloads`` (FLOPs, bytes, kernel launches of the same
operator list the predictor costs) at round H200 rates - ``PEAK_FLOPS_PER_S`` and
``HBM_BYTES_PER_S`` added, not overlapped, plus a per-kernel launch cost - and its measurement
cost is the number of steps :func:`calibration.groundtruth.common.time_step` runs (two warm-ups,
the eager repeats, one side-stream run, one capture, the graph replays) plus allocating its
caches. A model build costs its weight bytes at ``RANDN_BYTES_PER_S``. ``SAFETY`` covers
kernels far below the roofline (e.g. MLA decode attention at batch 1). Printed before a run so
the device budget can be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from calibration.groundtruth.cases import Case
from calibration.groundtruth.workload import row_ops

PEAK_FLOPS_PER_S = 700e12
HBM_BYTES_PER_S = 4e12
GRAPH_LAUNCH_S = 2e-6  # per kernel inside a graph replay
EAGER_LAUNCH_S = 8e-6  # per kernel launched from Python
CAPTURE_S = 10e-6  # per kernel recorded into a graph
RANDN_BYTES_PER_S = 0.5e12  # random initialization of weights and caches
BUILD_FIXED_S = 2.0
POINT_FIXED_S = 0.05
SAFETY = 1.5


@dataclass(frozen=True)
class PointPlan:
    graph_s: float
    eager_s: float
    measure_s: float
    weight_bytes: float


def plan_point(case: Case, point: dict) -> PointPlan:
    """Estimated step times and measuring cost of one point (see the module docstring)."""
    work = row_ops(case.table.file, point)
    ops = [o for o in work.ops if o.stream != "comm"]
    flops = sum(o.flops * o.count for o in ops)
    nbytes = sum(o.bytes_moved * o.count for o in ops)
    kernels = sum(o.count for o in ops)
    cache = sum(float(o.meta.get("kv_read_bytes", 0.0)) * o.count for o in ops)
    weights = sum(float(o.meta.get("weight_bytes", 0.0)) * o.count for o in ops)
    graph = flops / PEAK_FLOPS_PER_S + nbytes / HBM_BYTES_PER_S + kernels * GRAPH_LAUNCH_S
    eager = max(graph, kernels * EAGER_LAUNCH_S)
    eager_runs = 3 + (case.eager_repeats or case.repeats)
    measure = (eager_runs * eager + kernels * CAPTURE_S + (1 + case.repeats) * graph
               + cache / RANDN_BYTES_PER_S + POINT_FIXED_S)
    return PointPlan(graph, eager, measure, weights)


def plan_cases(cases: list[Case]) -> list[dict]:
    """One row per case: points, the longest step, estimated seconds (build + points)."""
    rows, last_model = [], None
    for case in cases:
        plans = [plan_point(case, p) for p in case.points]
        build = 0.0
        if case.model != last_model and plans:
            build = BUILD_FIXED_S + max(p.weight_bytes for p in plans) / RANDN_BYTES_PER_S
        last_model = case.model
        rows.append(dict(part=case.part, table=case.table.file, model="/".join(map(str, case.model)),
                         points=len(plans), max_step_ms=max((p.graph_s for p in plans), default=0.0) * 1e3,
                         seconds=build + sum(p.measure_s for p in plans)))
    return rows


def format_plan(rows: list[dict]) -> str:
    total = sum(r["seconds"] for r in rows)
    lines = [f"{'part':12s} {'table':26s} {'model':30s} {'pts':>4s} {'max step':>10s} {'est s':>7s}"]
    for r in rows:
        lines.append(f"{r['part']:12s} {r['table']:26s} {r['model']:30s} {r['points']:4d} "
                     f"{r['max_step_ms']:8.2f}ms {r['seconds']:7.1f}")
    lines.append(f"total {sum(r['points'] for r in rows)} points, estimated {total:.0f} s "
                 f"({total * SAFETY:.0f} s with x{SAFETY} safety)")
    return "\n".join(lines)
