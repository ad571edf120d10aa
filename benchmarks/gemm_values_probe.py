"""Device probe: does a bf16 GEMM's time depend on the operand values?

Times ``x @ W.t()`` (CUDA-graph replay, rotating 4 input sets) for a few large model shapes with
standard-normal weights (as the calibration suite) and with weights scaled like a trained
layer's (std ``K**-0.5``), and prints the ratio. Power-limited GPUs can clock differently
with different bit activity.
"""

import statistics

import torch


def graph_time(fns, reps=7):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for f in fns:
            f()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(5):
            for f in fns:
                f()
    g.replay()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(reps):
        a.record(); g.replay(); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b) * 1e-3 / (5 * len(fns)))
    return statistics.median(ts)


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
