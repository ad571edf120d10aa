"""Smoke: every example deployment simulates end to end with the default cost model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simulator import simulate
from workloads.deployment import load_deployment

EXAMPLES = [p for p in sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))
            if "serving" in (yaml.safe_load(p.read_text()) or {})]  # serving deployments only


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_simulates(path):
    dep = load_deployment(path, ["workload.num_requests=40"])
    res = simulate(dep)
    s = res.summary
    assert s["counts"]["finished"] == 40
    assert s["ttft_ms"]["p50"] > 0 and s["throughput"]["output_tokens_per_s_per_device"] > 0
    assert set(s["pools"]) == set(dep.pools())
    assert (res.steps["kv_used_fraction"] <= 1.0).all()
