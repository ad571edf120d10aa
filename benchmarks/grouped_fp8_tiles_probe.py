"""Out-of-sample rows for ``grouped_mm_fp8``'s padded-rows lookup (``calibration.grouped_tiles``),
timed on the device: ``torch._scaled_grouped_mm`` exactly as the calibration suite times it
(``calibration.bench.grouped_gemm``: e4m3 tokens and weights, fp32 rowwise scales, BF16 out), at
tokens per group the shipped table never measured, on both sides of every boundary the rule names
(128/129: ``small`` to a 2x2 cluster of 128-row tiles; 256/257 and 512/513: a padded step; 2047/2048
at K 1408: ``default`` to ``large``), and with routed (multinomial, seeded) group sizes of the same
means, which the table has none of for FP8.

    python3 benchmarks/grouped_fp8_tiles_probe.py --out OUT.csv [--budget-s S]

One row per point: layout (equal or routed), groups, m per group (the mean), n, k, the largest
group, seconds (median, CUDA graph), TFLOP/s, method, torch version. No GPU: exits 2.
"""

from __future__ import annotations

import csv
import sys

#: the shipped table's expert shapes (DeepSeek-V3 gate+up and down, V2-Lite's)
SHAPES = ((4096, 7168), (7168, 2048), (2816, 2048), (2048, 1408))
GROUPS = (8, 32)
EQUAL_M = (129, 160, 224, 255, 257, 320, 448, 511, 513, 640, 896, 1025, 1280, 1792, 2047, 2560)
ROUTED_M = (64, 128, 192, 256, 384, 512, 1024)
FIELDS = ("layout", "groups", "m_per_group", "n", "k", "max_per_group", "seconds", "tflops", "method", "torch")


def main(argv: list[str] | None = None) -> int:
    from probe_rows import probe_context

    got = probe_context(__doc__, argv)
    if got is None:
        return 2
    args, ctx = got
    import numpy as np
    import torch

    from calibration.bench.common import time_calls
    from calibration.bench.grouped_gemm import scaled_grouped_mm_call

    rng = np.random.default_rng(11)
    with open(args.out, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(FIELDS)
        for n, k in SHAPES:
            for g in GROUPS:
                w = torch.randn(g, n, k, device="cuda", dtype=torch.bfloat16).transpose(-2, -1).to(torch.float8_e4m3fn)
                for layout, ms in (("equal", EQUAL_M), ("routed", ROUTED_M)):
                    for m in ms:
                        if ctx.out_of_time():
                            print("budget reached", file=sys.stderr)
                            return 0
                        counts = rng.multinomial(g * m, np.full(g, 1.0 / g)) if layout == "routed" else np.full(g, m)
                        x = torch.randn(g * m, k, device="cuda", dtype=torch.bfloat16).to(torch.float8_e4m3fn)
                        offs = torch.as_tensor(np.cumsum(counts), device="cuda", dtype=torch.int32)
                        seconds, method = time_calls([scaled_grouped_mm_call(x, w, offs)], ctx)
                        out.writerow((layout, g, m, n, k, int(counts.max()), f"{seconds:.9g}",
                                      f"{2.0 * g * m * n * k / seconds / 1e12:.4g}", method, torch.__version__))
                        fh.flush()
                del w
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
