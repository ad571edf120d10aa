"""Device probe (issue 14, the two gaps left): the kernels of MLA prefill and of small MoE layers.

After the issue-14 mechanisms, two families still read fast against the wide ground truth:
whole-model MLA prefill (~6% in every point) and small MoE layers (~10%, a constant 20-35 us).
This probe measures what would tell the mechanism apart, in < 3 minutes of one H200:

1. ``steps``: a few ground-truth steps (``calibration.groundtruth``: V2-Lite-shaped MLA prefill
   and decode with ``--layers`` layers, V2-Lite EP4 and V3 EP32 MoE layers at 16 tokens) under
   ``torch.profiler``: every kernel with its device time, the CUDA-graph replay time of the step
   and the cost model's prediction of the same step (op by op). Graph time minus the kernel sum
   over the kernel count is the per-kernel gap of graph replay; the kernel list against the op
   list shows what the operators miss.
2. ``prefill_layouts``: causal SDPA at the MLA prefill shapes (16 heads, 192/128 dims) with
   contiguous q/k/v (what ``attn_prefill_bf16`` times) against the views the model hands it
   (q and k from ``cat`` then transposed, v a strided slice of the ``kv_b`` output).

    python benchmarks/mla_kernel_probe.py --out $OUT/mla_probe              # H200
    python benchmarks/mla_kernel_probe.py --out /tmp/p --device cpu --quick  # code paths (tests)

Writes ``<step>.csv`` (kernel, us), ``prefill_layouts.csv`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def kernel_rows(fn, device: str, steps: int = 3) -> list[tuple[str, float]]:
    """[(kernel, median us)] of one call of ``fn`` in launch order (CUDA kernels; on CPU the
    top-level torch ops, for tests)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    fn()
    if cuda:
        torch.cuda.synchronize()
    runs = []
    for _ in range(steps):
        with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
            fn()
            if cuda:
                torch.cuda.synchronize()
        if cuda:
            ev = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                  and "Memcpy" not in e.name]
        else:
            ev = [e for e in prof.events() if e.cpu_parent is None]
        ev.sort(key=lambda e: e.time_range.start)
        runs.append([(e.name, e.time_range.elapsed_us()) for e in ev])
    n = min(len(r) for r in runs)
    return [(runs[0][i][0], statistics.median(r[i][1] for r in runs)) for i in range(n)]


def predicted(table: str, row: dict) -> tuple[float, int, list[tuple[str, float]]]:
    """(seconds, op instances, [(op, seconds total)]) of the cost model for one ground-truth row."""
    from calibration.groundtruth.workload import row_ops
    from calibration.profile import load_profile
    from hardware.catalog import get_cluster
    from simulator.costmodel import CostModel

    cm = CostModel(cluster=get_cluster("h200-node"), profile=load_profile("h200"))
    ops = [o for o in row_ops(table, row).ops if o.stream != "comm"]
    costs = [(o.name, cm.op_cost(o).total_s) for o in ops]
    return sum(c for _, c in costs), sum(o.count for o in ops), costs


def steps(device: str, quick: bool, layers: int):
    """(tag, table, row, step builder) of the probed ground-truth steps."""
    from calibration.groundtruth import configs as C
    from calibration.groundtruth.mla import MLAModel
    from calibration.groundtruth.moe import MoELayer

    mla = "tiny-mla" if quick else "deepseek-v2-lite"
    m = C.model_config(mla, None if quick else layers)
    L = m.num_layers
    pre, dec = ((1, 16),) if quick else ((1, 1024), (1, 4096)), () if quick else ((32, 4096), (1, 4096))
    model = MLAModel(m, device)
    for b, s in pre:
        yield f"mla-prefill-b{b}-s{s}", "gt_mla_prefill.csv", dict(model=mla, layers=L, batch=b, seq=s), \
            lambda b=b, s=s: model.prefill(b, s)[0]
    for b, c in dec:
        yield f"mla-decode-b{b}-c{c}", "gt_mla_decode.csv", dict(model=mla, layers=L, batch=b, context=c), \
            lambda b=b, c=c: model.decode(b, c)[0]
    moes = ((C.TINY_MOE, 2),) if quick else ((C.moe_config("deepseek-v2-lite", 4), 16), (C.moe_config("deepseek-v3", 32), 16))
    for cfg, t in moes:
        layer = MoELayer(cfg, device)
        yield f"moe-{cfg.name}-ep{cfg.ep}-t{t}", "gt_moe_small.csv", dict(model=cfg.name, ep=cfg.ep, tokens_per_rank=t), \
            lambda layer=layer, t=t: layer.step(t, 20250101 + t)[0]


