"""Grouped GEMM suite for MoE experts (bf16).

Two implementations, two tables:

* ``grouped_gemm_bf16.csv``: padded ``torch.bmm`` (described below);
* ``grouped_mm_bf16.csv``: the ragged grouped GEMM ``torch._grouped_mm`` (CUTLASS, sm90) over
  ``x[G*m, K]`` with per-group offsets, measured with ``m`` tokens in every group; its time
  follows the total tokens, so the cost model looks it up at the mean tokens per group;
* ``grouped_mm_fp8.csv``: the FP8 ragged grouped GEMM ``torch._scaled_grouped_mm`` (CUTLASS,
  sm90; e4m3 operands, one fp32 scale per token row and per expert output column, BF16 out):
  the kernel class of an FP8 MoE (DeepGEMM's grouped GEMMs scale per 1x128 / 128x128 block
  instead), with ``m`` tokens in every group as ``grouped_mm_bf16.csv``;
* ``grouped_mm_routed_bf16.csv``: the same kernel with ragged groups as uniform routing makes
  them: ``m_per_group`` is the MEAN, the per-group counts are a seeded multinomial draw of
  ``G*m`` tokens over the G groups (``max_per_group`` records the busiest). The kernel picks its
  tile from the mean (torch: a 128-token config up to a mean of 128, a larger one above), and
  a group that spills over a tile boundary pays a whole tile, so this is what MoE layers run.

Implementation measured: ``torch.bmm`` over ``x[G, m, K] @ W[G, K, N]`` - every group (expert)
gets the same ``m`` tokens, i.e. the balanced case; an unbalanced step is timed by its busiest
group (``m_per_group``) as the cost model does. This is a padded batched GEMM, not a
ragged grouped-GEMM kernel (DeepGEMM / CUTLASS grouped); README.md discusses the gap.
Shapes: deepseek-v3 experts (gate_up N=4096 K=7168, down N=7168 K=2048) and
deepseek-v2-lite experts (hidden 2048, moe_inter 1408: gate_up N=2816 K=2048, down N=2048 K=1408).
"""

from __future__ import annotations

from calibration.bench.common import BenchContext, free_cuda, rotation_count, time_calls
from calibration.store import CsvTable

SHAPES = (
    (4096, 7168, "deepseek-v3 expert gate_up"),
    (7168, 2048, "deepseek-v3 expert down"),
    (2816, 2048, "deepseek-v2-lite expert gate_up"),
    (2048, 1408, "deepseek-v2-lite expert down"),
)
GROUPS = (8, 16, 32, 64)
M_GRID = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
          3072, 4096)
QUICK_SHAPES = ((256, 128, "tiny"),)
QUICK_GROUPS = (2, 4)
QUICK_M = (1, 8, 32)
MAX_FLOPS = 2.5e13
COLUMNS = ["groups", "m_per_group", "n", "k", "seconds", "tflops", "method"]
KEY = ["groups", "m_per_group", "n", "k"]


def run(ctx: BenchContext) -> None:
    import torch

    table = CsvTable(ctx.out_dir / "grouped_gemm_bf16.csv", COLUMNS, KEY)
    dev = torch.device(ctx.device)
    shapes = QUICK_SHAPES if ctx.quick else SHAPES
    groups_grid = QUICK_GROUPS if ctx.quick else GROUPS
    ms = QUICK_M if ctx.quick else M_GRID
    done = 0
    for n, k, _ in shapes:
        for g in groups_grid:
            weights = None
            for m in ms:
                flops = 2.0 * g * m * n * k
                if flops > MAX_FLOPS or table.has(groups=g, m_per_group=m, n=n, k=k):
                    continue
                if ctx.out_of_time():
                    ctx.log("grouped_gemm: time budget reached")
                    return
                nrot = rotation_count(2 * g * (m * k + k * n + m * n), ctx)
                if weights is None or len(weights) < nrot:
                    weights = [torch.randn(g, k, n, device=dev, dtype=torch.bfloat16)
                               for _ in range(nrot)]
                fns = []
                for i in range(nrot):
                    x = torch.randn(g, m, k, device=dev, dtype=torch.bfloat16)
                    out = torch.empty(g, m, n, device=dev, dtype=torch.bfloat16)
                    fns.append(lambda x=x, w=weights[i], out=out: torch.bmm(x, w, out=out))
                try:
                    seconds, method = time_calls(fns, ctx)
                except Exception as exc:
                    ctx.log(f"grouped_gemm g={g} m={m} n={n} k={k}: {type(exc).__name__}: {exc}")
                    continue
                table.append(dict(groups=g, m_per_group=m, n=n, k=k, seconds=seconds,
                                  tflops=flops / seconds / 1e12, method=method))
                done += 1
            weights = None
            free_cuda()
    ctx.log(f"grouped_gemm: {done} points measured, {len(table)} in table")
    run_grouped_mm(ctx)


