"""Multi-rank plumbing of the distributed suites (``collectives``, ``moe_dispatch``).

Launch: under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the environment) every
rank runs ``calibration.run`` and joins one process group (env rendezvous); otherwise
:func:`spawn` starts one process per GPU (or ``world`` gloo processes on CPU, for tests) with a
file rendezvous. NCCL on GPUs, gloo on CPU. NVLink multicast (NVLS) stays off.

:class:`Comm` holds what a suite needs on each rank: rank, world, device, the groups of the
first ``g`` ranks for ``g`` in 2, 4, ... N, and each group's fabric label. Fabric labels key
the tables (CONVENTIONS: communication keyed by fabric and group size) and must match a
catalog tier's ``technology``: groups inside one node are ``nvlink`` (``nvidia-smi topo -m``
shows NV# links) or ``pcie``; groups that span nodes are ``ib``; gloo is ``gloo``.
``CLUSTERSIM_FABRIC`` / ``CLUSTERSIM_SCALE_OUT_FABRIC`` override the intra- and inter-node
labels (e.g. ``roce``).

:func:`time_collective` times one collective on every rank of its group: eager (host clock
around back-to-back calls, median of repeats) and, on CUDA, as the replay of a CUDA graph that
captured the calls (how serving steps launch them); the slowest rank sets each time.
``CLUSTERSIM_COLLECTIVE_GRAPHS=0`` skips the capture (eager only), should a driver or NCCL
version fail at it in a way the fallback does not catch.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from calibration.bench.common import BenchContext


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun job."""

    rank: int
    world: int
    local_rank: int
    local_world: int


def torchrun_launch() -> Launch | None:
    """The torchrun environment of this process, or None when not launched by torchrun (or 1 rank)."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env or int(env["WORLD_SIZE"]) < 2:
        return None
    world = int(env["WORLD_SIZE"])
    return Launch(int(env["RANK"]), world, int(env.get("LOCAL_RANK", env["RANK"])),
                  int(env.get("LOCAL_WORLD_SIZE", world)))


def disable_multicast() -> None:
    """NVLink multicast off before any process group exists (the device's KINDS.md)."""
    os.environ["NCCL_NVLS_ENABLE"] = "0"
    os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
    os.environ.setdefault("NVSHMEM_DISABLE_NVLS", "1")


def group_sizes(world: int) -> list[int]:
    """2, 4, 8, ... up to ``world``, and ``world`` itself."""
    sizes, g = [], 2
    while g <= world:
        sizes.append(g)
        g *= 2
    if world >= 2 and world not in sizes:
        sizes.append(world)
    return sizes


def intra_node_fabric(cuda: bool) -> str:
    """Fabric label of groups inside one node."""
    if os.environ.get("CLUSTERSIM_FABRIC"):
        return os.environ["CLUSTERSIM_FABRIC"]
    if not cuda:
        return "gloo"
    try:
        out = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "pcie"
    rows = [line.split() for line in out.splitlines() if line.startswith("GPU")]
    return "nvlink" if any(c.startswith("NV") for r in rows for c in r[1:]) else "pcie"


@dataclass
class Comm:
    """A suite's view of the process group on one rank."""

    rank: int
    world: int
    local_world: int
    backend: str
    device: Any  # torch.device
    intra_fabric: str
    groups: dict[int, Any] = field(default_factory=dict)  # g -> process group of ranks 0..g-1

    def fabric(self, g: int) -> str:
        if g <= self.local_world:
            return self.intra_fabric
        return os.environ.get("CLUSTERSIM_SCALE_OUT_FABRIC", "ib")

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def agree(self, values: Sequence[float], op: str = "max") -> list[float]:
        """Element-wise max (or min) of ``values`` over all ranks."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], device=self.device, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.MIN)
        return [float(v) for v in t.tolist()]

    def broadcast(self, values: Sequence[float]) -> list[float]:
        """Rank 0's ``values`` on every rank (others pass placeholders of the same length)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], device=self.device, dtype=torch.float64)
        dist.broadcast(t, src=0)
        return [float(v) for v in t.tolist()]


def make_comm(device: str, local_world: int) -> Comm:
    """The Comm of an initialised process group (all ranks create the same groups, in order)."""
    import torch
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    dev = torch.device(device)
    comm = Comm(rank, world, min(local_world, world), dist.get_backend(), dev, intra_node_fabric(dev.type == "cuda"))
    for g in group_sizes(world):
        comm.groups[g] = dist.group.WORLD if g == world else dist.new_group(list(range(g)))
    return comm


def run_ranks(ctx: BenchContext, runners: Sequence[tuple[str, Callable]], device: str, local_world: int,
              on_done: Callable[[str], None] | None = None) -> None:
    """Every rank calls this inside an initialised process group: each runner ``fn(ctx, comm)``
    in turn, all ranks together; only rank 0 writes tables (the runners see ``comm.rank``)."""
    import torch.distributed as dist

    comm = make_comm(device, local_world)
    for name, fn in runners:
        fn(ctx, comm)
        dist.barrier()
        if on_done is not None:
            on_done(name)


def spawn(ctx: BenchContext, runners: Sequence[str], world: int) -> None:
    """One process per rank (``torch.multiprocessing.spawn``), file rendezvous; ``runners``
    are ``"module:function"`` paths (picklable). Raises if any rank fails."""
    import torch.multiprocessing as mp

    disable_multicast()
    left = None if ctx.deadline_s is None else max(0.0, ctx.time_left_s())
    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{Path(tmp) / 'rendezvous'}"
        mp.spawn(_spawned, args=(world, ctx.device, str(ctx.out_dir), ctx.quick, init, left, tuple(runners)),
                 nprocs=world, join=True)


def _spawned(rank: int, world: int, device: str, out_dir: str, quick: bool, init: str,
             left: float | None, runners: tuple[str, ...]) -> None:
    import torch
    import torch.distributed as dist

    from calibration.bench import REGISTRY

    disable_multicast()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=init, rank=rank, world_size=world)
    try:
        ctx = BenchContext(out_dir=Path(out_dir), device=f"cuda:{rank}" if cuda else "cpu", quick=quick,
                           deadline_s=None if left is None else time.monotonic() + left)
        if rank:
            ctx.log = lambda msg: None
        run_ranks(ctx, [(n, REGISTRY[n].load()) for n in runners], ctx.device, world)
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- timing


