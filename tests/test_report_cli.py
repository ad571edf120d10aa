"""``--report`` and ``clustersim check`` through the CLI: usage errors, files, exit codes, JSON."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from clustersim import checks
from clustersim.checks.core import Check, Tolerance
from clustersim.cli import app

runner = CliRunner()
SERVING = "examples/llama-3.1-70b_h200_tp4_colocated.yaml"


@pytest.mark.parametrize("args", [["simulate", SERVING], ["plan", "examples/plan_deepseek-v3_h200x32.yaml"],
                                  ["what-if", "examples/plan_deepseek-v3_h200x32.yaml", "--capacity"], ["check"]])
def test_report_needs_out(args):
    res = runner.invoke(app, [*args, "--report"])
    assert res.exit_code == 2
    assert res.output.strip() == "error: --report needs --out DIR: the report is written there as report.html"


def test_report_without_plotly_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly now raises ImportError
    res = runner.invoke(app, ["simulate", SERVING, "--out", str(tmp_path), "--report"])
    assert res.exit_code == 2
    assert res.output.strip() == "error: --report needs plotly: pip install 'clustersim[report]'"
    assert not (tmp_path / "summary.json").exists()  # refused before running


def test_simulate_report_written_and_a_rerun_without_it_removes_it(tmp_path):
    args = ["simulate", SERVING, "--set", "workload.num_requests=200", "--out", str(tmp_path)]
    assert runner.invoke(app, [*args, "--report"]).exit_code == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Plotly.newPlot" in page and "TTFT" in page
    assert "No KV transfers: the deployment is colocated" in page
    assert runner.invoke(app, args).exit_code == 0
    assert not (tmp_path / "report.html").exists()


def test_serving_report_is_deterministic():
    import clustersim
    from clustersim import api

    done = api.run_job(api.SimulateJob(SERVING, ("workload.num_requests=100",)))
    done.summary.pop("versions")
    assert api.report_page(done) == api.report_page(done)
    assert clustersim.simulate(SERVING, ["workload.num_requests=100"]).op_seconds.equals(done.result.op_seconds)


def test_serving_result_records_op_seconds_and_transfers():
    import clustersim

    res = clustersim.simulate("examples/deepseek-v3_h800_pd-disagg.yaml", ["workload.num_requests=300"])
    assert set(res.op_seconds["pool"]) == {"prefill", "decode"}
    assert {"model", "transfer"} <= set(res.op_seconds["source"])
    busy = res.steps.groupby("pool")["step_s"].sum()
    per_pool = res.op_seconds.groupby("pool")["seconds"].sum()
    assert (per_pool > 0.5 * busy).all()  # every step's operators are counted (overlap makes them exceed it)
    tr = res.transfers
    assert len(tr) == res.summary["engine"]["kv_transfers"] > 0
    assert tr["bytes"].sum() == pytest.approx(res.summary["engine"]["kv_bytes_moved"])
    assert (tr["end_s"] >= tr["start_s"]).all()


def test_check_text_json_and_files(tmp_path):
    res = runner.invoke(app, ["check", "--only", "accounting", "--only", "comm.cm384", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "known gap" in res.output and "isca.train_flops.qwen72b" in res.output
    assert "cm384.comm_ops/ep256/combine/latency" in res.output and "0 fail" in res.output
    doc = json.loads((tmp_path / "check.json").read_text())
    assert doc["passed"] and doc["counts"]["fail"] == 0 and len(doc["checks"]) == len(
        checks.load_reference("isca_accounting.yaml")["targets"]) + 8
    out = runner.invoke(app, ["check", "--only", "measured", "--json"])
    data = json.loads(out.output)
    assert {c["role"] for c in data["checks"]} == {"fit", "holdout"}
    assert {"median_abs_error", "worst_abs_error"} <= set(data["summary"][0])


def test_check_unknown_family_is_one_line():
    res = runner.invoke(app, ["check", "--only", "nope"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "valid: accounting" in res.output


def test_check_exits_1_when_a_check_fails(monkeypatch):
    bad = Check("demo", "demo.x", "a source", "", "q", "u", 100.0, 150.0, Tolerance(rel=0.1))
    monkeypatch.setitem(checks.FAMILIES, "demo", lambda: [bad])
    res = runner.invoke(app, ["check", "--only", "demo"])
    assert res.exit_code == 1 and "fail" in res.output and "demo.x" in res.output
