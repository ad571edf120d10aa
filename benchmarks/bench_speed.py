"""Issue 15's speed table (plans, the serving simulator and start-up), each row against a
baseline checkout in the same run.

    python benchmarks/bench_speed.py                          # every row, baseline /work/baseline
    python benchmarks/bench_speed.py --baseline DIR --repeat 3 --rows help collective
    python benchmarks/bench_speed.py --rows plan_h200x32 plan_h800 plan_train --baseline /work/base6 /work/baseline
    python benchmarks/bench_speed.py --quick                  # 10x fewer requests (a smoke run)
    python benchmarks/bench_speed.py --rows llama h800 --out  # simulate rows writing --out files too

``plan`` rows run ``clustersim plan EXAMPLE --out TMP`` (a fresh directory each run, removed
after; only options both trees accept), and compare what the two sides wrote in their last
runs: a serving plan's ``best_deployment.yaml`` (the same bytes, or not: a baseline from before
other model changes can answer differently for their sake), a training plan's ranking (the
order of the layouts in ``ranked.csv``, over the layout columns both write; the issue's target
asks for the same ranking).

Every row is a whole ``clustersim`` process (``python -m clustersim.cli ...``), run alternately
from this tree (``PYTHONPATH`` = this repository, cwd here) and from each baseline tree (its own
``PYTHONPATH`` and cwd; ``--baseline`` takes several, the first one's ratios and answer decide
a row's target), ``--repeat`` times each. For each side it reports the median wall time,
the median CPU time of the child (user + sys, ``os.wait4``: steadier than wall time on a shared
machine), the peak RSS of the child and, for ``simulate`` rows, requests per wall-second and per
CPU-second; then the ratio new / baseline of the speed (baseline seconds / new seconds) and of the
peak memory. Nothing is written but the table (``--json`` adds one JSON line per row).

Compiled bytecode: an installed package runs from its ``.pyc`` files, but this machine sets
``PYTHONDONTWRITEBYTECODE``, so every process would compile both trees from source (about 0.1 s
of a start-up row). By default each tree gets its own bytecode cache outside it
(``PYTHONPYCACHEPREFIX`` under the temporary directory; neither tree is written) and one
untimed warm-up run per side; ``--compile-each-run`` measures the machine's setting instead.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
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
    ("plan DeepSeek-V3 on 32 H200", ["plan", "examples/plan_deepseek-v3_h200x32.yaml", "--out", "{out}"], None,
     "<= 2 s", lambda r: r["wall_s"] <= 2.0),
    ("plan DeepSeek-V3 on H800", ["plan", "examples/plan_deepseek-v3_h800.yaml", "--out", "{out}"], None,
     "<= 4 s, <= 300 MB", lambda r: r["wall_s"] <= 4.0 and r["peak_rss_mb"] <= 300),
    ("training plan, 2,048 H800", ["plan", "examples/train_deepseek-v3_h800_2048.yaml", "--out", "{out}"], None,
     "<= 4 s, the (first) baseline's ranking", lambda r: r["wall_s"] <= 4.0 and r.get("same_answer") is True),
]
SHORT = {"h800": 0, "llama": 1, "collective": 2, "dispatch": 3, "help": 4, "plan_h200x32": 5, "plan_h800": 6,
         "plan_train": 7}
#: layout columns of a training plan's ranked.csv (its ranking is their order)
TRAIN_LAYOUT = ("dp", "tp", "pp", "pp_schedule", "ep", "sp", "sp_kind", "cp", "zero_stage", "micro_batch_size",
                "recompute", "micro_batches")


def _env(tree: Path, bytecode: bool) -> dict:
    """The child's environment: ``tree`` on the path; with ``bytecode``, its own ``.pyc`` cache."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        tag = hashlib.sha256(str(tree.resolve()).encode()).hexdigest()[:12]
        env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "clustersim-bench-pyc" / tag)
    return env


