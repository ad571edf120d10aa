"""Device probe: the kernels of the in_step_gap suite's chain against the same ops alone.

For a few (config, tokens) points of ``calibration.bench.in_step_gap`` it prints each kernel of one
chain replayed eagerly under ``torch.profiler`` (name, device us) and each op of layer 0 called
alone, so a gap per op that differs between configurations can be traced to the kernel that
changes (``benchmarks/device_runs``).

    python benchmarks/in_step_gap_probe.py --out $OUT/isg_probe
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from calibration.bench import in_step_gap as isg


def kernels(fn, reps: int = 3) -> list[tuple[str, float]]:
    """[(kernel, us)] of one call of ``fn`` (median over ``reps`` profiled calls)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    runs = []
    for _ in range(reps):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        ev = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA),
                    key=lambda e: e.time_range.start)
        runs.append([(e.name[:60], e.time_range.elapsed_us(), e.time_range.start) for e in ev])
    n = min(len(r) for r in runs)
    out = []
    for i in range(n):
        durs = sorted(r[i][1] for r in runs)
        out.append((runs[0][i][0], durs[len(durs) // 2]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    res = {}
    for cfg in isg.CONFIGS:
        name, hidden, qkv, ffn, layers = cfg
        for tokens in (1, 2, 8, 128):
            dev, bf = torch.device("cuda"), torch.bfloat16
            x = torch.randn(tokens, hidden, device=dev, dtype=bf)
            chain = []
            for _ in range(layers):
                chain += isg._layer_ops(x, isg._weights(hidden, qkv, ffn, dev, bf), ffn)
            ch = kernels(lambda: [f() for _, f in chain])
            alone = [(n, kernels(f)) for n, f in chain[:isg.OPS_PER_LAYER]]
            res[f"{name}@{tokens}"] = {"chain": ch, "alone": alone}
            print(f"== {name} tokens {tokens}: chain kernels {len(ch)}, sum {sum(d for _, d in ch):.1f} us")
            for k, d in ch[: len(ch) // layers]:
                print(f"   chain {d:8.1f} {k}")
            for n, ks in alone:
                print(f"   alone {n:9s} " + "; ".join(f"{d:.1f} {k[:40]}" for k, d in ks))
            chain = x = None
            torch.cuda.empty_cache()
    (a.out / "probe.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
