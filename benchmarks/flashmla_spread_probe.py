"""Device probe: FlashMLA decode over batches whose cached lengths differ, kernel by kernel.

The cost model reads a decode batch at its mean context; batches of lengths spread over 0.25-1.75
of a 1,024-token mean ran 16-18% longer than that (``flashmla_probe.py --between``). This probe
asks what the extra time follows: the same lengths sorted or shuffled, bimodal lengths, the
equal batches at the spread's smallest and largest length, and the split (FlashMLA's
``flash_fwd_splitkv_mla``) and combine kernels' shares, at 128 query heads.

    PYTHONPATH=.fm/FlashMLA python benchmarks/flashmla_spread_probe.py --out $OUT/flashmla_spread.csv
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibration.flashmla_sched import probe_variants as variants  # noqa: E402  (the fit reads the same lists)

D_QK, D_V, BLOCK = 576, 512, 64


def measure(h: int, lens_list: list[int], calls: int = 20) -> dict[str, float]:
    """Device microseconds per call by kernel name (median over 3 profiled rounds of ``calls``)."""
    import torch
    from flash_mla import flash_mla_with_kvcache, get_mla_metadata
    from torch.profiler import ProfilerActivity, profile

    b = len(lens_list)
    blocks = -(-max(lens_list) // BLOCK)
    q = torch.randn(b, 1, h, D_QK, dtype=torch.bfloat16, device="cuda") / 10
    k = (torch.randn(b * blocks, BLOCK, 1, D_QK, dtype=torch.bfloat16, device="cuda") / 10).clamp_(-1, 1)
    table = torch.randperm(b * blocks, dtype=torch.int32, device="cuda").view(b, blocks)
    lens = torch.tensor(lens_list, dtype=torch.int32, device="cuda")
    meta, splits = get_mla_metadata(lens, h, 1)

    def fn():
        flash_mla_with_kvcache(q, k, table, lens, D_V, meta, splits, causal=True)

    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    rounds = []
    for _ in range(3):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(calls):
                fn()
            torch.cuda.synchronize()
        by = {}
        for e in prof.key_averages():
            if e.device_time_total > 0 and e.key not in ("", "cudaDeviceSynchronize"):
                name = "combine" if "combine" in e.key.lower() else ("split" if "splitkv" in e.key.lower() else e.key[:40])
                by[name] = by.get(name, 0.0) + e.device_time_total / calls
        rounds.append(by)
    return {k: statistics.median(r.get(k, 0.0) for r in rounds) for k in rounds[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = []
    for h, b, c in ((128, 128, 1024), (128, 64, 1024), (128, 32, 1024), (128, 128, 4096), (16, 128, 1024)):
        for name, lens in variants(b, c).items():
            t = measure(h, lens)
            rows.append(dict(heads_q=h, batch=b, mean=c, variant=name, sum_len=sum(lens), max_len=max(lens),
                             seconds=f"{sum(t.values()) * 1e-6:.9g}", total_us=round(sum(t.values()), 3), split_us=round(t.get("split", 0.0), 3),
                             combine_us=round(t.get("combine", 0.0), 3),
                             other=";".join(f"{k}={v:.2f}" for k, v in t.items() if k not in ("split", "combine"))))
            print(rows[-1], flush=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
