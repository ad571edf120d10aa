"""DeepGEMM's FP8 kernels timed on the device: the ``fused`` kernel set's own FP8 GEMMs (dense
``fp8_gemm_nt``, grouped ``m_grouped_fp8_gemm_nt_contiguous`` for prefill and
``m_grouped_fp8_gemm_nt_masked`` for decode, with equal or routed group sizes), which ``workloads.kernel_sets`` times with stand-ins
(the measured ``torch._scaled_mm`` table, a fitted grouped roofline) because no table of ours
measured them. Device only: needs a DeepGEMM build (``benchmarks/device_deepgemm.sh`` builds one
from source carried to the machine) and DeepGEMM's ``tests/generators.py`` on ``sys.path`` for its
operand layouts (1x128 activation and 128x128 weight scales, TMA-aligned).

    python3 benchmarks/deepgemm_probe.py --out OUT.csv [--only masked,contiguous,dense,routed] [--part I/N]
                                         [--budget-s S] [--warm-only]

Every point is one row: kind, groups, m per group (masked: exactly m valid rows in every group;
routed: masked with multinomial group sizes of mean m, the row's valid_m their total;
contiguous: DeepGEMM's generator draws each group's rows in 0.7-1.3 m and the row records the
valid total), n, k, the kernel's median time over DeepGEMM's kineto timer (30 runs of the
kernels named ``gemm_``), and the rate. ``--part I/N`` takes every N-th point from I (parallel JIT
warm-up in N processes: ``--warm-only`` runs each point once, untimed, so the timed pass finds
every kernel compiled). Rows are appended as they are measured; a point that fails writes its
error and the run goes on.
"""

from __future__ import annotations

import argparse
import random
import sys

#: DeepSeek-V3's routed-expert GEMMs (gate+up: N 2 x 2048, K 7168; down: N 7168, K 2048)
EXPERT_NK = ((4096, 7168), (7168, 2048))
#: tokens per expert group of a decode step (masked layout)
DECODE_M = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: experts per GPU: EP144 with 288 slots (2), EP32-36 (8), EP8 of 256 experts (32)
DECODE_GROUPS = (2, 8, 32)
#: DeepGEMM README's grouped rows (H800): (layout, groups, m per group)
README_GROUPED = (("masked", 1, 1024), ("masked", 2, 512), ("masked", 4, 256),
                  ("contiguous", 4, 8192), ("contiguous", 8, 4096))
#: routed decode groups (masked layout, multinomial group sizes of this mean): the lookup reads the mean
ROUTED_M = (4, 16, 64, 256)
#: tokens per group between DECODE_M's powers of two (selector ``knee``: masked rows, routed means),
#: where DeepGEMM's block-M tiles fill (a group of M tokens takes ceil(M / block M) row tiles)
KNEE_M = (24, 48, 96, 160, 192, 320, 384, 640, 768)
KNEE_ROUTED_M = (8, 32, 48, 96, 128, 192, 384, 512, 768, 1024)
#: other models' routed-expert GEMMs (selector ``shapes``: masked rows, equal groups): DeepSeek-V2 (hidden
#: 5120, expert FFN 1536) and DeepSeek-V2-Lite (2048, 1408), gate+up then down
OTHER_NK = ((3072, 5120), (5120, 1536), (2816, 2048), (2048, 1408))
OTHER_M = (1, 8, 32, 64, 128, 256, 512, 1024)
PREFILL_M = (64, 256, 1024, 4096)
PREFILL_GROUPS = (8, 32)
#: dense shapes: the README's N x K with M 64, 128, 4096, plus decode-sized M
DENSE_NK = ((2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048))
DENSE_M = (1, 8, 32, 64, 128, 512, 4096)
FIELDS = ("kind", "groups", "m_per_group", "valid_m", "n", "k", "seconds", "tflops", "error")


def points(only: set[str]) -> list[tuple]:
    """(kind, groups, m per group, n, k) in measuring order: the README's rows first; ``knee``
    selects the masked and routed points at KNEE_M and KNEE_ROUTED_M, ``shapes`` the masked points of
    OTHER_NK (each measured apart, later)."""
    if "shapes" in only:
        other = [("masked", g, m, n, k) for n, k in OTHER_NK for g in DECODE_GROUPS for m in OTHER_M]
        return other + points(only - {"shapes"})
    if "knee" in only:
        knee = [("masked", g, m, n, k) for g in DECODE_GROUPS for m in KNEE_M for n, k in EXPERT_NK]
        knee += [("routed", g, m, n, k) for g in DECODE_GROUPS for m in KNEE_ROUTED_M for n, k in EXPERT_NK]
        return knee + points(only - {"knee"})
    out = []
    for layout, g, m in README_GROUPED:
        for n, k in EXPERT_NK:
            out.append((layout, g, m, n, k))
    for g in DECODE_GROUPS:
        for m in DECODE_M:
            for n, k in EXPERT_NK:
                out.append(("masked", g, m, n, k))
    for g in PREFILL_GROUPS:
        for m in PREFILL_M:
            for n, k in EXPERT_NK:
                out.append(("contiguous", g, m, n, k))
    for n, k in DENSE_NK:
        for m in DENSE_M:
            out.append(("dense", 1, m, n, k))
    for g in DECODE_GROUPS:
        for m in ROUTED_M:
            for n, k in EXPERT_NK:
                out.append(("routed", g, m, n, k))
    seen, uniq = set(), []
    for p in out:
        if p not in seen and p[0] in only:
            seen.add(p)
            uniq.append(p)
    return uniq