def run_once(tree: Path, args: list[str], bytecode: bool = True, out: Path | None = None) -> dict:
    """One whole process of ``clustersim`` from ``tree``: wall, child CPU (with its workers'),
    child peak RSS (its largest process). ``out``: what ``{out}`` in ``args`` stands for (emptied first)."""
    env = _env(tree, bytecode)
    if out is not None:
        shutil.rmtree(out, ignore_errors=True)
        args = [a.format(out=out) for a in args]
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
    r = {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}
    if out is not None and out.is_dir():
        r["out_bytes"] = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return r


def summarise(runs: list[dict], requests: int | None) -> dict:
    out = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "cpu_s", "peak_rss_mb")}
    out["wall_runs_s"] = [round(r["wall_s"], 3) for r in runs]
    out["cpu_runs_s"] = [round(r["cpu_s"], 3) for r in runs]
    if requests:
        out["requests_per_wall_s"] = requests / out["wall_s"]
        out["requests_per_cpu_s"] = requests / out["cpu_s"]
    return out


def _ranking(path: Path, columns: tuple[str, ...]) -> list[tuple]:
    with open(path, newline="") as f:
        return [tuple(r[c] for c in columns) for r in csv.DictReader(f)]


def same_answer(new_out: Path, base_out: Path) -> tuple[bool | None, str]:
    """Whether the two sides' plans answered alike: the training ranking (``TRAIN_LAYOUT``
    columns both wrote, row order), else ``best_deployment.yaml``; with a few words on it."""
    best_new, best_base = new_out / "best_deployment.yaml", base_out / "best_deployment.yaml"
    if best_new.exists() or best_base.exists():
        if not (best_new.exists() and best_base.exists()):
            return False, "best_deployment.yaml written by one side only"
        same = best_new.read_bytes() == best_base.read_bytes()
        return same, f"best_deployment.yaml {'identical' if same else 'differs'}"
    ranked_new, ranked_base = new_out / "ranked.csv", base_out / "ranked.csv"
    if not (ranked_new.exists() and ranked_base.exists()):
        return None, "no ranked.csv to compare"
    with open(ranked_new, newline="") as f, open(ranked_base, newline="") as g:
        shared = tuple(c for c in TRAIN_LAYOUT if c in next(csv.reader(f)) and c in next(csv.reader(g)))
    a, b = _ranking(ranked_new, shared), _ranking(ranked_base, shared)
    if a == b:
        return True, f"the same ranking of {len(a)} layouts"
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return False, f"rankings differ from row {first + 1} ({len(a)} vs {len(b)} rows)"


def bench_row(row, baselines: Path | list[Path], repeat: int, scale: float, bytecode: bool = True,
              write_out: bool = False) -> dict:
    """One row: this tree and each baseline tree run alternately ``repeat`` times; the first
    baseline's figures are ``baseline`` and the ratios at the top level, every baseline's are
    in ``baselines``. ``write_out``: a ``simulate`` row also writes its ``--out`` files."""
    name, args, requests, target, check = row
    if write_out and args[:1] == ["simulate"]:
        args = [*args, "--out", "{out}"]
    bases = [baselines] if isinstance(baselines, Path) else list(baselines)
    n = int(requests * scale) if requests else None
    argv = [a.format(n=n, out="{out}") for a in args]
    trees = [ROOT] + bases
    runs: list[list[dict]] = [[] for _ in trees]
    with tempfile.TemporaryDirectory(prefix="bench_speed_") as tmp:
        outs = [Path(tmp) / f"side{i}" for i in range(len(trees))] if "{out}" in argv else [None] * len(trees)
        if bytecode and not requests:  # fill each side's bytecode cache (a simulation's first run pays
            for tree, out in zip(trees, outs):  # its compilation in the noise)
                run_once(tree, argv, out=out)
        for _ in range(repeat):  # alternate, so that every side sees the same machine load
            for i, (tree, out) in enumerate(zip(trees, outs)):
                runs[i].append(run_once(tree, argv, bytecode, out))
        answers = [same_answer(outs[0], out) if out is not None and args[:1] == ["plan"] else (None, "")
                   for out in outs[1:]]
    new = summarise(runs[0], n)
    new["same_answer"] = answers[0][0]
    for side, rs in zip([new], runs[:1]):
        if "out_bytes" in rs[-1]:
            side["out_bytes"] = rs[-1]["out_bytes"]
    per_base = []
    for tree, base_runs, (same, how) in zip(bases, runs[1:], answers):
        base = summarise(base_runs, n)
        if "out_bytes" in base_runs[-1]:
            base["out_bytes"] = base_runs[-1]["out_bytes"]
        per_base.append({"tree": str(tree), "side": base, "same_answer": same, "answer": how,
                         "speedup_wall": base["wall_s"] / new["wall_s"], "speedup_cpu": base["cpu_s"] / new["cpu_s"],
                         "memory_ratio": new["peak_rss_mb"] / base["peak_rss_mb"]})
    first = per_base[0]
    return {"row": name, "requests": n, "target": target, "met": bool(check(new)), "new": new,
            "baseline": first["side"], "speedup_wall": first["speedup_wall"], "speedup_cpu": first["speedup_cpu"],
            "memory_ratio": first["memory_ratio"], "answer": first["answer"], "baselines": per_base}


