"""Issue 15's speed table for the serving simulator and start-up, each row against a baseline
checkout in the same run.

    python benchmarks/bench_speed.py                          # every row, baseline /work/baseline
    python benchmarks/bench_speed.py --baseline DIR --repeat 3 --rows help collective
    python benchmarks/bench_speed.py --quick                  # 10x fewer requests (a smoke run)
    python benchmarks/bench_speed.py --rows llama h800 --out  # simulate rows writing --out files too

Every row is a whole ``clustersim`` process (``python -m clustersim.cli ...``), run alternately
from this tree (``PYTHONPATH`` = this repository, cwd here) and from the baseline tree (its own
``PYTHONPATH`` and cwd), ``--repeat`` times each. For each side it reports the median wall time,
the median CPU time of the child (user + sys, ``os.wait4``: steadier than wall time on a shared
machine), the peak RSS of the child and, for ``simulate`` rows, requests per wall-second and per
CPU-second; then the ratio new / baseline of the speed (baseline seconds / new seconds) and of the
peak memory. Nothing is written but the table (``--json`` adds one JSON line per row); with
``--out``, each ``simulate`` run also writes its ``--out`` files (summary, requests.csv,
timeseries.csv) into a fresh temporary directory, removed after the run, and the row reports the
bytes written.

Compiled bytecode: an installed package runs from its ``.pyc`` files, but this machine sets
``PYTHONDONTWRITEBYTECODE``, so every process would compile both trees from source (about 0.1 s
of a start-up row). By default each tree gets its own bytecode cache outside it
(``PYTHONPYCACHEPREFIX`` under the temporary directory; neither tree is written) and one
untimed warm-up run per side; ``--compile-each-run`` measures the machine's setting instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
H800 = "examples/deepseek-v3_h800_pd-disagg.yaml"
LLAMA = "examples/llama-3.1-70b_h200_tp4_colocated.yaml"

#: (row name, CLI arguments, simulated requests or None, target text, target check)
ROWS = [
    ("simulate H800, 1M requests", ["simulate", H800, "--set", "workload.num_requests={n}"], 1_000_000,
     ">= 100k requests/s, <= 300 MB", lambda r: r["requests_per_wall_s"] >= 100e3 and r["peak_rss_mb"] <= 300),
    ("simulate Llama-70B colocated, 100k requests", ["simulate", LLAMA, "--set", "workload.num_requests={n}"],
     100_000, ">= 20k requests/s, <= 300 MB",
     lambda r: r["requests_per_wall_s"] >= 20e3 and r["peak_rss_mb"] <= 300),
    ("estimate collective, 16,384 GPUs", ["estimate", "collective", "--hardware", "h800-mpft", "--gpus", "16384",
                                          "--op", "all_to_all", "--bytes-per-rank", "1e6"], None, "<= 0.3 s",
     lambda r: r["wall_s"] <= 0.3),
    ("estimate dispatch, EP256 on h800-mpft", ["estimate", "dispatch", "--hardware", "h800-mpft", "--ep", "256",
                                               "--tokens-per-rank", "128"], None, "<= 0.3 s",
     lambda r: r["wall_s"] <= 0.3),
    ("clustersim --help", ["--help"], None, "<= 0.15 s", lambda r: r["wall_s"] <= 0.15),
]
SHORT = {"h800": 0, "llama": 1, "collective": 2, "dispatch": 3, "help": 4}


def _env(tree: Path, bytecode: bool) -> dict:
    """The child's environment: ``tree`` on the path; with ``bytecode``, its own ``.pyc`` cache."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        tag = hashlib.sha256(str(tree.resolve()).encode()).hexdigest()[:12]
        env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "clustersim-bench-pyc" / tag)
    return env


def run_once(tree: Path, args: list[str], bytecode: bool = True, out: bool = False) -> dict:
    """One whole process of ``clustersim`` from ``tree``: wall, child CPU, child peak RSS (with
    ``out``, a ``simulate`` writes its files into a temporary directory: their bytes too)."""
    if out and args[:1] == ["simulate"]:
        with tempfile.TemporaryDirectory(prefix="bench-out-") as d:
            r = run_once(tree, [*args, "--out", d], bytecode)
            r["out_bytes"] = sum(f.stat().st_size for f in Path(d).iterdir())
            return r
    env = _env(tree, bytecode)
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "clustersim.cli", *args], cwd=tree, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    p.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{tree}: clustersim {' '.join(args)} exited {code}: {err.strip().splitlines()[-1:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def summarise(runs: list[dict], requests: int | None) -> dict:
    out = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "cpu_s", "peak_rss_mb")}
    out["wall_runs_s"] = [round(r["wall_s"], 3) for r in runs]
    out["cpu_runs_s"] = [round(r["cpu_s"], 3) for r in runs]
    if requests:
        out["requests_per_wall_s"] = requests / out["wall_s"]
        out["requests_per_cpu_s"] = requests / out["cpu_s"]
    return out


