"""Measure a calibration profile: ``python -m calibration.run --out DIR [options]``.

Writes one CSV per (op, dtype) into DIR (``gemm_bf16.csv``, ``gemm_fp8.csv``,
``grouped_gemm_bf16.csv``, ``attn_prefill_bf16.csv``, ``attn_decode_bf16.csv``,
``mla_decode_bf16.csv``, ``elementwise_bf16.csv``, ``hbm.csv``, ``collective_<op>.csv``,
``moe_topk.csv``, ``moe_scatter.csv``, ``attn_decode_tiles.csv``, and as evidence for the
cost model's mechanisms ``grouped_mm_sparse_bf16.csv``, ``mla_decode_impls_bf16.csv``,
``attn_decode_long_bf16.csv``, ``mla_glue_bf16.csv``) plus ``metadata.json``. Rows already in a
CSV are skipped, so a rerun resumes an interrupted run. ``--max-seconds`` ends the suites
cleanly when the budget is spent. ``--check`` then measures a few whole-model steps into
``DIR/check/`` (``calibration.groundtruth`` set ``check``), which ``clustersim calibrate --check``
predicts with the new profile. ``clustersim calibrate`` calls :func:`main`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from calibration.bench import SUITES

CHECK_RESERVE_S, CHECK_RESERVE_QUICK_S = 90.0, 10.0  # of --max-seconds, kept for --check


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m calibration.run", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="output directory (created; resumed if present)")
    p.add_argument("--suite", default=",".join(SUITES),
                   help=f"comma-separated suites (default all: {','.join(SUITES)})")
    p.add_argument("--quick", action="store_true", help="tiny grids (smoke tests, CPU tests)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--max-seconds", type=float, default=None, help="time budget; suites stop cleanly")
    p.add_argument("--gemm-dtypes", default="bf16,fp8", help="dtypes for the gemm suite")
    p.add_argument("--check", action="store_true",
                   help="then measure a few whole-model steps into OUT/check (calibration.groundtruth set "
                        "'check'; clustersim calibrate --check predicts them); with --max-seconds the last "
                        f"{CHECK_RESERVE_S:.0f} s (quick: {CHECK_RESERVE_QUICK_S:.0f} s) are kept for them")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    suites = list(SUITES) if args.suite.strip() == "all" else [s.strip() for s in args.suite.split(",") if s.strip()]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        print(f"unknown suite(s) {unknown} (valid: {', '.join(SUITES)})", file=sys.stderr)
        return 2
    try:
        import torch
    except ImportError:
        print("calibration needs torch: pip install 'clustersim[calibrate]'", file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda but no CUDA device is visible", file=sys.stderr)
        return 2

    from calibration import metadata
    from calibration.bench import (attention, collectives, elementwise, gemm, grouped_gemm, grouped_sparse,
                                   mla_glue, routing)
    from calibration.bench.common import BenchContext

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    reserve = (CHECK_RESERVE_QUICK_S if args.quick else CHECK_RESERVE_S) if args.check else 0.0
    deadline = None if args.max_seconds is None else t0 + max(0.0, args.max_seconds - reserve)
    ctx = BenchContext(out_dir=out, device=device, quick=args.quick, deadline_s=deadline)
    # Written first so an interrupted run still has its provenance; rewritten at the end.
    meta_extra = {"suites": suites, "quick": args.quick, "max_seconds": args.max_seconds}
    metadata.write(out / "metadata.json", metadata.collect(device, extra={**meta_extra, "complete": False}))
    runners = {
        "gemm": lambda: gemm.run(ctx, tuple(d for d in args.gemm_dtypes.split(",") if d)),
        "grouped_gemm": lambda: grouped_gemm.run(ctx),
        "attn_prefill": lambda: attention.run_prefill(ctx),
        "attn_decode": lambda: attention.run_decode(ctx),
        "mla_decode": lambda: attention.run_mla_decode(ctx),
        "elementwise": lambda: elementwise.run(ctx),
        "collectives": lambda: collectives.run(ctx),
        "moe_routing": lambda: routing.run(ctx),
        "attn_decode_tiles": lambda: attention.run_decode_tiles(ctx),
        "attn_prefill_qview": lambda: attention.run_prefill(ctx, q_view=True),
        "grouped_mm_routed": lambda: grouped_gemm.run_grouped_mm_routed(ctx),
        "grouped_mm_sparse": lambda: grouped_sparse.run(ctx),
        "mla_decode_impls": lambda: attention.run_mla_decode_impls(ctx),
        "attn_decode_long": lambda: attention.run_decode_long(ctx),
        "mla_glue": lambda: mla_glue.run(ctx),
    }
    timings = {}
    for name in suites:
        if ctx.out_of_time():
            ctx.log(f"{name}: skipped, time budget spent")
            continue
        s0 = time.monotonic()
        ctx.log(f"== {name} (t={s0 - t0:.0f}s)")
        runners[name]()
        timings[name] = round(time.monotonic() - s0, 1)
    if args.check:
        from calibration.groundtruth.run import run_check

        s0 = time.monotonic()
        run_check(out / "check", device, args.quick, float("inf") if deadline is None else t0 + args.max_seconds)
        timings["check"] = round(time.monotonic() - s0, 1)
    meta = metadata.collect(device, extra={**meta_extra, "complete": not ctx.out_of_time(),
                                           "suite_seconds": timings})
    metadata.finish(out / "metadata.json", meta)
    ctx.log(f"done in {time.monotonic() - t0:.0f}s: {timings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
