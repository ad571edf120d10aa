"""Extend a profile's dense GEMM tables to the ``gemm`` suite's current M grid, on the device.

Copies ``gemm_{bf16,fp8,fp8_rowwise}.csv`` of ``--profile`` into ``--out`` and runs the suite's own
measurement (``calibration.bench.gemm``) there: rows the tables already hold are skipped, so only the grid's
new token counts are timed, by the same calls, rotation and timer as every other row.

    python3 benchmarks/gemm_grid_extend.py --profile calibration/profiles/h200 --out OUT [--budget-s S]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

DTYPES = ("fp8_rowwise", "bf16", "fp8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=300.0)
    args = ap.parse_args(argv)
    import torch

    from calibration.bench import gemm
    from calibration.bench.common import BenchContext

    if not torch.cuda.is_available():
        print("no GPU", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for dtype in DTYPES:
        shutil.copy(Path(args.profile) / f"gemm_{dtype}.csv", out / f"gemm_{dtype}.csv")
    ctx = BenchContext(out_dir=out, device="cuda", deadline_s=time.monotonic() + args.budget_s)
    for dtype in DTYPES:
        if dtype != "bf16" and not gemm.fp8_supported(ctx):
            continue
        gemm._run_dtype(ctx, dtype)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
