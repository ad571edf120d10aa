"""The phases of one ``clustersim plan`` process, as a timeline: when each phase began and ended
(seconds since the start, ``time.perf_counter``, one clock for all processes) and each
process's CPU (user + system, ``os.times``) at those marks, for the planning process and the
workers it forks (pool costs, ranking shares, verification parts and runs).

    python benchmarks/plan_timeline.py examples/plan_deepseek-v3_h200x32.yaml
    python benchmarks/plan_timeline.py examples/plan_deepseek-v3_h800.yaml --tree /work/base23 --runs
    python benchmarks/plan_timeline.py examples/plan_deepseek-v3_h200x32.yaml --summary --repeat 3 \
        --baseline /work/base28

``--summary``: the phases' lengths (serial start to the pool workers' fork, pool phase, ranking to
the first verification round's start, verification, writing and report) and the processes' CPU,
medians over ``--repeat`` runs, alternating with ``--baseline``'s when given.

It runs ``clustersim.cli`` in a child process (the tree's code: ``--tree``, default this
checkout; with a bytecode cache of its own, as ``bench_speed.py`` does) with the planner's
phase functions wrapped to write marks, then prints them in time order. The wrappers cost
microseconds; the plan and its files are the usual ones (written to a temporary ``--out``).
A timeline of the same command under a loaded machine says little: compare CPU, or run it
where the machine is quiet.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (module, function) wrapped with begin/end marks
PHASES = (
    ("planner.search", "_plan"), ("planner.search", "_pool_phase"), ("planner.search", "_import_later"),
    ("planner.search", "pool_queue_task"), ("planner.search", "_rows"), ("planner.search", "rank_task"),
    ("planner.search", "_table_and_verify"), ("planner.search", "begin_verify"),
    ("planner.verify", "verify_part"), ("planner.verify_sched", "run_task"), ("clustersim.api", "save_outputs"),
    ("clustersim.cli", "_plan_report"),
)

# the child: wrap the phases, run the CLI, mark its exit (marks go to the file in argv[1])
_CHILD = r"""
import atexit, functools, importlib, os, sys, time
T0, OUT, PHASES, RUNS = float(sys.argv[1]), sys.argv[2], eval(sys.argv[3]), sys.argv[4] == "1"

def mark(what):
    t = os.times()
    with open(OUT, "a") as f:
        f.write(f"{os.getpid()} {time.perf_counter() - T0:.3f} {t.user + t.system:.3f} {what}\n")

mark("interpreter up")
import clustersim.cli as cli
mark("clustersim.cli imported")
phases = list(PHASES) + ([("planner.verify", "_run")] if RUNS else [])
for mod, name in phases:
    try:  # a tree without the module (an older baseline): nothing to mark there
        m = importlib.import_module(mod)
    except ImportError:
        continue
    fn = getattr(m, name)

    def wrapped(*a, _fn=fn, _what=f"{mod.split('.')[-1]}.{name}", **k):
        mark("> " + _what)
        try:
            return _fn(*a, **k)
        finally:
            mark("< " + _what)

    functools.update_wrapper(wrapped, fn)  # picklable by name (workers receive pool_queue_task, ...)
    setattr(m, name, wrapped)
mark("phases wrapped")
atexit.register(mark, "exit")
sys.argv = ["clustersim"] + sys.argv[5:]
cli.run()
"""


def _timeline(tree: Path, plan: str, runs: bool, workers: int | None) -> tuple[float, list[list[str]]]:
    """One plan process of ``tree``'s code: (wall seconds, marks as [pid, t_s, cpu_s, what])."""
    import time

    with tempfile.TemporaryDirectory() as tmp:
        marks = Path(tmp) / "marks.txt"
        cli = ["plan", plan, "--out", str(Path(tmp) / "out"), "--quiet"]
        if workers:
            cli += ["--workers", str(workers)]
        env = {**os.environ, "PYTHONPATH": str(tree),
               "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "clustersim-bench-pyc" / tree.name)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", _CHILD, repr(t0), str(marks), repr(PHASES), "1" if runs else "0",
                            *cli], cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if p.returncode not in (0, 3, 4):
            sys.exit(f"clustersim plan exited {p.returncode}: {p.stderr.strip()[-400:]}")
        return wall, [line.split(" ", 3) for line in marks.read_text().splitlines()]


#: the summary's phases: (name, the planning process's mark that ends it; None: the process's end)
SUMMARY = (("serial start", "> search._import_later"), ("pool phase", "< search._pool_phase"),
           ("ranking", "< search.begin_verify"), ("verification", "< search._table_and_verify"),
           ("writing and report", None))


def _summary(wall: float, rows: list[list[str]]) -> dict[str, float]:
    """Phase lengths (wall seconds, ``SUMMARY``; a phase without its mark: NaN) and CPU seconds:
    the planning process's, the other processes' (workers: at their last mark) and the total."""
    main_pid = rows[0][0]
    at = {what: float(t) for pid, t, _cpu, what in rows if pid == main_pid}
    out, prev = {}, 0.0
    for name, mark in SUMMARY:
        end = wall if mark is None else at.get(mark, float("nan"))
        out[name] = end - prev
        prev = end
    last: dict[str, float] = {}
    for pid, _t, cpu, _what in rows:
        last[pid] = max(last.get(pid, 0.0), float(cpu))
    out["cpu: planning process"] = last.pop(main_pid)
    out["cpu: workers"] = sum(last.values())
    out["wall"] = wall
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan", help="PLAN.yaml (relative to the tree, or absolute)")
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose code runs (default: this one)")
    ap.add_argument("--runs", action="store_true", help="mark every verification run too")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--summary", action="store_true", help="phase lengths and CPU only (medians over --repeat)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tree, alternating with --baseline's")
    ap.add_argument("--baseline", type=Path, default=None, help="a second checkout, run alternately (--summary)")
    args = ap.parse_args()
    trees = [args.tree.resolve()] + ([args.baseline.resolve()] if args.baseline else [])
    if not args.summary:
        wall, rows = _timeline(trees[0], args.plan, args.runs, args.workers)
        main_pid = rows[0][0]
        print(f"# {args.plan} ({trees[0]}); wall {wall:.3f} s to the process's end; load {os.getloadavg()[0]:.1f}")
        print(f"# {'process':>8} {'t_s':>7} {'cpu_s':>6}  mark")
        for pid, t, cpu, what in sorted(rows, key=lambda r: float(r[1])):
            who = "plan" if pid == main_pid else pid
            print(f"  {who:>8} {float(t):7.3f} {float(cpu):6.3f}  {what}")
        return
    import statistics

    got: dict[Path, list[dict]] = {t: [] for t in trees}
    for _ in range(max(1, args.repeat)):
        for t in trees:
            got[t].append(_summary(*_timeline(t, args.plan, args.runs, args.workers)))
    print(f"# {args.plan}: medians of {max(1, args.repeat)} run(s) per tree, alternating; seconds; "
          f"load {os.getloadavg()[0]:.1f} at the end")
    print(f"  {'':26}" + "".join(f"{t.name:>14}" for t in trees))
    for key in got[trees[0]][0]:
        print(f"  {key:26}" + "".join(f"{statistics.median(r[key] for r in got[t]):14.3f}" for t in trees))


if __name__ == "__main__":
    main()
