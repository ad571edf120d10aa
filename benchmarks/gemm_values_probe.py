"""Device probe: does a bf16 GEMM's time depend on the operand values?

Times ``x @ W.t()`` (CUDA-graph replay, rotating 4 input sets) for a few large model shapes with
standard-normal weights (as the calibration suite) and with weights scaled like a trained
layer's (std ``K**-0.5``), and prints the ratio. Power-limited GPUs can clock differently
with different bit activity.
"""

import statistics

from pathlib import Path

from calibration.bench.common import BenchContext, time_calls

import torch


def graph_time(fns):
    """Seconds of one call rotating over ``fns``: the calibration's own timing."""
    return time_calls(fns, BenchContext(out_dir=Path(".")))[0]


def main():
    bf = torch.bfloat16
    for m, n, k in ((16384, 28672, 4096), (16384, 4096, 14336), (8192, 14336, 8192), (256, 28672, 4096)):
        res = {}
        for label, scale in (("randn", 1.0), ("scaled", k ** -0.5), ("randn", 1.0)):
            fns = []
            for _ in range(4):
                x = torch.randn(m, k, device="cuda", dtype=bf)
                w = (torch.randn(n, k, device="cuda") * scale).to(bf)
                out = torch.empty(m, n, device="cuda", dtype=bf)
                fns.append(lambda x=x, w=w, out=out: torch.matmul(x, w.t(), out=out))
            res.setdefault(label, []).append(graph_time(fns))
            del fns
            torch.cuda.empty_cache()
        r = statistics.mean(res["randn"])
        print(f"m={m} n={n} k={k}: randn {r*1e6:.1f} us (runs {[round(t*1e6,1) for t in res['randn']]}), "
              f"scaled {res['scaled'][0]*1e6:.1f} us, ratio {res['scaled'][0]/r:.3f}", flush=True)


if __name__ == "__main__":
    main()
