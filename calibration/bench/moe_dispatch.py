"""MoE dispatch/combine suite: ``all_to_all_single`` with the uneven splits of top-k routing.

How a plain-torch expert-parallel MoE layer moves tokens (Megatron's all-to-all dispatcher):
every rank routes its ``T`` tokens uniformly at random to ``top_k`` distinct experts of ``E``
(experts split contiguously over the ``ep`` ranks of the group), sorts the (token, expert)
copies by destination rank and sends them with one ``all_to_all_single`` whose split sizes are
those counts (**dispatch**); the expert outputs come back along the transposed splits
(**combine**). Split sizes differ per rank and per step, as routing makes them.

Shapes: DeepSeek-V3 (hidden 7168, top-8 of 256) and DeepSeek-V2-Lite (hidden 2048, top-6 of
64); payloads: dispatch in fp8 (``hidden`` bytes plus one fp32 scale per 128 elements,
``hardware.dispatch.token_bytes``) and bf16, combine in bf16; ``T`` = 1 .. 8192 tokens per
rank; groups of 2, 4, ... N ranks that divide E. Routing is seeded per (group, T, rank).

Table ``moe_dispatch.csv`` keyed by (fabric, ep, hidden, top_k, experts, direction, dtype,
tokens_per_rank); ``seconds`` is CUDA-graph replay where capture works (``method``),
``seconds_eager`` eager; ``bytes_per_rank`` = T * top_k * bytes per copy (what each rank
sends), ``recv_bytes_max`` the most any rank received. ``simulator.costmodel`` reads it for
dispatch/combine ops of the same shape on the same fabric and group size.
"""

from __future__ import annotations

from dataclasses import dataclass

from calibration.bench.common import BenchContext
from calibration.store import CsvTable
from calibration.bench.dist import Comm, time_collective


@dataclass(frozen=True)
class MoeShape:
    model: str
    hidden: int
    top_k: int
    experts: int


SHAPES = (MoeShape("deepseek-v3", 7168, 8, 256), MoeShape("deepseek-v2-lite", 2048, 6, 64))
PAYLOADS = (("dispatch", "fp8"), ("dispatch", "bf16"), ("combine", "bf16"))
TOKENS = tuple(2**i for i in range(14))  # 1 .. 8192 tokens per rank
QUICK_TOKENS = (1, 16)
COLUMNS = ["fabric", "ep", "model", "hidden", "top_k", "experts", "direction", "dtype", "tokens_per_rank",
           "bytes_per_rank", "recv_bytes_max", "seconds", "seconds_eager", "method", "backend"]
KEY = ["fabric", "ep", "hidden", "top_k", "experts", "direction", "dtype", "tokens_per_rank"]


def copies_to_ranks(tokens: int, shape: MoeShape, ep: int, seed: tuple[int, ...]):
    """Copies this rank sends to each of the ``ep`` ranks under seeded uniform top-k routing."""
    import numpy as np

    rng = np.random.default_rng(np.random.SeedSequence(seed))
    choice = np.argpartition(rng.random((tokens, shape.experts)), shape.top_k - 1, axis=1)[:, :shape.top_k]
    return np.bincount((choice // (shape.experts // ep)).ravel(), minlength=ep)


def measure(ctx: BenchContext, comm: Comm) -> None:
    """Every rank calls this; rank 0 decides what is left (resume, time budget) and writes."""
    table = CsvTable(ctx.out_dir / "moe_dispatch.csv", COLUMNS, KEY) if comm.rank == 0 else None
    tokens = QUICK_TOKENS if ctx.quick else TOKENS
    todo = [(sh, g, d, dt, t) for sh in SHAPES for g in comm.groups if sh.experts % g == 0
            for d, dt in PAYLOADS for t in tokens]
    flags = [0.0] * (len(todo) + 1)
    if comm.rank == 0:
        flags = [float(table.has(fabric=comm.fabric(g), ep=g, hidden=sh.hidden, top_k=sh.top_k, experts=sh.experts,
                                 direction=d, dtype=dt, tokens_per_rank=t)) for sh, g, d, dt, t in todo]
        flags.append(float(ctx.out_of_time()))
    flags = comm.broadcast(flags)
    done = 0
    for i, ((sh, g, d, dt, t), have) in enumerate(zip(todo, flags)):
        if have:
            continue
        if comm.broadcast([float(ctx.out_of_time()) if comm.rank == 0 else 0.0])[0]:
            ctx.log("moe_dispatch: time budget reached")
            break
        res, method = [0.0, 0.0, 0.0], ""
        if comm.rank < g:
            seconds, eager, method, recv_bytes = _time_point(sh, g, d, dt, t, comm, ctx, seed=i)
            res = [seconds, eager, recv_bytes]
        res = comm.agree(res)  # ranks outside the group report zeros
        if comm.rank == 0:
            from hardware.dispatch import token_bytes

            table.append(dict(fabric=comm.fabric(g), ep=g, model=sh.model, hidden=sh.hidden, top_k=sh.top_k,
                              experts=sh.experts, direction=d, dtype=dt, tokens_per_rank=t,
                              bytes_per_rank=t * sh.top_k * token_bytes(sh.hidden, dt), recv_bytes_max=res[2],
                              seconds=res[0], seconds_eager=res[1], method=method, backend=comm.backend))
            done += 1
    if comm.rank == 0:
        ctx.log(f"moe_dispatch: {done} points measured, {len(table)} in table")


def _time_point(sh: MoeShape, g: int, direction: str, dtype: str, tokens: int, comm: Comm, ctx: BenchContext,
                seed: int) -> tuple[float, float, str, float]:
    """Time one all_to_all_single of this rank's routed copies; (seconds, eager, method, recv bytes)."""
    import torch
    import torch.distributed as dist

    from hardware.dispatch import token_bytes

    group = comm.groups[g]
    per_copy = int(token_bytes(sh.hidden, dtype))
    send = torch.as_tensor(copies_to_ranks(tokens, sh, g, (seed, g, tokens, comm.rank)), dtype=torch.int64)
    send_d, recv_d = send.to(comm.device), torch.empty(g, dtype=torch.int64, device=comm.device)
    dist.all_to_all_single(recv_d, send_d, group=group)  # split sizes, exchanged outside the timing
    recv = recv_d.cpu()
    if direction == "combine":  # expert outputs return along the transposed splits
        send, recv = recv, send
    in_splits = [int(c) * per_copy for c in send.tolist()]
    out_splits = [int(c) * per_copy for c in recv.tolist()]
    # bytes are bytes to the collective: uint8 buffers of the payload's size (fp8 + scales, bf16)
    x = torch.randint(0, 255, (sum(in_splits),), dtype=torch.uint8, device=comm.device)
    out = torch.empty(sum(out_splits), dtype=torch.uint8, device=comm.device)

    def fn():
        dist.all_to_all_single(out, x, output_split_sizes=out_splits, input_split_sizes=in_splits, group=group)

    seconds, eager, method = time_collective(fn, comm, group, ctx, sum(in_splits))
    return seconds, eager, method, float(sum(out_splits))
