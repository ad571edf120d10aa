"""Deployment YAML structure: located, one-line errors (file:line:col: field: problem (valid: ...))."""

from __future__ import annotations

import pytest

from workloads.deployment import load_deployment, load_deployment_text
from workloads.yamlloc import ConfigError

BASE = """\
name: t
cluster: h200-node
model: llama-3.1-8b
serving:
  mode: colocated
  pool:
    instances: 2
    devices_per_instance: 1
workload:
  arrival: {kind: poisson, rate_per_s: 1.0}
  num_requests: 10
"""


def _err(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_deployment_text(text, "d.yaml", check=False)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_valid_structure_parses():
    dep = load_deployment_text(BASE, "d.yaml", check=False)
    assert dep.serving.pool.instances == 2
    assert dep.model_config["frozen"]


def test_unknown_field_names_line_and_valid_fields():
    msg = _err(BASE.replace("    instances: 2\n", "    instancez: 2\n"))
    assert msg.startswith("d.yaml:7:5: serving.pool.instancez: unknown field")
    assert "devices_per_instance" in msg


def test_bad_literal_lists_choices():
    msg = _err(BASE + "scheduler: {router: random}\n")
    assert msg.startswith("d.yaml:12:")
    assert "scheduler.router" in msg and "round_robin" in msg and "kv_aware" in msg


def test_bad_mode_lists_choices():
    msg = _err(BASE.replace("mode: colocated", "mode: split"))
    assert "serving" in msg and "colocated" in msg and "disaggregated" in msg


def test_missing_required_field():
    msg = _err(BASE.replace("model: llama-3.1-8b\n", ""))
    assert "model: required field is missing" in msg


def test_negative_value_located():
    msg = _err(BASE.replace("instances: 2", "instances: 0"))
    assert msg.startswith("d.yaml:7:5: serving.pool.instances:")


def test_yaml_syntax_error_located():
    msg = _err("name: [unclosed\n")
    assert msg.startswith("d.yaml:") and "invalid YAML" in msg


def test_duplicate_key_located():
    msg = _err(BASE + "seed: 1\nseed: 2\n")
    assert "duplicate key" in msg and "d.yaml:13:1" in msg


def test_workload_must_end():
    msg = _err(BASE.replace("  num_requests: 10\n", ""))
    assert "num_requests or duration_s" in msg


def test_overrides_apply(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(BASE)
    dep = load_deployment(path, ["serving.pool.instances=3", "seed=7"], check=False)
    assert dep.serving.pool.instances == 3 and dep.seed == 7


def test_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_deployment(tmp_path / "nope.yaml", check=False)
    assert "nope.yaml" in str(info.value)
