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
from calibration.bench.common import capture_graph, event_median_s, kernel_rows


def kernels(fn) -> list[tuple[str, float]]:
    """[(kernel, us)] of one call of ``fn`` (``calibration.bench.common.kernel_rows``, names cut to 60 characters)."""
    return [(name[:60], us) for name, us in kernel_rows(fn)]


def graphed(fn):
    """``fn`` captured as a CUDA graph (``time_calls``'s capture, one call): its replay."""
    return capture_graph([fn], 1).replay


def replay_us(fn, reps: int = 50) -> float:
    """Median device microseconds of one replay of graph ``fn`` (``event_median_s``)."""
    return event_median_s(fn, reps) * 1e6


def _inner_scan(out: Path) -> None:
    """The chain timed as ``time_calls`` times it (``_time_graph``) with 1..8 chains per captured graph."""
    from calibration.bench.common import BenchContext, _time_graph

    ctx = BenchContext(out_dir=out)
    rows = []
    for cfg in isg.CONFIGS:
        name, hidden, qkv, ffn, layers = cfg
        for tokens in (1, 2, 8, 32):
            x = torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16)
            chain = []
            for _ in range(layers):
                chain += isg._layer_ops(x, isg._weights(hidden, qkv, ffn, "cuda", torch.bfloat16), ffn)

            def run_chain():
                for _, f in chain:
                    f()

            line = {"config": name, "tokens": tokens}
            for inner in (1, 2, 3, 4, 8):
                line[f"inner{inner}_us"] = round(_time_graph([run_chain], 2e-3 / inner, ctx) * 1e6, 1)
            rows.append(line)
            print(line, flush=True)
            chain = x = None
            torch.cuda.empty_cache()
    (out / "inner_scan.json").write_text(json.dumps(rows, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--inner-scan", action="store_true", help="the chain at 1..8 chains per captured graph")
    ap.add_argument("--graph", action="store_true", help="the kernels inside CUDA-graph replays (as the suite times)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    res = {}
    if a.inner_scan:
        _inner_scan(a.out)
        return
    for cfg in isg.CONFIGS:
        name, hidden, qkv, ffn, layers = cfg
        for tokens in (1, 2, 8, 128):
            dev, bf = torch.device("cuda"), torch.bfloat16
            x = torch.randn(tokens, hidden, device=dev, dtype=bf)
            chain = []
            for _ in range(layers):
                chain += isg._layer_ops(x, isg._weights(hidden, qkv, ffn, dev, bf), ffn)
            ch = kernels(lambda: [f() for _, f in chain])
            if a.graph:  # the kernels inside graph replays: the chain's, and each op's alone
                g = graphed(lambda: [f() for _, f in chain])
                chain_replay = replay_us(g)
                ch = kernels(g)
                alone = [(n, kernels(graphed(f))) for n, f in chain[:isg.OPS_PER_LAYER]]
                alone_replay = [replay_us(graphed(f)) for _, f in chain[:isg.OPS_PER_LAYER]]
                res[f"{name}@{tokens}"] = {"chain": ch, "alone": alone, "chain_replay_us": chain_replay,
                                           "alone_replay_us": alone_replay}
                print(f"== graphs {name} tokens {tokens}: chain replay {chain_replay:.1f} us, kernels "
                      f"{sum(d for _, d in ch):.1f} us; alone replays x layers {layers * sum(alone_replay):.1f} us, "
                      f"kernels {layers * sum(d for _, ks in alone for _, d in ks):.1f} us")
                for i, (k, d) in enumerate(ch[: len(ch) // layers]):
                    print(f"   chain {d:8.1f} {k}")
                for (n, ks), r in zip(alone, alone_replay):
                    print(f"   alone {n:9s} replay {r:7.1f} | " + "; ".join(f"{d:.1f} {k[:40]}" for k, d in ks))
                chain = x = g = None
                torch.cuda.empty_cache()
                continue
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