def grouped_mm_call(x, w, offs, out_dtype):
    """``torch._grouped_mm`` of tokens ``x[T, K]`` (sorted by group) with ``w[G, K, N]``."""
    import torch

    return lambda: torch._grouped_mm(x, w, offs=offs, out_dtype=out_dtype)


def scaled_grouped_mm_call(x, w, offs):
    """``torch._scaled_grouped_mm`` of e4m3 tokens ``x[T, K]`` with e4m3 ``w[G, K, N]`` (column-major
    B), one fp32 scale per token row and per expert output column, BF16 out."""
    import torch

    scale_a = torch.ones(x.shape[0], device=x.device, dtype=torch.float32)
    scale_b = torch.ones(w.shape[0], w.shape[2], device=x.device, dtype=torch.float32)
    return lambda: torch._scaled_grouped_mm(x, w, scale_a, scale_b, offs=offs, out_dtype=torch.bfloat16)


def scaled_grouped_mm_supported(ctx: BenchContext) -> bool:
    """Whether ``torch._scaled_grouped_mm`` runs here (CUDA, compute capability 9.x)."""
    if not ctx.is_cuda:
        return False
    import torch

    return hasattr(torch, "_scaled_grouped_mm") and torch.cuda.get_device_capability()[0] == 9


def run_grouped_mm_fp8(ctx: BenchContext) -> None:
    """FP8 ragged grouped GEMM (``grouped_mm_fp8.csv``); skipped where torch or the GPU lacks it."""
    run_grouped_mm(ctx, dtype="fp8")


ROUTED_COLUMNS = ["groups", "m_per_group", "n", "k", "max_per_group", "seconds", "tflops", "method"]


def run_grouped_mm_routed(ctx: BenchContext, seed: int = 7) -> None:
    """``torch._grouped_mm`` over routed (multinomial) group sizes at each mean tokens per group."""
    run_grouped_mm(ctx, routed_seed=seed)


def run_grouped_mm(ctx: BenchContext, routed_seed: int | None = None, dtype: str = "bf16") -> None:
    """Ragged grouped GEMM (``torch._grouped_mm``, or ``torch._scaled_grouped_mm`` for ``dtype``
    fp8); skipped where torch lacks it.

    ``routed_seed`` None: ``m`` tokens in every group (``grouped_mm_{dtype}.csv``); else the group
    sizes are a seeded multinomial draw of ``G*m`` tokens (``grouped_mm_routed_bf16.csv``).
    """
    import numpy as np
    import torch

    routed = routed_seed is not None
    label = "grouped_mm_routed" if routed else "grouped_mm"
    fp8 = dtype == "fp8"
    if fp8 and not scaled_grouped_mm_supported(ctx):
        ctx.log("grouped_mm fp8: torch._scaled_grouped_mm unavailable here (needs CUDA sm90); skipped")
        return
    if not hasattr(torch, "_grouped_mm") or not ctx.is_cuda:
        ctx.log(f"{label}: torch._grouped_mm unavailable here; skipped")
        return
    table = CsvTable(ctx.out_dir / f"{label}_{dtype}.csv", ROUTED_COLUMNS if routed else COLUMNS, KEY)
    dev = torch.device(ctx.device)
    rng = np.random.default_rng(routed_seed)
    done = 0
    for n, k, _ in QUICK_SHAPES if ctx.quick else SHAPES:
        for g in QUICK_GROUPS if ctx.quick else GROUPS:
            # weights as [G, N, K] viewed [G, K, N]: the column-major B operand the kernel takes
            w = torch.randn(g, n, k, device=dev, dtype=torch.bfloat16).transpose(-2, -1)
            if fp8:
                w = w.to(torch.float8_e4m3fn)
            for m in QUICK_M if ctx.quick else M_GRID:
                flops = 2.0 * g * m * n * k
                if flops > MAX_FLOPS or table.has(groups=g, m_per_group=m, n=n, k=k):
                    continue
                if ctx.out_of_time():
                    ctx.log(f"{label}: time budget reached")
                    return
                counts = rng.multinomial(g * m, np.full(g, 1.0 / g)) if routed else np.full(g, m)
                x = torch.randn(g * m, k, device=dev, dtype=torch.bfloat16)
                offs = torch.as_tensor(np.cumsum(counts), device=dev, dtype=torch.int32)
                call = scaled_grouped_mm_call(x.to(torch.float8_e4m3fn), w, offs) if fp8 else \
                    grouped_mm_call(x, w, offs, torch.bfloat16)
                try:
                    seconds, method = time_calls([call], ctx)
                except Exception as exc:
                    ctx.log(f"{label} g={g} m={m} n={n} k={k}: {type(exc).__name__}: {exc}")
                    return
                row = dict(groups=g, m_per_group=m, n=n, k=k, seconds=seconds,
                           tflops=flops / seconds / 1e12, method=method + ("_scaled_grouped_mm" if fp8 else "_grouped_mm"))
                table.append({**row, "max_per_group": int(counts.max())} if routed else row)
                done += 1
            free_cuda()
    ctx.log(f"{label}: {done} points measured, {len(table)} in table")
