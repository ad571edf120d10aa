"""``simulate --trace`` (issue 11 item 18): a training job writes its pipeline timeline as a
Chrome/Perfetto trace.json; ``--trace`` without ``--out`` is a one-line error before running."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clustersim.cli import app

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "examples/train_deepseek-v3_h800_2048.yaml"
SERVE = ROOT / "examples/llama-3.1-70b_h200_tp4_colocated.yaml"
runner = CliRunner()


def test_training_trace_is_written_and_matches_the_step(tmp_path):
    r = runner.invoke(app, ["simulate", str(TRAIN), "--set", "training.global_batch=4096", "--trace",
                            "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    step_s = json.loads(r.output)["summary"]["step_time_s"]
    trace = json.loads((tmp_path / "trace.json").read_text())
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    by_rank = defaultdict(list)
    for e in spans:
        by_rank[e["tid"]].append(e)
    assert sorted(by_rank) == list(range(16))  # PP16 DualPipe: one thread per rank
    for events in by_rank.values():  # a rank runs one action at a time
        events.sort(key=lambda e: e["ts"])
        assert all(a["ts"] + a["dur"] <= b["ts"] + 1e-6 for a, b in zip(events, events[1:]))
    assert max(e["ts"] + e["dur"] for e in spans) == pytest.approx(step_s * 1e6, rel=1e-9)
    names = {e["name"] for e in spans}
    assert {"F", "B", "F&B", "optimizer"} <= names
    # every micro-batch's forward runs once per stage: 32 micro-batches x 16 stages
    assert sum(e["name"].count("F") for e in spans) == 32 * 16


def test_trace_does_not_change_the_training_summary(tmp_path):
    a = runner.invoke(app, ["simulate", str(TRAIN), "--set", "training.global_batch=4096", "--json"])
    b = runner.invoke(app, ["simulate", str(TRAIN), "--set", "training.global_batch=4096", "--json", "--trace",
                            "--out", str(tmp_path)])
    assert json.loads(a.output)["summary"] == json.loads(b.output)["summary"]


@pytest.mark.parametrize("config", [TRAIN, SERVE])
def test_trace_without_out_is_one_line_exit_2_and_writes_nothing(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["simulate", str(config), "--trace"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == ["error: --trace needs --out DIR: the trace is written there as trace.json"]
    assert list(tmp_path.iterdir()) == []


def test_serving_trace_still_written(tmp_path):
    r = runner.invoke(app, ["simulate", str(SERVE), "--set", "workload.num_requests=20", "--trace",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert any(e["name"] == "first_token" for e in trace["traceEvents"])
