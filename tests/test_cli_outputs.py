"""``--out`` directories and interruption (issue 11, items 7 and 9): checked before any work,
atomic writes, a command's stale files cleared (and no others), Ctrl-C reported in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clustersim import outputs
from clustersim.cli import app
from clustersim.outputs import OutputDir

ROOT = Path(__file__).resolve().parents[1]
LLAMA = str(ROOT / "examples" / "llama-3.1-70b_h200_tp4_colocated.yaml")
TRAIN = str(ROOT / "examples" / "train_deepseek-v3_h800_2048.yaml")
PLAN = str(ROOT / "examples" / "plan_deepseek-v3_h200x32.yaml")
runner = CliRunner()


def _bad_out_dirs(tmp_path: Path) -> list[tuple[str, str]]:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [(str(a_file), "exists and is not a directory")]
    if Path("/proc/self").is_dir():  # Linux: nothing can be created under /proc
        cases += [("/proc/clustersim-x/out", "cannot create the directory"), ("/proc/self", "cannot write there")]
    return cases


@pytest.mark.parametrize("argv", [
    ["simulate", LLAMA, "--set", "workload.num_requests=5"],
    ["simulate", TRAIN],
    ["plan", PLAN, "--workers", "1"],
    ["plan", TRAIN],
    ["what-if", PLAN, "--capacity"],
    ["calibrate", "--device", "cpu", "--quick"],
])
def test_bad_out_is_one_line_before_any_work(tmp_path, monkeypatch, argv):
    # The work must not start: make every job fail loudly if it is reached.
    from clustersim import run

    def never(*a, **k):
        raise AssertionError("the job ran before --out was checked")

    for name in ("simulate", "plan", "plan_training", "whatif"):
        monkeypatch.setattr(run, name, never)
    import calibration.run

    monkeypatch.setattr(calibration.run, "main", never)
    for bad, why in _bad_out_dirs(tmp_path):
        r = runner.invoke(app, argv + ["--out", bad])
        assert r.exit_code == 2, (bad, r.output)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: --out") and why in lines[0], r.output


def test_out_parents_are_created(tmp_path):
    out = tmp_path / "a" / "b" / "c"
    r = runner.invoke(app, ["simulate", LLAMA, "--set", "workload.num_requests=5", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["requests.csv", "summary.json", "timeseries.csv"]


def test_reused_dir_clears_only_the_commands_own_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # an earlier serving run with a trace, then the same directory for a training job
    r = runner.invoke(app, ["simulate", LLAMA, "--set", "workload.num_requests=5", "--trace", "--out", str(out)])
    assert r.exit_code == 0, r.output
    (out / "notes.txt").write_text("mine")
    (out / "ranked.csv").write_text("a plan's file, not simulate's")
    r = runner.invoke(app, ["simulate", TRAIN, "--out", str(out)])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    assert "requests.csv" not in names and "timeseries.csv" not in names and "trace.json" not in names
    assert {"summary.json", "notes.txt", "ranked.csv"} <= set(names)
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "summary.json").read_text())["kind"] == "training"


def test_plan_that_finds_nothing_leaves_no_stale_best_deployment(tmp_path):
    """A fake plan result with no best layout: the earlier best_deployment.yaml must go."""

    class Empty:
        table = pd.DataFrame({"rank": [], "feasible": []})
        pareto = pd.DataFrame()

        def best_yaml(self):
            return ""

        def to_dict(self):
            return {"ranked": []}

    out = OutputDir.prepare(tmp_path)
    for name in ("best_deployment.yaml", "pareto.png", "keep.yaml"):
        (tmp_path / name).write_text("stale")
    written = outputs.write_plan(out, Empty(), plot=False)
    assert written == ["ranked.parquet", "ranked.csv", "pareto.csv", "plan.json"]
    assert not (tmp_path / "best_deployment.yaml").exists() and not (tmp_path / "pareto.png").exists()
    assert (tmp_path / "keep.yaml").read_text() == "stale"
    assert set(out.removed) == {"best_deployment.yaml", "pareto.png"}


def test_failed_write_leaves_no_partial_file(tmp_path):
    out = OutputDir.prepare(tmp_path)
    (tmp_path / "ranked.csv").write_text("old,complete\n")

    def half(tmp: Path) -> None:
        tmp.write_text("cut-")
        raise KeyboardInterrupt

    out.begin(["ranked.csv"], ["ranked.csv"])
    with pytest.raises(KeyboardInterrupt):
        out.write_with("ranked.csv", half)
    assert list(tmp_path.iterdir()) == []  # neither the cut-off temp file nor the stale one
    assert "not written: ranked.csv" in out.report() and "removed from an earlier run: ranked.csv" in out.report()


def test_interrupt_while_writing_reports_complete_and_missing_files(tmp_path, monkeypatch):
    original = OutputDir.write_csv

    def interrupted(self, name, df):
        if name == "timeseries.csv":
            self.write_with(name, lambda tmp: (tmp.write_text("t,x\n0,"), (_ for _ in ()).throw(KeyboardInterrupt)))
        original(self, name, df)

    monkeypatch.setattr(OutputDir, "write_csv", interrupted)
    out = tmp_path / "o"
    r = runner.invoke(app, ["simulate", LLAMA, "--set", "workload.num_requests=7", "--out", str(out)])
    assert r.exit_code == 130, r.output
    assert "Traceback" not in r.output
    line = [ln for ln in r.output.splitlines() if ln.startswith("interrupted:")]
    assert len(line) == 1
    assert "complete in" in line[0] and "summary.json, requests.csv" in line[0] and "not written: timeseries.csv" in line[0]
    assert sorted(p.name for p in out.iterdir()) == ["requests.csv", "summary.json"]
    assert len(pd.read_csv(out / "requests.csv")) == 7 and json.loads((out / "summary.json").read_text())


def test_whatif_writes_only_its_mode_files(tmp_path, monkeypatch):
    import planner.whatif

    df = pd.DataFrame({"hardware": ["h200"], "tokens_per_s_per_device": [1.0]})
    monkeypatch.setattr(planner.whatif, "capacity", lambda cfg, **kw: df)
    (tmp_path / "whatif_sweep.csv").write_text("an earlier sweep")
    (tmp_path / "whatif_capacity.png").write_text("stale")
    r = runner.invoke(app, ["what-if", PLAN, "--capacity", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whatif_capacity.csv", "whatif_sweep.csv"]


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout_s, "the command never created its --out directory"
        time.sleep(0.05)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_during_a_long_simulate_exits_130_with_one_line(tmp_path):
    out = tmp_path / "out"  # created by the command once it starts, before the simulation
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "clustersim.cli", "simulate", LLAMA, "--set",
                             "workload.num_requests=200000", "--out", str(out)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out, proc)
        time.sleep(1.0)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stdout == ""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines == [f"interrupted: simulate {LLAMA}; nothing written to {out}/"], stderr
    assert list(out.iterdir()) == []
