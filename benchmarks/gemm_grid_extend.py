"""Extend a profile's dense GEMM tables to the ``gemm`` suite's current M grid, on the device.

Copies ``gemm_{bf16,fp8,fp8_rowwise}.csv`` of ``--profile`` into ``--out`` and runs the suite's own
measurement (``calibration.bench.gemm``) there: rows the tables already hold are skipped, so only the grid's
new token counts are timed, by the same calls, rotation and timer as every other row.

    python3 benchmarks/gemm_grid_extend.py --profile calibration/profiles/h200 --out OUT [--budget-s S]
"""

from __future__ import annotations

import shutil
from pathlib import Path

DTYPES = ("fp8_rowwise", "bf16", "fp8")


def main(argv: list[str] | None = None) -> int:
    from probe_rows import probe_context

    got = probe_context(__doc__, argv, more=lambda ap: ap.add_argument("--profile", required=True))
    if got is None:
        return 2
    args, ctx = got
    from calibration.bench import gemm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for dtype in DTYPES:
        shutil.copy(Path(args.profile) / f"gemm_{dtype}.csv", out / f"gemm_{dtype}.csv")
    ctx.out_dir = out
    for dtype in DTYPES:
        if dtype != "bf16" and not gemm.fp8_supported(ctx):
            continue
        gemm._run_dtype(ctx, dtype)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
