"""Engine speed: simulated requests per wall-second and peak memory on the example deployments.

    python benchmarks/bench_simulator.py                       # CloudMatrix384 (100,000 requests) and H800
    python benchmarks/bench_simulator.py examples/X.yaml --requests 20000 --set serving.decode.instances=2

Each deployment runs in a fresh process (so peak RSS is its own); wall time covers
``simulate()`` only (cost-model calls included, YAML loading and imports excluded). The target
(issue 5 section 6) is >= 20,000 requests per wall-second on one core for CloudMatrix384.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = [("examples/deepseek-r1_cloudmatrix384.yaml", 100_000), ("examples/deepseek-v3_h800_pd-disagg.yaml", 20_000)]


def run_one(path: str, requests: int | None, overrides: list[str]) -> dict:
    sys.path.insert(0, str(ROOT))
    from simulator import simulate
    from workloads.deployment import load_deployment

    sets = list(overrides) + ([f"workload.num_requests={requests}"] if requests else [])
    dep = load_deployment(path, sets)
    t0 = time.perf_counter()
    res = simulate(dep)
    wall = time.perf_counter() - t0
    n = len(res.requests)
    s = res.summary
    return {
        "deployment": Path(path).name, "overrides": sets, "requests": n, "wall_s": round(wall, 3),
        "requests_per_wall_s": round(n / wall),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "iterations": s["engine"]["iterations"], "cost_model_calls": s["engine"]["cost_model_calls"],
        "kv_transfers": s["engine"]["kv_transfers"], "simulated_s": round(s["makespan_s"], 1),
        "finished": s["counts"]["finished"],
        "ttft_p50_ms": s["ttft_ms"]["p50"], "tpot_p50_ms": s["tpot_ms"]["p50"],
        "output_tokens_per_s_per_device": s["throughput"]["output_tokens_per_s_per_device"],
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--requests", type=int, default=None, help="override workload.num_requests")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE deployment override")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.paths[0], args.requests, args.sets)))
        return
    jobs = [(p, args.requests) for p in args.paths] or [(p, args.requests or n) for p, n in DEFAULTS]
    for path, n in jobs:
        cmd = [sys.executable, __file__, "--one", str(path)] + (["--requests", str(n)] if n else [])
        cmd += [a for s in args.sets for a in ("--set", s)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            print(f"{path}: failed\n{out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ''}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['deployment']}: {r['requests']} requests in {r['wall_s']} s = {r['requests_per_wall_s']} "
              f"requests/wall-s, peak RSS {r['peak_rss_mb']} MB, {r['iterations']} iterations, "
              f"cost-model calls {r['cost_model_calls']}, {r['simulated_s']} s simulated")
        print("  " + json.dumps(r))


if __name__ == "__main__":
    main()
