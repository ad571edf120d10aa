"""The phases of one ``clustersim plan`` process, as a timeline: when each phase began and ended
(seconds since the start, ``time.perf_counter``, one clock for all processes) and each
process's CPU (user + system, ``os.times``) at those marks, for the planning process and the
workers it forks (pool costs, ranking shares, verification parts and runs).

    python benchmarks/plan_timeline.py examples/plan_deepseek-v3_h200x32.yaml
    python benchmarks/plan_timeline.py examples/plan_deepseek-v3_h800.yaml --tree /work/base23 --runs

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
    ("planner.verify", "verify_part"), ("clustersim.api", "save_outputs"), ("clustersim.cli", "_plan_report"),
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
    m = importlib.import_module(mod)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan", help="PLAN.yaml (relative to the tree, or absolute)")
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose code runs (default: this one)")
    ap.add_argument("--runs", action="store_true", help="mark every verification run too")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    tree = args.tree.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        marks = Path(tmp) / "marks.txt"
        cli = ["plan", args.plan, "--out", str(Path(tmp) / "out"), "--quiet"]
        if args.workers:
            cli += ["--workers", str(args.workers)]
        env = {**os.environ, "PYTHONPATH": str(tree),
               "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "clustersim-bench-pyc" / tree.name)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        import time

        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", _CHILD, repr(t0), str(marks), repr(PHASES), "1" if args.runs else "0",
                            *cli], cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if p.returncode not in (0, 3, 4):
            sys.exit(f"clustersim plan exited {p.returncode}: {p.stderr.strip()[-400:]}")
        rows = [line.split(" ", 3) for line in marks.read_text().splitlines()]
    main_pid = rows[0][0]
    print(f"# {args.plan} ({tree}); wall {wall:.3f} s to the process's end; load {os.getloadavg()[0]:.1f}")
    print(f"# {'process':>8} {'t_s':>7} {'cpu_s':>6}  mark")
    for pid, t, cpu, what in sorted(rows, key=lambda r: float(r[1])):
        who = "plan" if pid == main_pid else pid
        print(f"  {who:>8} {float(t):7.3f} {float(cpu):6.3f}  {what}")


if __name__ == "__main__":
    main()
