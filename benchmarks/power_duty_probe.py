"""Device probe: does a GEMM run faster when memory-bound kernels sit between its calls?

An H200 at its power limit lowers its clock under sustained matrix work. Calibration times a
GEMM back-to-back (a CUDA graph of many calls); inside a model, GEMMs alternate with
memory-bound kernels. This times the same GEMM (events around each GEMM only, inside a graph
of the whole sequence) when each call is followed by copies taking a chosen fraction of the
GEMM's time, for several fractions, and prints GEMM time relative to back-to-back.
"""

import statistics

import torch


def main():
    bf = torch.bfloat16
    dev = "cuda"
    results = []
    for m, n, k in ((16384, 28672, 4096), (8192, 14336, 8192), (4096, 4096, 7168), (256, 28672, 4096)):
        x = torch.randn(m, k, device=dev, dtype=bf)
        w = torch.randn(n, k, device=dev, dtype=bf)
        out = torch.empty(m, n, device=dev, dtype=bf)
        src = torch.randn(256 * 2**20, device=dev, dtype=bf)  # 512 MB
        dst = torch.empty_like(src)
        # durations of one gemm and one copy (back-to-back, events)
        def t_of(fn, reps=20):
            fn(); torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(reps):
                fn()
            b.record(); b.synchronize()
            return a.elapsed_time(b) / reps * 1e-3
        tg = t_of(lambda: torch.matmul(x, w.t(), out=out))
        tc = t_of(lambda: dst.copy_(src))
        row = {"shape": (m, n, k), "gemm_s": tg}
        for frac in (0.0, 0.25, 0.5, 1.0, 2.0):
            ncopy = int(round(frac * tg / tc))
            chunk = max(1, int(src.numel() * min(1.0, frac * tg / tc))) if ncopy == 0 and frac > 0 else src.numel()
            evs = []
            calls = 30
            starts = [torch.cuda.Event(enable_timing=True) for _ in range(calls)]
            ends = [torch.cuda.Event(enable_timing=True) for _ in range(calls)]
            for i in range(calls):
                starts[i].record()
                torch.matmul(x, w.t(), out=out)
                ends[i].record()
                if frac > 0:
                    if ncopy == 0:
                        dst[:chunk].copy_(src[:chunk])
                    for _ in range(ncopy):
                        dst.copy_(src)
            torch.cuda.synchronize()
            ts = [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends)][10:]
            row[f"frac{frac}"] = statistics.median(ts) / tg
        results.append(row)
        print(row, flush=True)
        del x, w, out, src, dst
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
