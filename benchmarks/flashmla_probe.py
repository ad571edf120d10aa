"""FlashMLA's dense decode kernel timed on the device: the ``fused`` kernel set's MLA decode, which
the cost model otherwise times from FlashMLA's published H800 figures
(``simulator/data/published_kernels.yaml``: 3,000 GB/s memory bound, 660 TFLOPS compute bound).
Device only: needs a FlashMLA build (``benchmarks/device_flashmla.sh`` builds one from source
carried to the machine).

    python3 benchmarks/flashmla_probe.py --out OUT.csv [--budget-s S] [--between]

One row per (query heads, query tokens per sequence, batch, cached tokens per sequence): the
absorbed MLA decode of DeepSeek-V3 (one latent KV head of 576, values 512, BF16 paged KV in blocks
of 64, every sequence at the same length), timed as the summed GPU time of the kernels one call
launches (scheduler metadata, the split kernel, the combine), from torch's profiler over 20 calls
after 5 warm-up calls; with the KV bytes read and the rate.

``--between``: out-of-sample points for the lookup (``clustersim check`` never sees them): batches
and contexts between the table's (128 and 16 heads, one query token), and batches whose sequences'
lengths spread uniformly over 0.25-1.75 of the row's mean ``context`` (``spread`` 0.75; the table's
rows all have one length), which the cost model reads at the mean.
"""

from __future__ import annotations

import argparse
import sys

HEADS_Q = (128, 64, 32, 16)  # DeepSeek-V3 per rank at attention TP 1, 2, 4, 8
S_Q = (1, 2)  # a plain decode step, and one with an MTP draft token
BATCH = (1, 4, 16, 32, 64, 128, 256)
CONTEXT = (256, 1024, 4096, 8192, 16384, 32768)
D_QK, D_V, BLOCK = 576, 512, 64
MAX_KV_BYTES = 24 << 30
FIELDS = ("heads_q", "s_q", "batch", "context", "seconds", "kv_bytes", "gb_per_s", "tflops", "error")
BETWEEN_FIELDS = ("heads_q", "s_q", "batch", "context", "spread", "seconds", "kv_bytes", "gb_per_s", "tflops", "error")
#: ``--between``: batches and contexts between the table's, and spread lengths at table-like means
BETWEEN_BATCH = (2, 8, 24, 48, 96, 192)
BETWEEN_CONTEXT = (512, 1536, 3072, 6144, 12288)
SPREAD_BATCH = (32, 128)
SPREAD_CONTEXT = (1024, 4096, 16384)
SPREAD = 0.75


#: contexts measured after the first table, between its 1024 and 4096 (128 and 16 heads, one token)
CONTEXT_EXTRA = (2048,)


def points() -> list[tuple[int, int, int, int]]:
    """(heads, s_q, batch, context): 128 heads and one query token first, then MTP, then fewer heads,
    then the later contexts."""
    out = []
    for h in HEADS_Q:
        for s_q in S_Q:
            if h != 128 and s_q != 1:
                continue
            for b in BATCH:
                for c in CONTEXT:
                    if b * c * D_QK * 2 <= MAX_KV_BYTES:
                        out.append((h, s_q, b, c))
    out += [(h, 1, b, c) for h in (128, 16) for b in BATCH for c in CONTEXT_EXTRA]
    return out


def between_points() -> list[tuple[int, int, int, int, float]]:
    """(heads, s_q, batch, mean context, spread) of ``--between``."""
    out = [(h, 1, b, c, 0.0) for h in (128, 16) for b in BETWEEN_BATCH for c in BETWEEN_CONTEXT
           if b * c * D_QK * 2 <= MAX_KV_BYTES]
    out += [(h, 1, b, c, SPREAD) for h in (128, 16) for b in SPREAD_BATCH for c in SPREAD_CONTEXT
            if b * c * D_QK * 2 * (1 + SPREAD) <= MAX_KV_BYTES]
    return out


def _kernel_seconds(fn, calls: int = 20) -> float:
    import torch
    from torch.profiler import ProfilerActivity, profile

    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    total_us = sum(e.device_time_total for e in prof.key_averages() if e.device_time_total > 0
                   and e.key not in ("", "cudaDeviceSynchronize"))
    # key_averages of CUDA-only activity: every kernel once per key; device_time_total is summed
    return total_us / calls * 1e-6


def measure(h: int, s_q: int, b: int, c: int, spread: float = 0.0) -> tuple[float, int]:
    """Seconds of one call over ``b`` sequences of ``c`` cached tokens (``spread`` > 0: lengths evenly
    spaced over ``c * (1 - spread)`` .. ``c * (1 + spread)``, mean ``c``), and the KV bytes read."""
    import torch
    from flash_mla import flash_mla_with_kvcache, get_mla_metadata

    if spread > 0 and b > 1:
        lens_list = [round(c * (1 - spread + 2 * spread * i / (b - 1))) for i in range(b)]
    else:
        lens_list = [c] * b
    blocks = -(-max(lens_list) // BLOCK)
    q = torch.randn(b, s_q, h, D_QK, dtype=torch.bfloat16, device="cuda") / 10
    k = (torch.randn(b * blocks, BLOCK, 1, D_QK, dtype=torch.bfloat16, device="cuda") / 10).clamp_(-1, 1)
    table = torch.randperm(b * blocks, dtype=torch.int32, device="cuda").view(b, blocks)
    lens = torch.tensor(lens_list, dtype=torch.int32, device="cuda")
    meta, _ = get_mla_metadata(lens, s_q * h, 1)

    def fn():
        flash_mla_with_kvcache(q, k, table, lens, D_V, meta, None, causal=True)

    return _kernel_seconds(fn), sum(lens_list) * D_QK * 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=1e9)
    ap.add_argument("--between", action="store_true", help="the out-of-sample points (module docstring)")
    args = ap.parse_args()
    from probe_rows import append_rows

    def rate(b: int, s_q: int, h: int, c: int, t: float, kv: int) -> tuple:
        flops = 2.0 * b * s_q * h * c * (D_QK + D_V)
        return f"{t:.9g}", kv, f"{kv / t / 1e9:.5g}", f"{flops / t / 1e12:.5g}", ""

    if args.between:
        def between_row(p: tuple) -> tuple:
            h, s_q, b, c, spread = p
            t, kv = measure(h, s_q, b, c, spread)
            return (h, s_q, b, c, spread, *rate(b, s_q, h, c, t, kv))

        append_rows(args.out, BETWEEN_FIELDS, between_points(), between_row,
                    lambda p, msg: (*p, "", "", "", "", msg), args.budget_s)
        return 0

    def row_of(p: tuple) -> tuple:
        h, s_q, b, c = p
        t, kv = measure(h, s_q, b, c)
        return (h, s_q, b, c, *rate(b, s_q, h, c, t, kv))

    append_rows(args.out, FIELDS, points(), row_of, lambda p, msg: (*p, "", "", "", "", msg), args.budget_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