def _masked(deep_gemm, gen, g: int, m: int, n: int, k: int):
    import torch

    max_m = max(128, -(-int(m * 1.3 + 1) // 128) * 128)
    a, b, masked_m, _, d, _ = gen.generate_m_grouped_masked(g, max_m, m, n, k, use_ue8m0=False,
                                                            quant_config=gen.QuantConfig())
    masked_m.fill_(m)  # exactly m valid rows per group
    for j in range(g):
        a[1][j, m:] = 0
    torch.cuda.synchronize()

    def fn():
        deep_gemm.m_grouped_fp8_gemm_nt_masked(a, b, d, masked_m, m, disable_ue8m0_cast=True)

    return fn, g * m


def _routed(deep_gemm, gen, g: int, m: int, n: int, k: int):
    """Masked layout with routed group sizes: g * m tokens drawn uniformly over the g groups (a
    multinomial, fixed seed), as top-k routing of balanced experts gives them."""
    import numpy as np
    import torch

    sizes = np.random.default_rng(0).multinomial(g * m, [1.0 / g] * g)
    # DeepGEMM's generator draws its own sizes up to 1.3 m first, and asserts they fit max_m
    max_m = max(128, -(-int(max(sizes.max() * 1.05, m * 1.3) + 1) // 128) * 128)
    a, b, masked_m, _, d, _ = gen.generate_m_grouped_masked(g, max_m, m, n, k, use_ue8m0=False,
                                                            quant_config=gen.QuantConfig())
    masked_m.copy_(torch.tensor(sizes, dtype=torch.int32, device="cuda"))
    for j in range(g):
        a[1][j, int(sizes[j]):] = 0
    torch.cuda.synchronize()

    def fn():
        deep_gemm.m_grouped_fp8_gemm_nt_masked(a, b, d, masked_m, m, disable_ue8m0_cast=True)

    return fn, int(sizes.sum())


def _contiguous(deep_gemm, gen, g: int, m: int, n: int, k: int):
    deep_gemm.set_mk_alignment_for_contiguous_layout(deep_gemm.get_theoretical_mk_alignment_for_contiguous_layout())
    _, a, b, layout, d, _ = gen.generate_m_grouped_contiguous(g, m, n, k, gen.MajorTypeAB.KMajor,
                                                              gen.MajorTypeAB.KMajor, use_ue8m0=False,
                                                              quant_config=gen.QuantConfig())
    valid = int((layout >= 0).sum().item())

    def fn():
        deep_gemm.m_grouped_fp8_gemm_nt_contiguous(a, b, d, layout, disable_ue8m0_cast=True)

    return fn, valid


def _dense(deep_gemm, gen, g: int, m: int, n: int, k: int):
    import torch

    a, b, c, d, _ = gen.generate_normal(m, n, k, gen.MajorTypeAB.KMajor, gen.MajorTypeAB.KMajor, False,
                                        torch.bfloat16, gen.KernelType.Kernel1D2D, use_ue8m0=False,
                                        quant_config=gen.QuantConfig())

    def fn():
        deep_gemm.fp8_gemm_nt(a, b, d, c=c, disable_ue8m0_cast=True)

    return fn, m


BUILD = {"masked": _masked, "routed": _routed, "contiguous": _contiguous, "dense": _dense}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="masked,contiguous,dense,routed")
    ap.add_argument("--part", default="0/1")
    ap.add_argument("--budget-s", type=float, default=1e9)
    ap.add_argument("--warm-only", action="store_true")
    args = ap.parse_args()
    import deep_gemm
    import generators as gen
    from deep_gemm.testing import bench_kineto
    from probe_rows import append_rows

    i, nparts = (int(v) for v in args.part.split("/"))

    def row_of(p: tuple) -> tuple | None:
        kind, g, m, n, k = p
        random.seed(0)
        fn, valid = BUILD[kind](deep_gemm, gen, g, m, n, k)
        fn()
        if args.warm_only:
            return None
        t = bench_kineto(fn, "gemm_", suppress_kineto_output=True)
        return kind, g, m, valid, n, k, f"{t:.9g}", f"{2.0 * valid * n * k / t / 1e12:.4g}", ""

    append_rows(args.out, FIELDS, points(set(args.only.split(",")))[i::nparts], row_of,
                lambda p, msg: (p[0], p[1], p[2], "", p[3], p[4], "", "", msg), args.budget_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