def bench_row(row, baseline: Path, repeat: int, scale: float, bytecode: bool = True, out: bool = False) -> dict:
    name, args, requests, target, check = row
    n = int(requests * scale) if requests else None
    argv = [a.format(n=n) for a in args]
    runs: dict[str, list[dict]] = {"new": [], "baseline": []}
    if bytecode and not requests:  # fill each side's bytecode cache (a simulation's first run pays
        run_once(ROOT, argv)       # its compilation in the noise)
        run_once(baseline, argv)
    for _ in range(repeat):  # alternate, so that both sides see the same machine load
        runs["new"].append(run_once(ROOT, argv, bytecode, out))
        runs["baseline"].append(run_once(baseline, argv, bytecode, out))
    new, base = summarise(runs["new"], n), summarise(runs["baseline"], n)
    for side, rs in (("new", runs["new"]), ("baseline", runs["baseline"])):
        if "out_bytes" in rs[0]:
            (new if side == "new" else base)["out_bytes"] = rs[0]["out_bytes"]
    return {"row": name, "requests": n, "target": target, "met": bool(check(new)), "new": new, "baseline": base,
            "speedup_wall": base["wall_s"] / new["wall_s"], "speedup_cpu": base["cpu_s"] / new["cpu_s"],
            "memory_ratio": new["peak_rss_mb"] / base["peak_rss_mb"]}


def _side(s: dict) -> str:
    rate = (f", {s['requests_per_wall_s'] / 1e3:,.1f}k req/wall-s ({s['requests_per_cpu_s'] / 1e3:,.1f}k/CPU-s)"
            if "requests_per_wall_s" in s else "")
    wrote = f", wrote {s['out_bytes'] / 1e6:,.0f} MB" if "out_bytes" in s else ""
    return f"wall {s['wall_s']:.3f} s, CPU {s['cpu_s']:.3f} s, peak {s['peak_rss_mb']:.0f} MB{rate}{wrote}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="/work/baseline", help="baseline checkout (its own PYTHONPATH and cwd)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each side per row (alternating)")
    ap.add_argument("--rows", nargs="*", choices=sorted(SHORT), help="only these rows")
    ap.add_argument("--quick", action="store_true", help="a tenth of the requests (not the issue's rows)")
    ap.add_argument("--json", action="store_true", help="also print each row as one JSON line")
    ap.add_argument("--out", action="store_true", help="simulate rows also write their --out files (temporary)")
    ap.add_argument("--compile-each-run", action="store_true",
                    help="no bytecode cache: every process compiles both trees (PYTHONDONTWRITEBYTECODE as set)")
    args = ap.parse_args(argv)
    baseline = Path(args.baseline).resolve()
    rows = [ROWS[SHORT[r]] for r in args.rows] if args.rows else ROWS
    load = os.getloadavg()[0]
    print(f"# {os.cpu_count()} CPUs, load average {load:.1f} at start; ratios are baseline / new seconds "
          f"(> 1: faster) and new / baseline peak RSS; wall times under load are noisy, CPU times less so; "
          f"{'compiled every run' if args.compile_each_run else 'bytecode cached per tree'}")
    for row in rows:
        r = bench_row(row, baseline, args.repeat, 0.1 if args.quick else 1.0, not args.compile_each_run, args.out)
        print(f"{r['row']}{' (quick)' if args.quick else ''}{' --out' if args.out and r['requests'] else ''}: "
              f"target {r['target']}: "
              f"{'MET' if r['met'] else 'not met'}")
        print(f"  new:      {_side(r['new'])}")
        print(f"  baseline: {_side(r['baseline'])}")
        print(f"  speed-up: {r['speedup_wall']:.2f}x wall, {r['speedup_cpu']:.2f}x CPU; memory {r['memory_ratio']:.2f}x")
        if args.json:
            print(json.dumps(r))
        sys.stdout.flush()
    print(f"# load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
