"""Device probe: does a GEMM run faster when memory-bound kernels sit between its calls?

An H200 at its power limit lowers its clock under sustained matrix work. Calibration times a
GEMM back-to-back (a CUDA graph of many calls); inside a model, GEMMs alternate with
memory-bound kernels. For each GEMM shape and filler size this captures three graphs of N
steps: GEMM only, filler copy only, and [filler, GEMM]; the GEMM's time inside the mix is
(mix - filler) / N. Prints that against back-to-back, with the filler's share of the mix.
"""

from pathlib import Path

from calibration.bench.common import BenchContext, time_calls

import torch


COPY_BYTES_PER_S = 4.0e12  # H200 device-to-device copy, read + write (calibration hbm.csv: 4.1-4.3 TB/s)


def graph_time(seq):
    """Seconds of one pass over ``seq`` (kernels in order), with the calibration's own timing:
    ``time_calls`` replays the sequence in a CUDA graph and returns the mean per call."""
    return time_calls(list(seq), BenchContext(out_dir=Path(".")))[0] * len(seq)


def main():
    bf = torch.bfloat16
    dev = "cuda"
    src = torch.randn(512 * 2**20, device=dev, dtype=bf)  # 1 GiB
    dst = torch.empty_like(src)
    for m, n, k in ((16384, 28672, 4096), (16384, 4096, 14336), (8192, 14336, 8192), (4096, 4096, 7168)):
        x = torch.randn(m, k, device=dev, dtype=bf)
        w = torch.randn(n, k, device=dev, dtype=bf)
        out = torch.empty(m, n, device=dev, dtype=bf)
        gemm = lambda: torch.matmul(x, w.t(), out=out)  # noqa: E731
        t_alone = graph_time([gemm])
        row = [f"m={m} n={n} k={k}: back-to-back {t_alone*1e6:.0f} us"]
        for frac in (0.1, 0.3, 1.0):
            # a copy taking ~frac of the GEMM's time (4 bytes moved per bf16 element)
            elems = max(2**20, min(src.numel(), int(frac * t_alone * COPY_BYTES_PER_S / 4)))
            fill = lambda e=elems: dst[:e].copy_(src[:e])  # noqa: E731
            t_fill = graph_time([fill])
            t_mix = graph_time([fill, gemm])
            g_in = t_mix - t_fill
            row.append(f"filler {t_fill/t_mix:.0%} of mix: gemm {g_in*1e6:.0f} us ({g_in/t_alone-1:+.1%})")
        print("; ".join(row), flush=True)
        del x, w, out
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
