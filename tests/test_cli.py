"""The clustersim CLI: catalog commands, validation, estimates, and one-line errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clustersim.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_hardware_list():
    r = run("hardware", "list", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    names = {c["name"] for c in data["clusters"]}
    assert {"h800-mpft", "h800-mrft", "h100-ib", "h200-node", "gb200-nvl72", "cloudmatrix384"} <= names
    assert "h200-sxm" in data["devices"]


@pytest.mark.parametrize("name", ["h800-mpft", "h800-mrft", "h100-ib", "h200-node", "gb200-nvl72", "cloudmatrix384"])
def test_hardware_show_cluster_json(name):
    r = run("hardware", "show", name, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    for key in ("endpoints", "switches", "links", "cost_per_endpoint_usd"):
        assert key in data


def test_hardware_show_device_table():
    r = run("hardware", "show", "h200")
    assert r.exit_code == 0, r.output
    assert "h200" in r.output


def test_mpft_counts_via_cli():
    data = json.loads(run("hardware", "show", "h800-mpft", "--json").output)
    assert (data["endpoints"], data["switches"], data["links"]) == (16384, 768, 16384)


def test_unknown_hardware_lists_known():
    r = run("hardware", "show", "h300")
    assert r.exit_code == 2
    assert "h200-node" in r.output and "Traceback" not in r.output


def test_model_show_json_keys():
    r = run("model", "show", "deepseek-r1", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    for key in ("total_params", "activated_params", "kv_cache_bytes_per_token", "training_flops_per_token"):
        assert key in data
    assert data["kv_cache_bytes_per_token"] == 70272


def test_model_list():
    r = run("model", "list")
    assert r.exit_code == 0 and "llama-3.1-405b" in r.output


def test_unknown_model_exit_2():
    r = run("model", "show", "gpt-5")
    assert r.exit_code == 2 and "deepseek-v3" in r.output


def test_validate_example():
    r = run("validate", str(ROOT / "examples" / "deepseek-v3_h800_pd-disagg.yaml"), "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["pools"]["decode"]["devices_per_instance"] == 144


def test_validate_bad_file_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "examples" / "llama-3.1-70b_h200_tp4_colocated.yaml").read_text().replace("tp: 4", "tp: 3"))
    r = run("validate", str(bad))
    assert r.exit_code == 2
    line = r.output.strip()
    assert "\n" not in line and "bad.yaml:" in line and "attention.tp" in line and "valid:" in line


def test_validate_set_override(tmp_path):
    r = run("validate", str(ROOT / "examples" / "llama-3.1-70b_h200_tp4_colocated.yaml"),
            "--set", "serving.pool.instances=3")
    assert r.exit_code == 2 and "exceed" in r.output


def test_estimate_step_json():
    r = run("estimate", "step", "--model", "llama-3.1-8b", "--hardware", "h200", "--phase", "prefill",
            "--batch", "1", "--seq", "2048", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["seconds"] > 0 and data["ops"] and all("source" in o for o in data["ops"])


def test_estimate_step_tp_adds_all_reduce():
    data = json.loads(run("estimate", "step", "--model", "llama-3.1-70b", "--hardware", "h200", "--phase",
                          "decode", "--batch", "8", "--context", "1024", "--tp", "4", "--json").output)
    assert any(o["name"].endswith("all_reduce") for o in data["ops"]) and data["comm_s"] > 0


@pytest.mark.parametrize("cluster", ["h800-mpft", "h800-mrft", "h100-ib", "h200-node", "gb200-nvl72", "cloudmatrix384"])
def test_estimate_collective_every_cluster(cluster):
    gpus = {"h200-node": 8, "gb200-nvl72": 72}.get(cluster, 256)
    r = run("estimate", "collective", "--hardware", cluster, "--op", "all_to_all", "--gpus", str(gpus),
            "--bytes-per-rank", str(2**24), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["seconds"] > 0


def test_estimate_dispatch_cm384():
    r = run("estimate", "dispatch", "--hardware", "cloudmatrix384", "--ep", "256", "--tokens-per-rank", "128", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["dispatch_dtype"] == "int8" and data["seconds"] > 0


def test_estimate_moe_layer_and_attention():
    r = run("estimate", "moe-layer", "--model", "deepseek-v3", "--hardware", "h200", "--ep", "4",
            "--tokens-per-rank", "512", "--json")
    assert r.exit_code == 0, r.output
    names = {o["name"] for o in json.loads(r.output)["ops"]}
    assert {"moe.router", "moe.dispatch", "moe.experts_gate_up", "moe.combine", "moe.shared_gate_up"} <= names
    for kind in ("ulysses", "ring"):
        r = run("estimate", "attention", "--hardware", "h200", "--sp", "4", "--sp-kind", kind, "--seq", "32768",
                "--heads", "32", "--head-dim", "128", "--json")
        assert r.exit_code == 0, r.output


def test_estimate_serving_decode_and_prefill():
    r = run("estimate", "serving", "--model", "deepseek-v3", "--hardware", "h800-mpft", "--phase", "decode",
            "--ep", "128", "--batch-per-device", "128", "--context", "4096", "--micro-batches", "2",
            "--mtp-acceptance", "0.8", "--dtype", "fp8", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["tpot_s"] > 0 and d["output_tokens_per_s_per_device"] > 0
    r = run("estimate", "serving", "--model", "deepseek-v3", "--hardware", "h800-mpft", "--phase", "prefill",
            "--ep", "32", "--batch-per-device", "4", "--seq", "4096", "--dtype", "fp8", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["input_tokens_per_s_per_device"] > 0


def test_estimate_bad_args_exit_2():
    r = run("estimate", "step", "--model", "llama-3.1-8b", "--hardware", "h200", "--phase", "sideways", "--seq", "3")
    assert r.exit_code == 2 and "valid: prefill, decode" in r.output
    r = run("estimate", "attention", "--hardware", "h200", "--sp", "3", "--seq", "300", "--heads", "32",
            "--head-dim", "128")
    assert r.exit_code == 2 and "does not divide 32 heads" in r.output