def prefill_layouts(device: str, quick: bool) -> list[dict]:
    """Causal SDPA at MLA prefill shapes: contiguous inputs vs the model's views."""
    import torch

    from calibration.bench.common import BenchContext, time_calls
    from calibration.groundtruth.common import sdpa, sdpa_backend

    H, dn, r, dv = (4, 16, 8, 16) if quick else (16, 128, 64, 128)
    out = []
    for b, s in ((1, 32),) if quick else ((1, 1024), (1, 4096), (4, 2048), (1, 16384)):
        bf = dict(device=device, dtype=torch.bfloat16)
        q = torch.randn(b, H, s, dn + r, **bf)
        k = torch.randn(b, H, s, dn + r, **bf)
        v = torch.randn(b, H, s, dv, **bf)
        qm = torch.randn(b, s, H, dn + r, **bf).transpose(1, 2)  # cat output, transposed view
        km = torch.randn(b, s, H, dn + r, **bf).transpose(1, 2)
        kv = torch.randn(b, s, H, dn + dv, **bf)
        vm = kv[..., dn:].transpose(1, 2)  # strided slice of the kv_b output
        ctx = BenchContext(out_dir=Path("."), device=device)
        row = dict(batch=b, seq=s, heads=H)
        for tag, args in (("contiguous", (q, k, v)), ("model_views", (qm, km, vm)), ("model_v_only", (q, k, vm))):
            t, method = time_calls([lambda a=args: sdpa(*a, True, scale=(dn + r) ** -0.5)], ctx)
            row[f"{tag}_us"] = t * 1e6
            row[f"{tag}_backend"] = sdpa_backend(*args, True, (dn + r) ** -0.5)
        row["method"] = method
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    from calibration.groundtruth.common import time_step

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--layers", type=int, default=3, help="MLA model layers (1 dense + MoE)")
    p.add_argument("--quick", action="store_true", help="tiny models (CPU tests)")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    summary = []
    for tag, table, row, build in steps(a.device, a.quick, a.layers):
        fn = build()
        graph_s, eager_s, _ = time_step(fn, a.device, repeats=7)
        rows = kernel_rows(fn, a.device, steps=1 if a.quick else 3)
        pred_s, pred_ops, costs = predicted(table, row)
        with open(a.out / f"{tag}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["idx", "kernel", "us"])
            w.writerows([i, k[:200], f"{us:.3f}"] for i, (k, us) in enumerate(rows))
        ksum = sum(us for _, us in rows) * 1e-6
        summary.append(dict(tag=tag, graph_s=graph_s, eager_s=eager_s, kernels=len(rows), kernel_sum_s=ksum,
                            gap_per_kernel_us=(graph_s - ksum) / max(1, len(rows)) * 1e6,
                            predicted_s=pred_s, predicted_op_instances=pred_ops,
                            predicted_ops=[dict(op=n, seconds=s) for n, s in costs]))
        print(f"{tag:32s} graph {graph_s * 1e3:8.3f} ms  kernels {len(rows):4d} sum {ksum * 1e3:8.3f} ms  "
              f"predicted {pred_s * 1e3:8.3f} ms ({pred_ops} ops)", flush=True)
    layouts = prefill_layouts(a.device, a.quick)
    with open(a.out / "prefill_layouts.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(layouts[0]))
        w.writeheader()
        w.writerows(layouts)
    for r in layouts:
        print(f"sdpa prefill b={r['batch']} s={r['seq']}: contiguous {r['contiguous_us']:.1f} us, model views "
              f"{r['model_views_us']:.1f} us, strided v only {r['model_v_only_us']:.1f} us", flush=True)
    (a.out / "summary.json").write_text(json.dumps(dict(steps=summary, prefill_layouts=layouts), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
