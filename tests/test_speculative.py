"""Speculative decoding with a draft model: schema rules, acceptance chain, cost and engine."""

from __future__ import annotations

import pytest

from simulator import simulate
from simulator.engine import chain_acceptance
from workloads.deployment import load_deployment_text
from workloads.yamlloc import ConfigError

BASE = """\
cluster: h200-node
model: llama-3.1-70b
serving:
  mode: colocated
  pool:
    instances: 2
    devices_per_instance: 4
    attention: {tp: 4}
    draft_model: llama-3.1-8b
    draft_tokens: 4
    draft_accepted_tokens: 2.5
workload:
  arrival: {kind: poisson, rate_per_s: 2.0}
  prompt_tokens: {kind: fixed, tokens: 512}
  output_tokens: {kind: fixed, tokens: 64}
  num_requests: 40
"""


def _err(text):
    with pytest.raises(ConfigError) as info:
        load_deployment_text(text, "d.yaml")
    return str(info.value)


def test_chain_acceptance_solves_expected_length():
    a = chain_acceptance(2.5, 4)
    assert sum(a**i for i in range(1, 5)) == pytest.approx(2.5, rel=1e-9)
    assert chain_acceptance(4, 4) == 1.0 and chain_acceptance(0, 4) == 0.0


def test_draft_accepted_within_length():
    assert "draft_accepted_tokens" in _err(BASE.replace("draft_accepted_tokens: 2.5", "draft_accepted_tokens: 5"))


def test_draft_model_known_and_same_vocabulary():
    assert "serving.pool.draft_model" in _err(BASE.replace("draft_model: llama-3.1-8b", "draft_model: tiny-9"))
    assert "vocabulary" in _err(BASE.replace("draft_model: llama-3.1-8b", "draft_model: qwen-2.5-72b"))


def test_draft_fields_need_a_model():
    assert "need a draft_model" in _err(BASE.replace("    draft_model: llama-3.1-8b\n", ""))


def test_speculation_cuts_tpot_and_conserves_tokens():
    spec = simulate(load_deployment_text(BASE, "d.yaml"))
    plain = simulate(load_deployment_text(
        BASE.replace("    draft_model: llama-3.1-8b\n    draft_tokens: 4\n    draft_accepted_tokens: 2.5\n", ""), "d.yaml"))
    assert spec.summary["counts"]["output_tokens"] == plain.summary["counts"]["output_tokens"] == 40 * 64
    # each step costs the verification plus 4 draft steps but emits 3.5 tokens on average
    assert spec.summary["tpot_ms"]["mean"] < 0.75 * plain.summary["tpot_ms"]["mean"]
