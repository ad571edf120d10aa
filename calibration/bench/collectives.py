"""Collective suite through ``torch.distributed``: NCCL on GPUs, gloo on CPU (tests).

One process per rank, started with ``torch.multiprocessing.spawn`` (file-based rendezvous)
or under ``torchrun`` (env rendezvous). NVLink multicast (NVLS) stays off:
``NCCL_NVLS_ENABLE=0`` is forced before any process group exists.

Message convention (``bytes_per_rank``), chosen to match ``Op.bytes_per_rank``:
all_reduce - the buffer each rank holds; all_gather - each rank's input (output is group x);
reduce_scatter - each rank's input (output is 1/group); all_to_all - each rank's whole send
buffer (``all_to_all_single``); send_recv - the message of each pair (even rank -> odd rank).
``algbw = bytes_per_rank / seconds``; ``busbw`` follows nccl-tests (all_reduce 2(g-1)/g,
all_gather on the gathered size x (g-1)/g, reduce_scatter / all_to_all x (g-1)/g, send_recv 1).
Groups are the first g ranks for g in 2, 4, ... up to the world size.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from calibration.bench.common import BenchContext, CsvTable

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
SIZES = tuple(4096 * 4**i for i in range(10))  # 4 KiB .. 1 GiB
QUICK_SIZES = (4096, 65536)
COLUMNS = ["group", "bytes_per_rank", "seconds", "algbw", "busbw", "backend"]
KEY = ["group", "bytes_per_rank"]


def bus_factor(op: str, group: int) -> float:
    """nccl-tests bus-bandwidth factor relative to ``bytes_per_rank / seconds``."""
    g = group
    return {"all_reduce": 2 * (g - 1) / g, "all_gather": float(g - 1), "reduce_scatter": (g - 1) / g,
            "all_to_all": (g - 1) / g, "send_recv": 1.0}[op]


def group_sizes(world: int) -> list[int]:
    sizes, g = [], 2
    while g <= world:
        sizes.append(g)
        g *= 2
    if world >= 2 and world not in sizes:
        sizes.append(world)
    return sizes


def run(ctx: BenchContext, world_size: int | None = None) -> None:
    """Spawn one process per GPU (NCCL) or ``world_size`` CPU processes (gloo)."""
    os.environ["NCCL_NVLS_ENABLE"] = "0"
    os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
    os.environ.setdefault("NVSHMEM_DISABLE_NVLS", "1")
    import torch
    import torch.multiprocessing as mp

    if ctx.is_cuda:
        world = world_size or torch.cuda.device_count()
        if world < 2:
            ctx.log("collectives: fewer than 2 GPUs here; skipped (owed on a multi-GPU machine)")
            return
    else:
        world = world_size or 2
    deadline_left = None if ctx.deadline_s is None else max(0.0, ctx.time_left_s())
    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{Path(tmp) / 'rendezvous'}"
        mp.spawn(_worker, args=(world, ctx.device, str(ctx.out_dir), ctx.quick, init, deadline_left),
                 nprocs=world, join=True)


def _worker(rank: int, world: int, device: str, out_dir: str, quick: bool, init: str,
            deadline_left: float | None) -> None:
    import torch
    import torch.distributed as dist

    os.environ["NCCL_NVLS_ENABLE"] = "0"
    cuda = device.startswith("cuda")
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=init, rank=rank, world_size=world)
    try:
        ctx = BenchContext(out_dir=Path(out_dir), device=f"cuda:{rank}" if cuda else "cpu", quick=quick,
                           deadline_s=None if deadline_left is None else time.monotonic() + deadline_left)
        measure_all(ctx, rank, world, backend)
    finally:
        dist.barrier()
        dist.destroy_process_group()


def measure_all(ctx: BenchContext, rank: int, world: int, backend: str) -> None:
    """Every rank calls this; rank 0 writes the tables."""
    import torch
    import torch.distributed as dist

    dev = torch.device(ctx.device)
    groups = {g: (dist.new_group(list(range(g))) if g < world else dist.group.WORLD)
              for g in group_sizes(world)}
    sizes = QUICK_SIZES if ctx.quick else SIZES
    for op in OPS:
        table = CsvTable(ctx.out_dir / f"collective_{op}.csv", COLUMNS, KEY) if rank == 0 else None
        todo = [(g, s) for g in groups for s in sizes]
        flag = torch.zeros(len(todo) + 1, device=dev)
        if rank == 0:  # rank 0 decides what is left (resume) and whether time is up
            for i, (g, s) in enumerate(todo):
                flag[i] = float(table.has(group=g, bytes_per_rank=s))
            flag[-1] = float(ctx.out_of_time())
        dist.broadcast(flag, src=0)
        if flag[-1].item():
            return
        for i, (g, s) in enumerate(todo):
            if flag[i].item():
                continue
            seconds = None
            if rank < g:
                try:
                    seconds = _time_op(op, s, g, rank, groups[g], dev, ctx)
                except Exception as exc:  # e.g. gloo lacks reduce_scatter_tensor
                    if rank == 0:
                        ctx.log(f"collective {op} g={g}: {type(exc).__name__}: {str(exc)[:160]}")
                    seconds = -1.0
            res = torch.tensor([seconds if seconds is not None else -2.0], device=dev)
            dist.broadcast(res, src=0)
            if rank == 0 and res.item() > 0:
                t = res.item()
                algbw = s / t
                table.append(dict(group=g, bytes_per_rank=s, seconds=t, algbw=algbw,
                                  busbw=algbw * bus_factor(op, g), backend=backend))
            dist.barrier()
            if res.item() == -1.0:  # this op is unsupported on this backend: skip its other sizes
                break


def _time_op(op: str, nbytes: int, g: int, rank: int, group, dev, ctx: BenchContext) -> float:
    import torch
    import torch.distributed as dist

    n = max(g, nbytes // 2)
    n -= n % g
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    if dev.type != "cuda":
        n = max(g, nbytes // 4 - (nbytes // 4) % g)
    x = torch.randn(n, device=dev, dtype=dtype)
    if op == "all_reduce":
        fn = lambda: dist.all_reduce(x, group=group)
    elif op == "all_gather":
        out = torch.empty(n * g, device=dev, dtype=dtype)
        fn = lambda: dist.all_gather_into_tensor(out, x, group=group)
    elif op == "reduce_scatter":
        out = torch.empty(n // g, device=dev, dtype=dtype)
        fn = lambda: dist.reduce_scatter_tensor(out, x, group=group)
    elif op == "all_to_all":
        out = torch.empty_like(x)
        fn = lambda: dist.all_to_all_single(out, x, group=group)
    elif op == "send_recv":
        peer = rank + 1 if rank % 2 == 0 else rank - 1

        if g % 2:
            raise ValueError("send_recv pairs ranks; the group size must be even")

        def fn():  # group ranks are the first g global ranks, so peer ids coincide
            if rank % 2 == 0:
                dist.send(x, dst=peer, group=group)
            else:
                dist.recv(x, src=peer, group=group)
    else:
        raise ValueError(f"collective {op!r} unknown (valid: {', '.join(OPS)})")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(2 if ctx.quick else 5):  # warm-up: communicator setup, first-touch
        fn()
    sync()
    iters = 2 if ctx.quick else (20 if nbytes < 2**26 else 5)
    times = []
    for _ in range(3 if ctx.quick else 7):
        dist.barrier(group=group)
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / iters)
    t = torch.tensor([statistics.median(times)], device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)  # slowest rank sets the time
    return float(t.item())
