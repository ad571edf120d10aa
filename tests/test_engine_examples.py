"""Smoke: every example deployment simulates end to end with the default cost model."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import simulate
from workloads.deployment import load_deployment
from workloads.ops import ParallelismError

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_simulates(path):
    dep = load_deployment(path, ["workload.num_requests=40"])
    try:
        res = simulate(dep)
    except ParallelismError as exc:  # pragma: no cover - depends on simulator/instance.py
        if "routed experts" in str(exc) and any(p.moe.redundant_experts for p in dep.pools().values()):
            pytest.xfail(f"InstanceCost does not accept EP over redundant expert slots yet: {exc}")
        raise
    s = res.summary
    assert s["counts"]["finished"] == 40
    assert s["ttft_ms"]["p50"] > 0 and s["throughput"]["output_tokens_per_s_per_device"] > 0
    assert set(s["pools"]) == set(dep.pools())
    assert (res.steps["kv_used_fraction"] <= 1.0).all()
