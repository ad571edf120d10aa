"""CLI main jobs: simulate (serving and training), plan, what-if, and their files."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from clustersim.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_simulate_writes_outputs_and_is_deterministic(tmp_path):
    ex = str(ROOT / "examples" / "llama-3.1-70b_h200_tp4_colocated.yaml")
    args = ["simulate", ex, "--set", "workload.num_requests=60", "--trace"]
    r1 = runner.invoke(app, args + ["--out", str(tmp_path / "a")])
    r2 = runner.invoke(app, args + ["--out", str(tmp_path / "b")])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output
    for name in ("summary.json", "requests.csv", "timeseries.csv", "trace.json"):
        assert (tmp_path / "a" / name).exists()
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["seed"] == 0 and len(s["config_sha256"]) == 64 and s["summary"]["counts"]["finished"] == 60
    assert s["profile"]["name"] == "h200" and s["profile"]["gpu"] == "NVIDIA H200" and "simpy" in s["versions"]
    assert s["profile"]["date_utc"].startswith("20") and s["profile"]["transfer"] is None


def test_simulate_json_disaggregated():
    r = runner.invoke(app, ["simulate", str(ROOT / "examples" / "deepseek-r1_cloudmatrix384.yaml"),
                            "--set", "workload.num_requests=200", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)["summary"]
    assert s["counts"]["finished"] == 200 and set(s["pools"]) == {"prefill", "decode"}


def test_simulate_training_job():
    r = runner.invoke(app, ["simulate", str(ROOT / "examples" / "train_deepseek-v3_h800_2048.yaml"), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["kind"] == "training" and s["summary"]["step_time_s"] > 0


def test_simulate_bad_override_is_one_line():
    r = runner.invoke(app, ["simulate", str(ROOT / "examples" / "llama-3.1-70b_h200_tp4_colocated.yaml"),
                            "--set", "scheduler.router=random"])
    assert r.exit_code == 2 and "scheduler.router" in r.output and "Traceback" not in r.output


def test_plan_writes_best_deployment_that_simulates(tmp_path):
    r = runner.invoke(app, ["plan", str(ROOT / "examples" / "plan_deepseek-v3_h200x32.yaml"), "--out",
                            str(tmp_path), "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    best = tmp_path / "best_deployment.yaml"
    assert best.exists() and (tmp_path / "ranked.csv").exists() and (tmp_path / "pareto.csv").exists()
    r = runner.invoke(app, ["simulate", str(best), "--set", "workload.num_requests=50", "--json"])
    assert r.exit_code == 0, r.output


def test_plan_training_job_ranks_by_tokens_per_day():
    from clustersim import api

    done = api.run_job(api.PlanJob(ROOT / "examples" / "train_deepseek-v3_h800_2048.yaml", max_layouts=80))
    assert done.kind == "training"
    table = done.result
    feasible = table[table.feasible]
    assert len(feasible) >= 1
    assert feasible.tokens_per_day.is_monotonic_decreasing
    assert (table[~table.feasible].reason.str.len() > 0).all()


def test_whatif_sweep_writes_table_and_plot(tmp_path):
    r = runner.invoke(app, ["what-if", str(ROOT / "examples" / "plan_deepseek-v3_h200x32.yaml"), "--sweep", "load",
                            "--values", "2,4", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)["rows"]
    assert [row["load"] for row in rows] == [2.0, 4.0]
    assert (tmp_path / "whatif_sweep.csv").exists() and (tmp_path / "whatif_sweep.png").exists()
