"""Out-of-sample rows for the dense GEMM lookup, timed on the device exactly as the ``gemm`` suite times
them (``calibration.bench.gemm``: ``torch.matmul`` of ``x[M, K] @ W[N, K]^T`` in BF16; ``torch._scaled_mm``
with rowwise fp32 scales for ``fp8_rowwise``), at expert-free layers of models the shipped table never
measured (Qwen3-32B, Qwen2.5-72B at TP 4, Mistral-Large-2 at TP 8, Gemma-2-27B at TP 2, Phi-3-medium) and at
token counts between the table's.

    python3 benchmarks/gemm_oos_probe.py --out OUT.csv [--budget-s S]

One row per point: dtype, m, n, k, model layer, seconds (median; CUDA graph below 1 ms), TFLOP/s, method.
No GPU: exits 2.
"""

from __future__ import annotations

import csv
import sys

#: (layer, n, k): each model's projections on one device
SHAPES = (
    ("qwen3-32b qkv", 10240, 5120), ("qwen3-32b o", 5120, 8192), ("qwen3-32b gate_up", 51200, 5120),
    ("qwen3-32b down", 5120, 25600),
    ("qwen2.5-72b tp4 gate_up", 14784, 8192), ("qwen2.5-72b tp4 down", 8192, 7392),
    ("mistral-large-2 tp8 qkv", 1792, 12288), ("mistral-large-2 tp8 o", 12288, 1536),
    ("mistral-large-2 tp8 gate_up", 7168, 12288), ("mistral-large-2 tp8 down", 12288, 3584),
    ("gemma-2-27b tp2 gate_up", 36864, 4608), ("gemma-2-27b tp2 down", 4608, 18432),
    ("phi-3-medium gate_up", 35840, 5120), ("phi-3-medium down", 5120, 17920),
)
M = (1, 7, 33, 100, 300, 700, 1500, 3000, 5000, 10000)
DTYPES = ("bf16", "fp8_rowwise")
FIELDS = ("dtype", "m", "n", "k", "layer", "seconds", "tflops", "method")


def main(argv: list[str] | None = None) -> int:
    from probe_rows import probe_context

    got = probe_context(__doc__, argv)
    if got is None:
        return 2
    args, ctx = got
    import torch

    from calibration.bench.common import free_cuda, rotation_count, time_calls
    from calibration.bench.gemm import _make_calls

    dev = torch.device("cuda")
    with open(args.out, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(FIELDS)
        for dtype in DTYPES:
            elt = 2 if dtype == "bf16" else 1
            for layer, n, k in SHAPES:
                for m in M:
                    if ctx.out_of_time():
                        print("budget reached", file=sys.stderr)
                        return 0
                    nrot = rotation_count((m * k + n * k) * elt + m * n * 2, ctx)
                    seconds, method = time_calls(_make_calls(dtype, m, n, k, nrot, dev), ctx)
                    out.writerow((dtype, m, n, k, layer, f"{seconds:.9g}", f"{2.0 * m * n * k / seconds / 1e12:.4g}",
                                  method))
                    fh.flush()
                free_cuda()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
