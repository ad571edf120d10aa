"""Dense GEMM suite: ``y[M,N] = x[M,K] @ W[N,K]^T`` in bf16 (torch.matmul -> cuBLAS) and fp8.

The (N, K) pairs are the linear layers of the catalog models under TP 1/4/8 (see ``SHAPES``);
M runs over a log grid 1..32768. fp8 uses ``torch._scaled_mm`` (e4m3 operands, per-tensor
fp32 scales, bf16 output) where the GPU supports it; it needs M padded to a multiple of 16,
so ``m_run`` records the M that actually ran (FLOP/s are reported for the requested ``m``).
fp8_rowwise (``gemm_fp8_rowwise.csv``) is the same call with rowwise scales (one fp32 scale per
row of x and per output channel: what an eager FP8 model runs), at the requested M: at small M
it runs another kernel, 1.5-2.7x the per-tensor time on the H200.
Points over ``MAX_FLOPS`` are skipped to keep the suite inside its time budget.
"""

from __future__ import annotations

import math

from calibration.bench.common import BenchContext, free_cuda, rotation_count, time_calls
from calibration.store import CsvTable

# (n, k, label): out_features, in_features, where it comes from.
SHAPES: tuple[tuple[int, int, str], ...] = (
    (6144, 4096, "llama-3.1-8b qkv tp1"),
    (4096, 4096, "llama-3.1-8b o tp1"),
    (28672, 4096, "llama-3.1-8b gate_up tp1"),
    (4096, 14336, "llama-3.1-8b down tp1"),
    (10240, 8192, "llama-3.1-70b/qwen-2.5-72b qkv tp1"),
    (2560, 8192, "llama-3.1-70b qkv tp4"),
    (8192, 2048, "llama-3.1-70b o tp4"),
    (14336, 8192, "llama-3.1-70b gate_up tp4"),
    (8192, 7168, "llama-3.1-70b down tp4"),
    (8192, 3584, "llama-3.1-70b down tp8"),
    (2304, 16384, "llama-3.1-405b qkv tp8"),
    (16384, 2048, "llama-3.1-405b o tp8"),
    (13312, 16384, "llama-3.1-405b gate_up tp8"),
    (16384, 6656, "llama-3.1-405b down tp8"),
    (2112, 7168, "deepseek-v3 q_a+kv_a fused"),
    (1536, 7168, "deepseek-v3 q_a"),
    (576, 7168, "deepseek-v3 kv_a"),
    (24576, 1536, "deepseek-v3 q_b"),
    (32768, 512, "deepseek-v3 kv_b"),
    (7168, 16384, "deepseek-v3 o"),
    (36864, 7168, "deepseek-v3 dense gate_up"),
    (7168, 18432, "deepseek-v3 dense down"),
    (4096, 7168, "deepseek-v3 expert/shared gate_up"),
    (7168, 2048, "deepseek-v3 expert/shared down"),
    (129280, 7168, "deepseek-v3 lm head"),
    (128256, 4096, "llama-3.1-8b lm head"),
    (128256, 8192, "llama-3.1-70b lm head tp1"),
    (32064, 8192, "llama-3.1-70b lm head tp4"),
    (16032, 16384, "llama-3.1-405b lm head tp8"),
)
#: token counts; 320 ... 1792 (multiples of 64 between the powers of two and their halves) because
#: torch's FP8 rowwise kernel picks its tile, cluster and transposition from M rounded to 64
#: (RowwiseScaledMM.cu), and log-M interpolation across such a switch missed M ~300 by 31% (median
#: over 14 unmeasured shapes, benchmarks/device_runs/2026-12-02_gemm_oos_run_log.txt)
M_GRID = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280,
          1536, 1792, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 24576, 32768)
QUICK_SHAPES = ((256, 128, "tiny a"), (512, 256, "tiny b"))
QUICK_M = (1, 16, 128)
MAX_FLOPS = 2.5e13
COLUMNS = ["m", "n", "k", "m_run", "seconds", "tflops", "method"]
KEY = ["m", "n", "k"]


