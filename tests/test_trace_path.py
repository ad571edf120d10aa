"""A trace ``path`` in a YAML file is relative to the file's folder (issue 11 item 19); an absolute
path stays; a path given with ``--set`` is relative to the working directory."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from clustersim.cli import app
from workloads.deployment import load_deployment

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _write_case(tmp_path: Path, trace_ref: str | None = None) -> Path:
    """cfg/deploy.yaml replaying data/trace.csv (12 requests), referred to as ``trace_ref``."""
    (tmp_path / "data").mkdir()
    rows = ["arrival_s,prompt_tokens,output_tokens"] + [f"{0.1 * i:.1f},{256 + 8 * i},{16 + i}" for i in range(12)]
    (tmp_path / "data" / "trace.csv").write_text("\n".join(rows) + "\n")
    doc = yaml.safe_load((ROOT / "examples/llama-3.1-70b_h200_tp4_colocated.yaml").read_text())
    doc["workload"] = {"arrival": {"kind": "trace", "path": trace_ref or "../data/trace.csv"}}
    (tmp_path / "cfg").mkdir()
    cfg = tmp_path / "cfg" / "deploy.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def _simulate(*args: str):
    r = runner.invoke(app, ["simulate", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)["summary"]


def test_relative_trace_path_resolves_against_the_yaml_folder_from_another_cwd(tmp_path, monkeypatch):
    cfg = _write_case(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = _simulate(str(cfg))
    assert s["counts"]["requests"] == 12 and s["counts"]["finished"] == 12
    monkeypatch.chdir(tmp_path)  # the YAML named by a relative path
    assert _simulate("cfg/deploy.yaml")["counts"]["finished"] == 12
    dep = load_deployment(cfg)
    assert dep.workload.arrival.path == str(tmp_path / "data" / "trace.csv")


def test_absolute_trace_path_stays(tmp_path, monkeypatch):
    cfg = _write_case(tmp_path, trace_ref=str(tmp_path / "data" / "trace.csv"))
    monkeypatch.chdir(tmp_path / "data")
    assert load_deployment(cfg).workload.arrival.path == str(tmp_path / "data" / "trace.csv")
    assert _simulate(str(cfg))["counts"]["finished"] == 12


def test_set_trace_path_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    cfg = _write_case(tmp_path)
    monkeypatch.chdir(tmp_path)
    s = _simulate(str(cfg), "--set", "workload.arrival.path=data/trace.csv")
    assert s["counts"]["finished"] == 12


def test_missing_trace_is_one_line_naming_the_resolved_file(tmp_path, monkeypatch):
    cfg = _write_case(tmp_path, trace_ref="nothere.csv")
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["simulate", str(cfg)])
    assert r.exit_code == 2
    assert len(r.output.strip().splitlines()) == 1
    assert str(tmp_path / "cfg" / "nothere.csv") in r.output


def test_plan_trace_path_resolves_against_the_plan_folder(tmp_path, monkeypatch):
    import planner

    _write_case(tmp_path)
    doc = yaml.safe_load((ROOT / "examples/plan_deepseek-v3_h200x32.yaml").read_text())
    doc["workload"] = {"arrival": {"kind": "trace", "path": "../data/trace.csv"}}
    plan = tmp_path / "cfg" / "plan.yaml"
    plan.write_text(yaml.safe_dump(doc))
    monkeypatch.chdir(tmp_path / "data")
    assert planner.load_plan(plan).workload.arrival.path == str(tmp_path / "data" / "trace.csv")
