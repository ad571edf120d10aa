"""Progress on long work (issue 16 item 5): bars on stderr for simulate, every planner phase, the
training plan, what-if sweeps and calibrate; never on stdout (``--json`` stays parseable); none
when stderr is not a terminal or with ``--quiet``. ``CLUSTERSIM_PROGRESS=always`` stands in for a
terminal here (it forces rich's terminal mode on the stderr console)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from clustersim.cli import app
from clustersim.progress import PROGRESS_ENV, progress_bars
from simulator import simulate
from simulator.progress import Throttle
from workloads.deployment import load_deployment

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "examples" / "llama-3.1-70b_h200_tp4_colocated.yaml"
PLAN = ROOT / "examples" / "plan_deepseek-v3_h200x32.yaml"
runner = CliRunner()
BAR = "━"  # rich's bar glyph


def invoke(args, mode: str | None, monkeypatch):
    if mode is None:
        monkeypatch.delenv(PROGRESS_ENV, raising=False)
    else:
        monkeypatch.setenv(PROGRESS_ENV, mode)
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def small_plan(tmp_path_factory) -> Path:
    data = yaml.safe_load(PLAN.read_text())
    data["search"].update(modes=["colocated"], attention_tp=[8], mtp=[False])
    data["verify"].update(top=2, num_requests=30)
    path = tmp_path_factory.mktemp("plan") / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def small_training(tmp_path_factory) -> Path:
    job = {"training": {"model": "llama-3.1-8b", "cluster": "h800-mrft", "global_batch": 32, "seq_len": 2048,
                        "parallelism": {"dp": 8, "tp": 1, "pp": 1}}}
    path = tmp_path_factory.mktemp("train") / "train.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


# ---------------------------------------------------------------- every long command, through the CLI
@pytest.mark.parametrize("case", ["simulate", "simulate-training", "plan", "plan-training", "what-if"])
def test_bars_on_stderr_and_json_on_stdout(case, small_plan, small_training, monkeypatch):
    args, tasks = {
        "simulate": (["simulate", DEPLOY, "--set", "workload.num_requests=300"], ["simulate", "s simulated"]),
        "simulate-training": (["simulate", small_training], ["pipeline actions"]),
        "plan": (["plan", small_plan, "--workers", "1"], ["pool costs", "rank layouts", "verify"]),
        "plan-training": (["plan", small_training], ["training layouts"]),
        "what-if": (["what-if", small_plan, "--sweep", "load", "--values", "1,2"], ["what-if sweep", "rank layouts"]),
    }[case]
    r = invoke([*args, "--json"], "always", monkeypatch)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    json.loads(r.stdout)  # stdout holds the JSON and nothing else
    assert BAR not in r.stdout
    for task in tasks:
        assert task in r.stderr, (task, r.stderr[-500:])
    assert BAR in r.stderr


@pytest.mark.parametrize("mode, quiet", [(None, False), ("auto", False), ("never", False), ("always", True)])
def test_nothing_on_stderr_without_a_terminal_or_with_quiet(mode, quiet, monkeypatch):
    args = ["simulate", DEPLOY, "--set", "workload.num_requests=100", "--json"] + (["--quiet"] if quiet else [])
    r = invoke(args, mode, monkeypatch)  # CliRunner's stderr is not a terminal
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    json.loads(r.stdout)


def test_bad_progress_mode_is_one_line(monkeypatch):
    r = invoke(["simulate", DEPLOY, "--set", "workload.num_requests=10"], "sometimes", monkeypatch)
    assert r.exit_code == 2 and r.stderr.strip() == ("error: CLUSTERSIM_PROGRESS='sometimes': not a progress mode "
                                                     "(valid: auto, always, never)")


def test_error_line_survives_the_bars(monkeypatch):
    """An error raised after bars were drawn is printed once they are removed (transient bars
    erase the lines they drew; an error printed before that would be erased with them)."""
    from clustersim import run

    def failing(*args, progress=None, **kw):
        progress("simulate", 3, 10, "1.0 s simulated")
        raise ValueError("deploy.yaml:3:1: something: went wrong")

    monkeypatch.setattr(run, "simulate", failing)
    r = invoke(["simulate", DEPLOY], "always", monkeypatch)
    assert r.exit_code == 2 and BAR in r.stderr
    tail = r.stderr.split("\x1b[2K")[-1]  # after the bars' last erase
    assert tail.strip() == "error: deploy.yaml:3:1: something: went wrong", repr(r.stderr[-300:])


def test_calibrate_follows_the_same_rule(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    args = ["calibrate", "--out", tmp_path / "p", "--device", "cpu", "--quick", "--suite", "elementwise"]
    r = invoke(args, "always", monkeypatch)
    assert r.exit_code == 0, r.output
    assert BAR in r.stderr and "elementwise" in r.stderr and BAR not in r.stdout
    r = invoke([*args[:2], tmp_path / "q", *args[3:]], None, monkeypatch)
    assert r.exit_code == 0 and BAR not in r.stderr
    r = invoke([*args[:2], tmp_path / "r", *args[3:], "--quiet"], "always", monkeypatch)
    assert r.exit_code == 0 and r.stderr == ""


# ---------------------------------------------------------------- the pieces
def test_progress_bars_draw_on_an_injected_terminal_console(monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    buf = io.StringIO()
    with progress_bars(console=Console(file=buf, force_terminal=True, width=100)) as progress:
        assert progress is not None
        progress("rank layouts", 5, 10, "half")
        progress("rank layouts", 2, 10, "again")  # a restart resets the bar
        progress("rank layouts", 10, 10, "")
    assert "rank layouts" in buf.getvalue()
    with progress_bars(console=Console(file=io.StringIO(), force_terminal=False)) as progress:
        assert progress is None
    with progress_bars(quiet=True, console=Console(file=io.StringIO(), force_terminal=True)) as progress:
        assert progress is None


def test_simulate_reports_progress_and_gives_the_same_result():
    dep = load_deployment(DEPLOY, ["workload.num_requests=400"])
    calls = []
    with_progress = simulate(dep, progress=lambda *a: calls.append(a))
    plain = simulate(dep)
    assert with_progress.summary == plain.summary
    assert with_progress.requests.equals(plain.requests)
    assert calls[0][:3] == ("simulate", 0, 400) and calls[-1][:3] == ("simulate", 400, 400)
    done = [c[1] for c in calls]
    assert done == sorted(done)
    simulated_s = float(calls[-1][3].removesuffix(" s simulated").replace(",", ""))
    assert simulated_s >= round(float(plain.requests["finish_s"].max()), 1) > 0


def test_training_simulation_reports_pipeline_actions_and_gives_the_same_result(small_training):
    from simulator.training import load_training_job, simulate_training

    job = load_training_job(small_training)
    calls = []
    with_progress = simulate_training(job, progress=lambda *a: calls.append(a))
    assert with_progress.summary() == simulate_training(job).summary()
    assert calls[0][:2] == ("pipeline actions", 0) and calls[-1][1] == calls[-1][2] > 0


def test_throttle_forwards_the_first_and_last_and_at_most_every_interval():
    calls = []
    t = Throttle(lambda *a: calls.append(a), "x", 1000, interval_s=3600.0)
    for i in range(1000):
        t.tick(i)
    t.finish("end")
    assert calls == [("x", 0, 1000, ""), ("x", 1000, 1000, "end")]
    calls.clear()
    t = Throttle(lambda *a: calls.append(a), "y", 3, interval_s=0.0)
    for i in range(3):
        t.tick(i + 1)
    assert [c[1] for c in calls] == [0, 1, 2, 3]
    Throttle(None, "z", 5).tick(1)  # no callback: nothing to do
    Throttle(False, "z", 5).finish()  # older callers' progress=False: nothing either


def test_executor_reports_tasks_done():
    from planner.executors import SerialExecutor

    calls = []
    assert SerialExecutor(progress=lambda *a: calls.append(a)).map(pow, [(2, 3), (3, 2)], desc="verify") == [8, 9]
    assert [c[:3] for c in calls] == [("verify", 0, 2), ("verify", 1, 2), ("verify", 2, 2)]
    assert SerialExecutor(progress=False).map(pow, [(2, 2)]) == [4]


def test_plan_progress_forwards_and_imports_the_writers_when_verification_begins():
    """``api.plan_progress``: every report reaches the bars' callback unchanged; the output
    writers' modules are imported at the first ``verify`` report, not before (a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from clustersim import api\n"
        "seen = []\n"
        "fn = api.plan_progress(lambda *a: seen.append(a))\n"
        "fn('pool costs', 1, 4, '')\n"
        "assert 'rich.table' not in sys.modules and 'clustersim.csvtext' not in sys.modules\n"
        "fn('verify', 0, 6, '')\n"
        "assert 'rich.table' in sys.modules and 'clustersim.csvtext' in sys.modules\n"
        "assert seen == [('pool costs', 1, 4, ''), ('verify', 0, 6, '')], seen\n"
        "api.plan_progress(None)('verify', 0, 6)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
