"""One test per deployment rule, named after it; each checks the located one-line message."""

from __future__ import annotations

from pathlib import Path

import pytest

from workloads.deployment import load_deployment, load_deployment_text
from workloads.deployment_rules import pool_memory
from workloads.yamlloc import ConfigError

EXAMPLES = sorted(p for p in (Path(__file__).resolve().parents[1] / "examples").glob("*.yaml")
                  if not p.name.startswith(("plan_", "train_")))  # plans and training jobs have their own loaders

DENSE = """\
cluster: h200-node
model: llama-3.1-70b
serving:
  mode: colocated
  pool:
    instances: 2
    devices_per_instance: 4
    attention: {tp: 4}
workload:
  arrival: {kind: poisson, rate_per_s: 1.0}
  num_requests: 10
"""

MOE = """\
cluster: h800-mpft
model: deepseek-v3
weight_dtype: fp8
serving:
  mode: disaggregated
  prefill:
    instances: 1
    devices_per_instance: 32
    attention: {tp: 4, dp: 8}
    moe: {ep: 32, redundant_experts: 32}
  decode:
    instances: 1
    devices_per_instance: 144
    attention: {dp: 144}
    moe: {ep: 144, redundant_experts: 32}
workload:
  arrival: {kind: poisson, rate_per_s: 1.0}
  num_requests: 10
"""


def _err(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_deployment_text(text, "d.yaml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("d.yaml:")
    return msg


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(path):
    load_deployment(path)


def test_valid_dense_and_moe():
    load_deployment_text(DENSE, "d.yaml")
    load_deployment_text(MOE, "d.yaml")


def test_model_known():
    msg = _err(DENSE.replace("llama-3.1-70b", "llama-9"))
    assert msg.startswith("d.yaml:2:1: model:") and "llama-3.1-70b" in msg


def test_cluster_known():
    msg = _err(DENSE.replace("h200-node", "h300-node"))
    assert msg.startswith("d.yaml:1:1: cluster:") and "h200-node" in msg


def test_dtype_supported():
    msg = _err(MOE.replace("h800-mpft", "cloudmatrix384").replace("weight_dtype: fp8", "weight_dtype: fp8"))
    assert "weight_dtype" in msg and "no fp8" in msg


def test_tp_divides_heads():
    msg = _err(DENSE.replace("devices_per_instance: 4", "devices_per_instance: 3").replace("tp: 4", "tp: 3"))
    assert "serving.pool.attention.tp: 3 does not divide 64 attention heads (valid: 1, 2, 4, 8" in msg
    assert msg.startswith("d.yaml:8:")


def test_ep_divides_experts():
    text = MOE.replace("ep: 144, redundant_experts: 32", "ep: 144, redundant_experts: 0")
    msg = _err(text)
    assert "serving.decode.moe.ep: 144 does not divide 256 routed experts (valid: 1, 2, 4, 8, 16, 32, 64, 128" in msg


def test_ep_on_dense_model():
    msg = _err(DENSE.replace("attention: {tp: 4}", "attention: {tp: 4}\n    moe: {ep: 4}"))
    assert "is dense" in msg


def test_parallelism_covers_instance():
    msg = _err(DENSE.replace("attention: {tp: 4}", "attention: {tp: 2}"))
    assert "serving.pool.devices_per_instance: 4 devices but attention tp x dp x sp x pp" in msg


def test_moe_parallelism_covers_instance():
    msg = _err(MOE.replace("moe: {ep: 32, redundant_experts: 32}", "moe: {ep: 16, redundant_experts: 32}"))
    assert "serving.prefill.moe.ep" in msg and "must equal the 32 devices" in msg


def test_pp_divides_layers():
    text = DENSE.replace("attention: {tp: 4}", "attention: {tp: 4}\n    pp: 1").replace("pp: 1", "pp: 3").replace(
        "devices_per_instance: 4", "devices_per_instance: 12").replace("instances: 2", "instances: 1")
    msg = _err(text.replace("h200-node", "h100-ib"))
    assert "serving.pool.pp: 3 does not divide 80 layers" in msg


def test_tp_within_node():
    text = DENSE.replace("h200-node", "h100-ib").replace("devices_per_instance: 4", "devices_per_instance: 16").replace(
        "tp: 4", "tp: 16").replace("instances: 2", "instances: 1")
    msg = _err(text.replace("llama-3.1-70b", "llama-3.1-405b"))
    assert "serving.pool.attention.tp: tp 16 spans beyond one" in msg


def test_mtp_needs_module():
    msg = _err(DENSE.replace("attention: {tp: 4}", "attention: {tp: 4}\n    mtp_depth: 1\n    mtp_acceptance: 0.8"))
    assert "serving.pool.mtp_depth" in msg and "no MTP module" in msg


def test_instances_fit_cluster():
    msg = _err(DENSE.replace("instances: 2", "instances: 3"))
    assert "serving: pool 3x4 = 12 devices exceed cluster h200-node's 8" in msg


def test_memory_fits_weights():
    text = DENSE.replace("llama-3.1-70b", "llama-3.1-405b").replace("instances: 2", "instances: 1")
    msg = _err(text)
    assert "weights need" in msg and "GiB per device" in msg


def test_memory_fits_min_kv():
    # 70B on 2 H200s leaves ~60 GiB, far more than one 4K request: fits. A 1M-token request does not.
    text = DENSE.replace("devices_per_instance: 4", "devices_per_instance: 2").replace("tp: 4", "tp: 2").replace(
        "num_requests: 10", "num_requests: 10\n  prompt_tokens: {kind: fixed, tokens: 1000000}")
    msg = _err(text)
    assert "less than one longest request" in msg


def test_trace_replays(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,2\n1,x,2\n")
    text = DENSE.replace("arrival: {kind: poisson, rate_per_s: 1.0}", f"arrival: {{kind: trace, path: {trace}}}")
    msg = _err(text)
    assert msg.startswith("d.yaml:10:") and f"workload.arrival.path: {trace}:3: prompt_tokens: 'x' is not a number" in msg
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,2\n1,12,2\n")
    load_deployment_text(text, "d.yaml")


def test_pool_memory_splits_experts_over_ep():
    from hardware.catalog import get_device
    from workloads.models import get_model

    dep = load_deployment_text(MOE, "d.yaml")
    m = get_model("deepseek-v3")
    dev = get_device("h800")
    small = pool_memory(m, dep.serving.decode, dev, "fp8", "bf16")
    big = pool_memory(m, dep.serving.prefill, dev, "fp8", "bf16")
    # EP144 holds 2 expert slots per GPU, EP32 holds 9: prefill devices carry more expert bytes.
    assert big.weight_bytes > small.weight_bytes
    assert small.kv_bytes_per_token == 70272
