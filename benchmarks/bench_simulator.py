"""Engine speed: simulated requests per wall-second and peak memory on the example deployments.

    python benchmarks/bench_simulator.py                       # CloudMatrix384 (100,000 requests) and H800
    python benchmarks/bench_simulator.py examples/X.yaml --requests 20000 --set serving.decode.instances=2
    python benchmarks/bench_simulator.py --progress 3     # also with a progress callback: wall-time ratio

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


def run_one(path: str, requests: int | None, overrides: list[str], progress: bool = False) -> dict:
    sys.path.insert(0, str(ROOT))
    from simulator import simulate
    from workloads.deployment import load_deployment

    sets = list(overrides) + ([f"workload.num_requests={requests}"] if requests else [])
    dep = load_deployment(path, sets)
    calls = []
    callback = (lambda *a: calls.append(a)) if progress else None  # what clustersim.progress receives
    t0, c0 = time.perf_counter(), time.process_time()
    res = simulate(dep, progress=callback)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(res.requests)
    s = res.summary
    return {
        "deployment": Path(path).name, "overrides": sets, "requests": n, "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "requests_per_wall_s": round(n / wall),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "iterations": s["engine"]["iterations"], "cost_model_calls": s["engine"]["cost_model_calls"],
        "kv_transfers": s["engine"]["kv_transfers"], "simulated_s": round(s["makespan_s"], 1),
        "finished": s["counts"]["finished"],
        "ttft_p50_ms": s["ttft_ms"]["p50"], "tpot_p50_ms": s["tpot_ms"]["p50"],
        "output_tokens_per_s_per_device": s["throughput"]["output_tokens_per_s_per_device"],
        "progress_calls": len(calls),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--requests", type=int, default=None, help="override workload.num_requests")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE deployment override")
    ap.add_argument("--progress", type=int, default=0, metavar="N",
                    help="run each deployment N times without and N times with a progress callback, "
                         "alternating, and print the ratio of the median CPU times")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--with-progress", action="store_true", help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.paths[0], args.requests, args.sets, args.with_progress)))
        return
    jobs = [(p, args.requests) for p in args.paths] or [(p, args.requests or n) for p, n in DEFAULTS]
    for path, n in jobs:
        cmd = [sys.executable, __file__, "--one", str(path)] + (["--requests", str(n)] if n else [])
        cmd += [a for s in args.sets for a in ("--set", s)]
        if args.progress:
            _progress_ratio(cmd, args.progress)
            continue
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            print(f"{path}: failed\n{out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ''}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['deployment']}: {r['requests']} requests in {r['wall_s']} s = {r['requests_per_wall_s']} "
              f"requests/wall-s, peak RSS {r['peak_rss_mb']} MB, {r['iterations']} iterations, "
              f"cost-model calls {r['cost_model_calls']}, {r['simulated_s']} s simulated")
        print("  " + json.dumps(r))


def _progress_ratio(cmd: list[str], repeats: int) -> None:
    """Median CPU time of ``simulate()`` with a progress callback / without, over alternating fresh
    processes (CPU time: less disturbed than wall time by other work on a shared machine)."""
    import statistics

    walls: dict[bool, list[float]] = {False: [], True: []}
    last: dict = {}
    for _ in range(repeats):
        for with_progress in (False, True):
            out = subprocess.run(cmd + (["--with-progress"] if with_progress else []), capture_output=True, text=True,
                                 cwd=ROOT, check=True)
            last[with_progress] = r = json.loads(out.stdout.strip().splitlines()[-1])
            walls[with_progress].append(r["cpu_s"])
    off, on = statistics.median(walls[False]), statistics.median(walls[True])
    skip = ("wall_s", "cpu_s", "requests_per_wall_s", "peak_rss_mb", "progress_calls")
    same = {k: v for k, v in last[True].items() if k not in skip} == {k: v for k, v in last[False].items() if k not in skip}
    print(f"{last[False]['deployment']}: {last[False]['requests']} requests, median CPU {off:.3f} s without "
          f"progress, {on:.3f} s with ({last[True]['progress_calls']} callback calls): ratio {on / off:.3f} "
          f"(runs without {walls[False]}, with {walls[True]}; same results: {same})")


if __name__ == "__main__":
    main()