def _side(s: dict) -> str:
    rate = (f", {s['requests_per_wall_s'] / 1e3:,.1f}k req/wall-s ({s['requests_per_cpu_s'] / 1e3:,.1f}k/CPU-s)"
            if "requests_per_wall_s" in s else "")
    wrote = f", wrote {s['out_bytes'] / 1e6:,.0f} MB" if "out_bytes" in s else ""
    return f"wall {s['wall_s']:.3f} s, CPU {s['cpu_s']:.3f} s, peak {s['peak_rss_mb']:.0f} MB{rate}{wrote}"


def machine_reference_s(iterations: int = 5_000_000) -> float:
    """Seconds of a fixed pure-Python loop (best of three): the machine's speed for interpreted code,
    printed with the rows so that absolute figures from different machines (the issue's targets are
    absolute) can be compared."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        acc = 0
        for i in range(iterations):
            acc += i & 7
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", nargs="+", default=["/work/baseline"],
                    help="baseline checkouts (each its own PYTHONPATH and cwd), run alternately with this tree")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each side per row (alternating)")
    ap.add_argument("--rows", nargs="*", choices=sorted(SHORT), help="only these rows")
    ap.add_argument("--quick", action="store_true", help="a tenth of the requests (not the issue's rows)")
    ap.add_argument("--json", action="store_true", help="also print each row as one JSON line")
    ap.add_argument("--out", action="store_true", help="simulate rows also write their --out files (temporary)")
    ap.add_argument("--compile-each-run", action="store_true",
                    help="no bytecode cache: every process compiles both trees (PYTHONDONTWRITEBYTECODE as set)")
    args = ap.parse_args(argv)
    baselines = [Path(b).resolve() for b in args.baseline]
    rows = [ROWS[SHORT[r]] for r in args.rows] if args.rows else ROWS
    load = os.getloadavg()[0]
    print(f"# {os.cpu_count()} CPUs, load average {load:.1f} at start; ratios are baseline / new seconds "
          f"(> 1: faster) and new / baseline peak RSS; wall times under load are noisy, CPU times less so; "
          f"{'compiled every run' if args.compile_each_run else 'bytecode cached per tree'}")
    print(f"# machine reference: {machine_reference_s():.3f} s for a 5M-iteration Python loop (best of 3)")
    for row in rows:
        r = bench_row(row, baselines, args.repeat, 0.1 if args.quick else 1.0, not args.compile_each_run, args.out)
        print(f"{r['row']}{' (quick)' if args.quick else ''}{' --out' if args.out and r['requests'] else ''}: "
              f"target {r['target']}: "
              f"{'MET' if r['met'] else 'not met'}")
        print(f"  new:      {_side(r['new'])}")
        for b in r["baselines"]:
            print(f"  baseline {b['tree']}: {_side(b['side'])}")
            print(f"    speed-up: {b['speedup_wall']:.2f}x wall, {b['speedup_cpu']:.2f}x CPU; "
                  f"memory {b['memory_ratio']:.2f}x{'; ' + b['answer'] if b['answer'] else ''}")
        if args.json:
            print(json.dumps(r))
        sys.stdout.flush()
    print(f"# load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
