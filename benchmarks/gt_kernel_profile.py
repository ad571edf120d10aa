"""Device probe: the kernels inside the ground-truth steps, one by one.

Runs the ``calibration.groundtruth`` reference models (Llama-8B, Llama-70B TP4 rank, DeepSeek-V3
EP4 MoE rank) at a few of their measured points with a reduced layer count, under
``torch.profiler`` (CUPTI kernel records), and writes for each point the kernel sequence of one
step (name, device microseconds; median over profiled steps) plus the CUDA-graph replay time
of the same reduced step. The difference between the graph time and the sum of kernel times
is the per-kernel gap of graph replay. Used to find which kernels the operator lists miss.

    python benchmarks/gt_kernel_profile.py --out $OUT/kprof
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from calibration import groundtruth as gt
from calibration.bench.common import BenchContext, kernel_rows, time_calls


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--moe-only", action="store_true")
    p.add_argument("--moe-tokens", default="128,512,1024,4096,8192")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    summary = []

    def record(tag, fn):
        g, e, ok = gt.time_step(fn, "cuda", repeats=9)
        rows = kernel_rows(fn)
        with open(a.out / f"{tag}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["idx", "kernel", "us"])
            for i, (k, us) in enumerate(rows):
                w.writerow([i, k[:200], f"{us:.3f}"])
        ksum = sum(us for _, us in rows) * 1e-6
        summary.append(dict(tag=tag, graph_s=g, eager_s=e, kernels=len(rows), kernel_sum_s=ksum))
        print(f"{tag:34s} graph {g*1e3:9.3f} ms  kernels {len(rows):5d} sum {ksum*1e3:9.3f} ms  "
              f"gap/kernel {(g-ksum)/max(1,len(rows))*1e6:6.2f} us", flush=True)

    dense = () if a.moe_only else ((gt.LLAMA_8B, ((1, 512), (8, 2048)), ((1, 1024), (16, 1024), (256, 1024), (128, 4096))),
                          (gt.LLAMA_70B_TP4, ((4, 2048),), ((32, 2048), (256, 2048))))
    for cfg, pre, dec in dense:
        m = gt.DenseModel(replace(cfg, layers=a.layers), "cuda")
        for b, s in pre:
            record(f"{cfg.name}-tp{cfg.tp}-prefill-b{b}-s{s}", m.prefill(b, s))
            torch.cuda.empty_cache()
        for b, c in dec:
            record(f"{cfg.name}-tp{cfg.tp}-decode-b{b}-c{c}", m.decode(b, c))
            torch.cuda.empty_cache()
        del m
        torch.cuda.empty_cache()
    layer = gt.MoELayer(gt.DSV3_MOE_EP4, "cuda")
    for t in (int(x) for x in a.moe_tokens.split(",")):
        step, info = layer.step(t, 20250101 + t)
        record(f"moe-ep4-t{t}", step)
        # the routed gate_up grouped GEMM alone, with this step's own group sizes: one graph
        # replay of a single call (as in the step) vs the calibration's graph of repeated calls
        exp, _tok = gt.uniform_routing(layer.cfg, t, 20250101 + t)
        counts = np.bincount(exp, minlength=layer.cfg.local_experts)
        offs = torch.as_tensor(np.cumsum(counts), device="cuda", dtype=torch.int32)
        xs = torch.randn(int(counts.sum()), layer.cfg.hidden, device="cuda", dtype=torch.bfloat16)
        call = lambda: torch._grouped_mm(xs, layer.w1_g, offs=offs, out_dtype=torch.bfloat16)  # noqa: E731
        single, _, _ = gt.time_step(call, "cuda", repeats=9)
        repeated, _ = time_calls([call], BenchContext(out_dir=a.out))
        print(f"  grouped gate_up alone t={t}: single-call graph {single*1e6:.0f} us, repeated {repeated*1e6:.0f} us",
              flush=True)
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
