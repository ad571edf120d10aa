"""Cost of a step-cost miss (``InstanceCost.step`` on a batch shape not seen before), this tree
against a baseline tree in the same run.

    python benchmarks/bench_step_cost.py --baseline /work/base7
    python benchmarks/bench_step_cost.py --baseline /work/base7 --workloads llama --repeat 3
    python benchmarks/bench_step_cost.py --child llama --prof      # cProfile of this tree's misses

Each workload collects the batch shapes a real run costs: ``simulate`` of the Llama-70B colocated
and the DeepSeek-V3 H800 P/D examples (every key of the engine's ``StepCostCache``), and
``plan examples/plan_deepseek-v3_h200x32.yaml`` (every shape its pool costing and verification
hand to ``InstanceCost.step``, in one process). It then times, with fresh ``InstanceCost``
objects (``cache_steps=False``), building every shape's op lists (``InstanceCost.ops``) and
costing every shape in full (``InstanceCost.step``), and prints CPU milliseconds per step.
Every side runs in its own process (``PYTHONPATH`` and cwd = its tree), the sides alternate,
and the medians are compared (the harness's heap frozen, ``gc.freeze``, before timing); the children also check that both sides' step costs agree (a
digest of every step's seconds, compute and comm).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {
    "llama": ("simulate", "examples/llama-3.1-70b_h200_tp4_colocated.yaml", 20000),
    "h800": ("simulate", "examples/deepseek-v3_h800_pd-disagg.yaml", 20000),
    "plan_h200x32": ("plan", "examples/plan_deepseek-v3_h200x32.yaml", 0),
}


def _simulate_shapes(path: str, n: int) -> list[tuple]:
    """(spec, shapes) per pool of a simulate run of ``n`` requests."""
    from clustersim.run import load, profile_for
    from hardware.catalog import get_cluster
    from simulator.engine import Simulation
    from simulator.instance import spec_from_pool
    from simulator.policies import shape_of
    from workloads.models import get_model

    loaded = load(path, [f"workload.num_requests={n}"])
    prof = profile_for(loaded)
    dep = loaded.config
    sim = Simulation(dep, profile=prof)
    sim.run()
    model, cluster = get_model(dep.model), get_cluster(dep.cluster)
    out = []
    for name, pool in dep.pools().items():
        cache = sim.cost_caches[name]
        shapes = [shape_of(k, cache.decode_new_tokens) for k in cache._cache]
        out.append((name, spec_from_pool(model, cluster, pool, dep.weight_dtype, dep.kv_dtype), prof, shapes))
    return out


def _plan_shapes(path: str) -> list[tuple]:
    """(spec, shapes) of every instance a plan costs steps on (one process, no workers)."""
    from clustersim import run
    from simulator.instance import InstanceCost

    seen: dict = {}
    original = InstanceCost.step

    def record(self, batch):
        entry = seen.setdefault(id(self), (self, []))
        entry[1].append(batch)
        return original(self, batch)

    InstanceCost.step = record
    try:
        run.plan(path, workers=1)
    finally:
        InstanceCost.step = original
    out = []
    for i, (ic, shapes) in enumerate(seen.values()):
        distinct = list({(type(s), s): s for s in shapes}.values())
        out.append((f"instance{i}", ic.spec, ic.cost_model.profile, distinct))
    return out


def child(workload: str, repeat: int, prof: bool) -> dict:
    from simulator.instance import InstanceCost

    kind, path, n = WORKLOADS[workload]
    pools = _simulate_shapes(path, n) if kind == "simulate" else _plan_shapes(path)
    steps = sum(len(p[3]) for p in pools)
    # the run that collected the shapes leaves its heap behind: frozen, so that the collector
    # does not charge its scans of it to the steps timed (the planner freezes its heap too)
    gc.collect()
    gc.freeze()
    ops_s, full_s = [], []
    digest = hashlib.sha256()
    for rep in range(repeat):
        t_ops = t_full = 0.0
        for name, spec, profile, shapes in pools:
            ic = InstanceCost(spec, profile, cache_steps=False)
            t0 = time.process_time()
            for s in shapes:
                ic.ops(s)
            t_ops += time.process_time() - t0
            ic = InstanceCost(spec, profile, cache_steps=False)
            if prof and rep == 0:
                import cProfile
                import pstats

                pr = cProfile.Profile()
                pr.enable()
                for s in shapes:
                    ic.step(s)
                pr.disable()
                st = pstats.Stats(pr, stream=sys.stderr)
                st.sort_stats("tottime").print_stats(30)
                st.sort_stats("cumulative").print_stats(45)
                ic = InstanceCost(spec, profile, cache_steps=False)
            t0 = time.process_time()
            costs = [ic.step(s) for s in shapes]
            t_full += time.process_time() - t0
            if rep == 0:
                for c in costs:
                    digest.update(repr((c.seconds, c.compute_s, c.comm_s, len(c.ops))).encode())
        ops_s.append(t_ops)
        full_s.append(t_full)
    return {"workload": workload, "steps": steps, "pools": len(pools),
            "ops_ms_per_step": 1e3 * min(ops_s) / steps, "full_ms_per_step": 1e3 * min(full_s) / steps,
            "digest": digest.hexdigest()[:16]}


def run_side(tree: Path, workload: str, repeat: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", workload, "--repeat", str(repeat)],
                       cwd=tree, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{tree}: {workload} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="/work/base7")
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--repeat", type=int, default=2, help="processes per side (alternating)")
    ap.add_argument("--inner", type=int, default=2, help="timings per process (the fastest is kept)")
    ap.add_argument("--child", choices=list(WORKLOADS), help=argparse.SUPPRESS)
    ap.add_argument("--prof", action="store_true", help="with --child: cProfile the first full costing")
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.repeat if a.prof else max(a.repeat, 1), a.prof)))
        return
    base = Path(a.baseline)
    for w in a.workloads:
        new_runs, base_runs = [], []
        for _ in range(a.repeat):
            new_runs.append(run_side(ROOT, w, a.inner))
            base_runs.append(run_side(base, w, a.inner))
        med = {side: {k: statistics.median(r[k] for r in runs) for k in ("ops_ms_per_step", "full_ms_per_step")}
               for side, runs in (("new", new_runs), ("base", base_runs))}
        same = {r["digest"] for r in new_runs} == {r["digest"] for r in base_runs}
        print(f"{w}: {new_runs[0]['steps']} steps over {new_runs[0]['pools']} instance(s); CPU ms/step "
              f"ops {med['new']['ops_ms_per_step']:.3f} vs {med['base']['ops_ms_per_step']:.3f} "
              f"({med['base']['ops_ms_per_step'] / med['new']['ops_ms_per_step']:.2f}x), "
              f"full {med['new']['full_ms_per_step']:.3f} vs {med['base']['full_ms_per_step']:.3f} "
              f"({med['base']['full_ms_per_step'] / med['new']['full_ms_per_step']:.2f}x); "
              f"step costs {'identical' if same else 'DIFFER'}", flush=True)


if __name__ == "__main__":
    main()
