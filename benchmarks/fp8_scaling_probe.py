"""Probe (one GPU): torch._scaled_mm with per-tensor scales (what the gemm_fp8 table measures)
against rowwise scales (what an eager FP8 model runs: one fp32 scale per token row and per output
channel) at the Llama-3.1-8B projection shapes, over M = 1..8192. Prints a CSV to stdout:
m,n,k,per_tensor_s,rowwise_s,ratio. CUDA-graph replay timing (calibration.bench.common.time_calls).
Usage: python benchmarks/fp8_scaling_probe.py [--device cuda]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--ms", default="1,4,16,64,128,256,1024,8192")
    args = ap.parse_args()
    import torch

    from calibration.bench.common import BenchContext, time_calls

    ctx = BenchContext(out_dir=Path("/tmp"), device=args.device)
    dev = torch.device(args.device)
    print("m,n,k,per_tensor_s,rowwise_s,ratio")
    for n, k in ((6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)):
        w = torch.randn(n, k, device=dev).to(torch.float8_e4m3fn)
        one = torch.ones((), device=dev, dtype=torch.float32)
        sb = torch.ones(1, n, device=dev, dtype=torch.float32)
        for m in (int(x) for x in args.ms.split(",")):
            x = torch.randn(m, k, device=dev).to(torch.float8_e4m3fn)
            sa = torch.ones(m, 1, device=dev, dtype=torch.float32)
            t0, _ = time_calls([lambda: torch._scaled_mm(x, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)], ctx)
            t1, _ = time_calls([lambda: torch._scaled_mm(x, w.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)], ctx)
            print(f"{m},{n},{k},{t0:.6g},{t1:.6g},{t1 / t0:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