def fp8_supported(ctx: BenchContext) -> bool:
    """Whether torch._scaled_mm runs here (compute capability >= 8.9)."""
    if not ctx.is_cuda:
        return False
    import torch

    if not hasattr(torch, "_scaled_mm"):
        return False
    return torch.cuda.get_device_capability() >= (8, 9)


def run(ctx: BenchContext, dtypes: tuple[str, ...] = ("bf16", "fp8", "fp8_rowwise")) -> None:
    for dtype in dtypes:
        if dtype.startswith("fp8") and not fp8_supported(ctx):
            ctx.log("gemm fp8: torch._scaled_mm not available on this device; skipped")
            continue
        _run_dtype(ctx, dtype)


def _points(ctx: BenchContext):
    shapes = QUICK_SHAPES if ctx.quick else SHAPES
    ms = QUICK_M if ctx.quick else M_GRID
    for n, k, _ in shapes:
        for m in ms:
            if 2.0 * m * n * k <= MAX_FLOPS:
                yield m, n, k


def _run_dtype(ctx: BenchContext, dtype: str) -> None:
    import torch

    table = CsvTable(ctx.out_dir / f"gemm_{dtype}.csv", COLUMNS, KEY)
    dev = torch.device(ctx.device)
    done = skipped = 0
    for m, n, k in _points(ctx):
        if table.has(m=m, n=n, k=k):
            continue
        if ctx.out_of_time():
            ctx.log(f"gemm {dtype}: time budget reached")
            break
        m_run = int(math.ceil(m / 16) * 16) if dtype == "fp8" else m
        elt = 2 if dtype == "bf16" else 1
        nrot = rotation_count((m_run * k + n * k) * elt + m_run * n * 2, ctx)
        try:
            fns = _make_calls(dtype, m_run, n, k, nrot, dev)
            seconds, method = time_calls(fns, ctx)
        except Exception as exc:  # record and go on: one bad shape must not end the suite
            ctx.log(f"gemm {dtype} m={m} n={n} k={k}: {type(exc).__name__}: {exc}")
            skipped += 1
            continue
        finally:
            fns = None
        table.append(dict(m=m, n=n, k=k, m_run=m_run, seconds=seconds,
                          tflops=2.0 * m * n * k / seconds / 1e12, method=method))
        done += 1
        if 2.0 * m * n * k > 1e12:
            free_cuda()
    ctx.log(f"gemm {dtype}: {done} points measured, {skipped} failed, {len(table)} in table")


def _make_calls(dtype: str, m: int, n: int, k: int, nrot: int, dev):
    import torch

    fns = []
    if dtype == "bf16":
        for _ in range(nrot):
            x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
            w = torch.randn(n, k, device=dev, dtype=torch.bfloat16)
            out = torch.empty(m, n, device=dev, dtype=torch.bfloat16)
            fns.append(lambda x=x, w=w, out=out: torch.matmul(x, w.t(), out=out))
        return fns
    if dtype == "fp8_rowwise":
        for _ in range(nrot):
            x = torch.randn(m, k, device=dev).to(torch.float8_e4m3fn)
            w = torch.randn(n, k, device=dev).to(torch.float8_e4m3fn)
            sa = torch.ones(m, 1, device=dev, dtype=torch.float32)
            sb = torch.ones(1, n, device=dev, dtype=torch.float32)
            fns.append(lambda x=x, w=w, sa=sa, sb=sb: torch._scaled_mm(x, w.t(), scale_a=sa, scale_b=sb,
                                                                       out_dtype=torch.bfloat16))
        return fns
    if dtype == "fp8":
        one = torch.ones((), device=dev, dtype=torch.float32)
        for _ in range(nrot):
            x = torch.randn(m, k, device=dev).to(torch.float8_e4m3fn)
            w = torch.randn(n, k, device=dev).to(torch.float8_e4m3fn)
            fns.append(lambda x=x, w=w: torch._scaled_mm(x, w.t(), scale_a=one, scale_b=one,
                                                         out_dtype=torch.bfloat16))
        return fns
    raise ValueError(f"gemm dtype {dtype!r} not supported (valid: bf16, fp8, fp8_rowwise)")