def time_collective(fn: Callable[[], object], comm: Comm, group: Any, ctx: BenchContext,
                    payload_bytes: float) -> tuple[float, float, str]:
    """(seconds, seconds_eager, method) of one call of ``fn`` on every rank of ``group``.

    Only the ranks of ``group`` call this. ``seconds`` is the CUDA-graph replay time where every
    rank captured the calls (method ``cuda_graph``), else the eager time (``eager`` on CUDA,
    ``perf_counter`` on CPU). Each is the median over repeats, then the slowest rank's.
    """
    import torch
    import torch.distributed as dist

    sync = torch.cuda.synchronize if comm.cuda else (lambda: None)
    for _ in range(2 if ctx.quick else 5):  # communicator set-up, first touch
        fn()
    sync()
    eager = _eager_s(fn, group, ctx, sync, payload_bytes)
    graph, method = None, "perf_counter"
    if comm.cuda and os.environ.get("CLUSTERSIM_COLLECTIVE_GRAPHS", "1") != "0":
        graph, method = _graph_s(fn, group, ctx, eager)
    elif comm.cuda:
        method = "eager"
    t = torch.tensor([eager, graph if graph is not None else eager], device=comm.device, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return float(t[1].item()), float(t[0].item()), method


def _eager_s(fn, group, ctx, sync, payload_bytes: float) -> float:
    import torch.distributed as dist

    iters = 2 if ctx.quick else (20 if payload_bytes < 2**26 else 5)
    times = []
    for _ in range(3 if ctx.quick else 7):
        dist.barrier(group=group)
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / iters)
    return statistics.median(times)


def _graph_s(fn, group, ctx, eager_s: float) -> tuple[float | None, str]:
    """Capture ``inner`` calls in a CUDA graph and time replays; (None, reason) if any rank fails."""
    import torch
    import torch.distributed as dist

    inner = int(min(100, max(1, math.ceil(2e-3 / max(eager_s, 1e-7)))))
    graph = torch.cuda.CUDAGraph()
    ok = 1.0
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        # thread_local: the NCCL watchdog thread may query events while this thread captures
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            for _ in range(inner):
                fn()
    except Exception as exc:  # capture unsupported for this op / backend: eager only
        ok = 0.0
        ctx.log(f"  graph capture failed ({type(exc).__name__}: {str(exc)[:120]}); eager time used")
        torch.cuda.synchronize()
    flag = torch.tensor([ok], device=torch.cuda.current_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=group)
    if flag.item() < 1:
        return None, "eager"
    graph.replay()  # first replay: lazy set-up
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(3 if ctx.quick else 7):
        dist.barrier(group=group)
        torch.cuda.synchronize()
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3 / inner)
    del graph
    return statistics.median(times), "cuda_graph"
