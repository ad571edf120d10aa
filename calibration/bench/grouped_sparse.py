"""Grouped GEMM with empty groups (``grouped_mm_sparse_bf16.csv``).

``torch._grouped_mm`` (bf16, ragged CUTLASS, sm90; as ``grouped_gemm.run_grouped_mm``) over ``G``
groups of which only ``A`` are non-empty, with ``m`` tokens each: the expert GEMM of an MoE layer
with few tokens per rank, where most local experts receive nothing. The question the table
answers is the kernel's behaviour with empty groups: whether its time follows the active
groups' weight bytes (``weight_bytes_active``, ``gbps_active``) or all ``G`` groups', and what
an empty group costs. Active groups are spread evenly (``i + j*G/A``); repeated calls rotate the
offset ``i`` so they read different experts' weights (past the L2) out of one weight tensor.

Shapes: DeepSeek-V3 experts (gate_up N=4096 K=7168, down N=7168 K=2048) over 64 and 256 groups,
DeepSeek-V2-Lite experts (gate_up N=2816 K=2048, down N=2048 K=1408) over 16 and 64 groups;
``A`` = 1, 2, 4, .., G; ``m`` = 1, 4, 16. The kernel runs on CPU too (tests, tiny shapes).
"""

from __future__ import annotations

from calibration.bench.common import BenchContext, free_cuda, rotation_count, time_calls
from calibration.store import CsvTable

SHAPES = ((4096, 7168, (64, 256)), (7168, 2048, (64, 256)), (2816, 2048, (16, 64)), (2048, 1408, (16, 64)))
M_ACTIVE = (1, 4, 16)
QUICK_SHAPES = ((64, 32, (4, 8)),)
QUICK_M = (1, 3)
COLUMNS = ["groups", "active_groups", "m_per_active", "n", "k", "tokens", "weight_bytes_active", "seconds",
           "gbps_active", "tflops", "rotation", "method"]
KEY = ["groups", "active_groups", "m_per_active", "n", "k"]


def active_counts(groups: int, active: int, m: int, shift: int):
    """Tokens per group: ``m`` in the ``active`` groups ``shift + j*groups/active``, else 0."""
    import numpy as np

    counts = np.zeros(groups, dtype=np.int64)
    counts[shift + np.arange(active) * (groups // active)] = m
    return counts


def points(ctx: BenchContext) -> list[tuple[int, int, int, int, int]]:
    """(n, k, groups, active, m) of the grid, active = 1, 2, 4, .., groups."""
    out = []
    for n, k, gs in QUICK_SHAPES if ctx.quick else SHAPES:
        for g in gs:
            actives = [2**i for i in range(g.bit_length()) if 2**i <= g]
            out += [(n, k, g, a, m) for a in actives for m in (QUICK_M if ctx.quick else M_ACTIVE)]
    return out


def plan(ctx: BenchContext) -> list[tuple[float, float, float]]:
    """(FLOPs, bytes, setup bytes) per point, for ``calibration.bench.plan``."""
    out, last = [], None
    for n, k, g, a, m in points(ctx):
        setup = 2.0 * g * n * k if (n, k, g) != last else 0.0
        last = (n, k, g)
        out.append((2.0 * a * m * n * k, 2.0 * a * n * k + 2.0 * a * m * (n + k), setup))
    return out


def run(ctx: BenchContext) -> None:
    import numpy as np
    import torch

    from calibration.bench.grouped_gemm import grouped_mm_call

    if not hasattr(torch, "_grouped_mm"):
        ctx.log("grouped_mm_sparse: torch._grouped_mm unavailable here; skipped")
        return
    table = CsvTable(ctx.out_dir / "grouped_mm_sparse_bf16.csv", COLUMNS, KEY)
    dev = torch.device(ctx.device)
    done, w, w_key = 0, None, None
    for n, k, g, a, m in points(ctx):
        if table.has(groups=g, active_groups=a, m_per_active=m, n=n, k=k):
            continue
        if ctx.out_of_time():
            ctx.log("grouped_mm_sparse: time budget reached")
            return
        if w_key != (n, k, g):  # [G, N, K] viewed [G, K, N]: the column-major B operand
            w = None
            free_cuda()
            w = torch.randn(g, n, k, device=dev, dtype=torch.bfloat16).transpose(-2, -1)
            w_key = (n, k, g)
        active_bytes = 2.0 * a * n * k
        nrot = min(g // a, rotation_count(active_bytes + 2.0 * a * m * (k + n), ctx))
        fns = []
        for shift in range(nrot):
            offs = torch.as_tensor(np.cumsum(active_counts(g, a, m, shift)), device=dev, dtype=torch.int32)
            x = torch.randn(a * m, k, device=dev, dtype=torch.bfloat16)
            fns.append(grouped_mm_call(x, w, offs, torch.bfloat16))
        try:
            seconds, method = time_calls(fns, ctx)
        except Exception as exc:  # noqa: BLE001 - log the shape and go on with the grid
            ctx.log(f"grouped_mm_sparse g={g} a={a} m={m} n={n} k={k}: {type(exc).__name__}: {exc}")
            continue
        table.append(dict(groups=g, active_groups=a, m_per_active=m, n=n, k=k, tokens=a * m,
                          weight_bytes_active=active_bytes, seconds=seconds,
                          gbps_active=active_bytes / seconds / 1e9,
                          tflops=2.0 * a * m * n * k / seconds / 1e12, rotation=nrot,
                          method=method + "_grouped_mm"))
        done += 1
    w = None
    free_cuda()
    ctx.log(f"grouped_mm_sparse: {done} points measured, {len(table)} in table")
