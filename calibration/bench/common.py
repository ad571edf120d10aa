"""Shared machinery for the microbenchmarks: the run context and timing (their resumable CSV
tables are ``calibration.store.CsvTable``).

Timing follows the workplace method: warm up first; on CUDA time with CUDA events and take
the median of several repeats; when one call is short enough that launch overhead would
dominate (``GRAPH_THRESHOLD_S``: now every call), capture calls in a CUDA graph and time its
replays; rotate among several input sets whose total exceeds the L2 cache so repeated calls
do not measure the cache. On CPU (tests) the host clock ``time.perf_counter`` is used.
torch is imported lazily, inside functions.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

if TYPE_CHECKING:
    from calibration.store import CsvTable

# Every call is timed as a CUDA-graph replay when it can be captured: that is how whole-model
# ground truth and graph-launched serving steps run them, and eager timing of long calls was
# measured 30% slower than replay for decode attention (profile of 2026-11-28 23:01Z).
GRAPH_THRESHOLD_S = float("inf")
L2_ROTATION_BYTES = 192e6  # rotate input sets until this many bytes are touched (H200 L2 = 60 MB)
MAX_ROTATION = 16


@dataclass
class BenchContext:
    """Where and how a suite runs. ``deadline_s`` is a ``time.monotonic()`` value (or None)."""

    out_dir: Path
    device: str = "cuda"
    quick: bool = False
    deadline_s: float | None = None
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))

    def time_left_s(self) -> float:
        return math.inf if self.deadline_s is None else self.deadline_s - time.monotonic()

    def out_of_time(self) -> bool:
        return self.time_left_s() <= 0

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")


def rotation_count(bytes_per_set: float, ctx: BenchContext) -> int:
    """How many input sets to rotate so repeated calls touch more than the L2 cache."""
    if not ctx.is_cuda or bytes_per_set <= 0:
        return 1
    return int(max(1, min(MAX_ROTATION, math.ceil(L2_ROTATION_BYTES / bytes_per_set))))


def time_calls(fns: Sequence[Callable[[], object]], ctx: BenchContext, *, use_graph: bool = True,
               target_s: float = 0.15) -> tuple[float, str]:
    """Median seconds of one call, rotating over ``fns`` (same work, different buffers).

    Returns (seconds, method) where method is "cuda_graph", "cuda_events" or "perf_counter".
    """
    fns = list(fns)
    if not ctx.is_cuda:
        return _time_cpu(fns, ctx), "perf_counter"
    import torch

    for f in fns:  # warm-up: module load, cuBLAS handles, autotuning
        f()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for f in fns:
        f()
    end.record()
    end.synchronize()
    est_s = start.elapsed_time(end) * 1e-3 / len(fns)

    if use_graph and est_s < GRAPH_THRESHOLD_S:
        try:
            return _time_graph(fns, est_s, ctx), "cuda_graph"
        except Exception as exc:  # capture can fail for some ops; fall back to a timed loop
            ctx.log(f"  graph capture failed ({type(exc).__name__}: {exc}); timing eager loop")
            torch.cuda.synchronize()
            return _time_loop(fns, est_s, ctx), "cuda_events_loop"

    # long calls: back-to-back launches, so host-side launch cost overlaps the previous call
    # (timing one call between two events charges its launch latency to the GPU time)
    return _time_loop(fns, est_s, ctx), "cuda_events_loop"


def event_median_s(call: Callable[[], object], n: int) -> float:
    """Median seconds of ``n`` calls of ``call``, each between two CUDA events (synchronised after)."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(n):
        start.record()
        call()
        end.record()
        end.synchronize()
        ts.append(start.elapsed_time(end) * 1e-3)
    return statistics.median(ts)


def capture_graph(fns: Sequence[Callable[[], object]], calls: int):
    """A CUDA graph of ``calls`` calls rotating over ``fns``, each run once first on a side stream (as
    capture requires), replayed once (warm)."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for f in fns:
            f()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fns[i % len(fns)]()
    graph.replay()
    torch.cuda.synchronize()
    return graph


def kernel_rows(fn, steps: int = 3) -> list[tuple[str, float]]:
    """[(kernel name, median device us)] for one call of ``fn``, in launch order (``torch.profiler``'s
    CUDA records of ``steps`` calls, copies left out)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    runs = []
    for _ in range(steps):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        ev = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        ev.sort(key=lambda e: e.time_range.start)
        runs.append([(e.name, e.time_range.elapsed_us()) for e in ev if "Memcpy" not in e.name])
    n = min(len(r) for r in runs)
    out = []
    for i in range(n):
        out.append((runs[0][i][0], statistics.median(r[i][1] for r in runs)))
    return out


def _time_graph(fns, est_s: float, ctx: BenchContext) -> float:
    import torch

    inner = max(len(fns), int(math.ceil(2e-3 / max(est_s, 1e-7))))
    inner = min(inner, 400)
    inner = int(math.ceil(inner / len(fns)) * len(fns))
    graph = capture_graph(fns, inner)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    reps = 3 if ctx.quick else int(min(11, max(3, 0.2 / max(est_s * inner, 1e-9))))
    for _ in range(reps):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3 / inner)
    del graph
    return statistics.median(times)


def _time_loop(fns, est_s: float, ctx: BenchContext) -> float:
    import torch

    inner = min(400, max(len(fns), int(math.ceil(2e-3 / max(est_s, 1e-7)))))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    reps = 3 if ctx.quick else int(min(11, max(3, 0.2 / max(est_s * inner, 1e-9))))
    for _ in range(reps):
        fns[-1]()  # keep the GPU busy while the timed launches queue up behind it
        start.record()
        for i in range(inner):
            fns[i % len(fns)]()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3 / inner)
    return statistics.median(times)


def _time_cpu(fns, ctx: BenchContext) -> float:
    fns[0]()
    times = []
    for r in range(3 if ctx.quick else 7):
        f = fns[r % len(fns)]
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def log_grid(lo: int, hi: int, per_octave: int = 1) -> list[int]:
    """Integers from lo to hi spaced evenly in log2 (powers of two when per_octave=1)."""
    out = []
    steps = int(round(math.log2(hi / lo) * per_octave))
    for i in range(steps + 1):
        v = int(round(lo * 2 ** (i / per_octave)))
        if not out or v != out[-1]:
            out.append(v)
    return out


def free_cuda() -> None:
    """Release cached blocks between points with very different footprints."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
            "fp8": torch.float8_e4m3fn}[name]


def iter_points(points: Iterable[dict], table: "CsvTable", key_fields: Sequence[str]):
    """Yield the points not yet in ``table`` (resume)."""
    for p in points:
        if not table.has(**{k: p[k] for k in key_fields}):
            yield p
