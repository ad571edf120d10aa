"""Collective suite: NCCL (GPUs) or gloo (CPU tests) collectives on groups of 2..N ranks.

Runs on every rank of a process group (``calibration.bench.dist``: under ``torchrun``, or one
spawned process per GPU). Ops: ``all_reduce``, ``all_gather``, ``reduce_scatter``,
``all_to_all`` (``all_to_all_single``), ``send_recv`` (rank 0 -> rank 1); 4 KiB .. 1 GiB;
groups of the first g ranks, g = 2, 4, ... N (send_recv: the pair only).

Message convention (``bytes_per_rank``) is nccl-tests' "size", the one ``hardware.collectives``
uses, so the cost model reads the table at the same bytes it would model: all_reduce - the
buffer each rank holds; all_gather - the gathered output (each rank contributes 1/g);
reduce_scatter - each rank's input (output 1/g); all_to_all - each rank's whole send buffer;
send_recv - the message. ``algbw = bytes_per_rank / seconds``; ``busbw`` as nccl-tests
(all_reduce x 2(g-1)/g; all_gather, reduce_scatter, all_to_all x (g-1)/g; send_recv x 1).

Tables ``collective_<op>.csv`` keyed by (fabric, group, bytes_per_rank); ``seconds`` is the
CUDA-graph replay where capture works (``method``), ``seconds_eager`` the eager time.
"""

from __future__ import annotations

from calibration.bench.common import BenchContext
from calibration.store import CsvTable
from calibration.bench.dist import Comm, group_sizes, time_collective  # noqa: F401 (group_sizes re-exported)

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
SIZES = tuple(4096 * 4**i for i in range(10))  # 4 KiB .. 1 GiB
QUICK_SIZES = (4096, 65536)
COLUMNS = ["fabric", "group", "bytes_per_rank", "seconds", "seconds_eager", "algbw", "busbw", "method", "backend"]
KEY = ["fabric", "group", "bytes_per_rank"]


def bus_factor(op: str, group: int) -> float:
    """nccl-tests bus-bandwidth factor relative to ``bytes_per_rank / seconds``."""
    g = group
    return {"all_reduce": 2 * (g - 1) / g, "all_gather": (g - 1) / g, "reduce_scatter": (g - 1) / g,
            "all_to_all": (g - 1) / g, "send_recv": 1.0}[op]


def measure(ctx: BenchContext, comm: Comm) -> None:
    """Every rank calls this; rank 0 decides what is left (resume, time budget) and writes."""
    sizes = QUICK_SIZES if ctx.quick else SIZES
    for op in OPS:
        table = CsvTable(ctx.out_dir / f"collective_{op}.csv", COLUMNS, KEY) if comm.rank == 0 else None
        groups = [2] if op == "send_recv" else list(comm.groups)
        todo = [(g, s) for g in groups for s in sizes]
        flags = [0.0] * (len(todo) + 1)
        if comm.rank == 0:
            flags = [float(table.has(fabric=comm.fabric(g), group=g, bytes_per_rank=s)) for g, s in todo]
            flags.append(float(ctx.out_of_time()))
        flags = comm.broadcast(flags)
        if flags[-1]:
            ctx.log("collectives: time budget reached")
            return
        done = 0
        for (g, s), have in zip(todo, flags):
            if have:
                continue
            res, method = [-2.0, 0.0], ""
            if comm.rank < g:
                try:
                    seconds, eager, method = _time_op(op, s, g, comm, ctx)
                    res = [seconds, eager]
                except Exception as exc:  # e.g. a backend without this collective
                    if comm.rank == 0:
                        ctx.log(f"collective {op} g={g}: skipped, {type(exc).__name__}: {str(exc)[:160]}")
                    res = [-1.0, 0.0]
            res = comm.broadcast(res)
            if res[0] == -1.0:  # unsupported on this backend: skip its other sizes and groups
                break
            if comm.rank == 0:  # rank 0 is in every group; its method is the group's (agreed)
                seconds, eager = res
                algbw = s / seconds
                table.append(dict(fabric=comm.fabric(g), group=g, bytes_per_rank=s, seconds=seconds,
                                  seconds_eager=eager, algbw=algbw, busbw=algbw * bus_factor(op, g),
                                  method=method, backend=comm.backend))
                done += 1
        if comm.rank == 0:
            ctx.log(f"collective_{op}: {done} points measured, {len(table)} in table")


def _time_op(op: str, nbytes: int, g: int, comm: Comm, ctx: BenchContext) -> tuple[float, float, str]:
    import torch
    import torch.distributed as dist

    group, dev, rank = comm.groups[g], comm.device, comm.rank
    dtype = torch.bfloat16 if comm.cuda else torch.float32
    elt = 2 if comm.cuda else 4
    n = max(g, nbytes // elt)
    n -= n % g
    if op == "all_reduce":
        x = torch.randn(n, device=dev, dtype=dtype)
        fn = lambda: dist.all_reduce(x, group=group)  # noqa: E731
    elif op == "all_gather":  # n elements gathered: each rank contributes n / g
        x = torch.randn(n // g, device=dev, dtype=dtype)
        out = torch.empty(n, device=dev, dtype=dtype)
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # torch >= 2.13 / older
        fn = lambda: gather(out, x, group=group)  # noqa: E731
    elif op == "reduce_scatter":
        x = torch.randn(n, device=dev, dtype=dtype)
        out = torch.empty(n // g, device=dev, dtype=dtype)
        scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        fn = lambda: scatter(out, x, group=group)  # noqa: E731
    elif op == "all_to_all":
        x = torch.randn(n, device=dev, dtype=dtype)
        out = torch.empty_like(x)
        fn = lambda: dist.all_to_all_single(out, x, group=group)  # noqa: E731
    elif op == "send_recv":
        x = torch.randn(n, device=dev, dtype=dtype)

        def fn():
            if rank == 0:
                dist.send(x, dst=1, group=group)
            else:
                dist.recv(x, src=0, group=group)
    else:
        raise ValueError(f"collective {op!r} unknown (valid: {', '.join(OPS)})")
    return time_collective(fn, comm, group, ctx, nbytes)
