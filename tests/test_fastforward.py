"""Runs of decode steps advanced in closed form (``simulator.fastforward``) give exactly what
stepping gives: every table, the summary, the operator seconds, the transfers and the event log,
on every serving example and on hypothesis-drawn small deployments (with a shape-dependent cost,
where runs extend past other instances' events, and with a constant cost, where same-time events
force the run to be stepped)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.engine import Simulation
from workloads.deployment import load_deployment, load_deployment_text

ROOT = Path(__file__).resolve().parents[1]
SERVING_EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.yaml")
                          if not p.name.startswith(("plan_", "train_")))


def _run(dep, fast_forward: bool, **kw):
    sim = Simulation(dep, fast_forward=fast_forward, trace=True, **kw)
    return sim, sim.run()


def assert_same(a, b) -> None:
    """Two SimResults are identical (tables cell for cell and dtype for dtype, summary as JSON)."""
    for name in ("requests", "steps", "op_seconds", "transfers", "cache"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True, obj=name)
    assert json.dumps(a.summary, sort_keys=True) == json.dumps(b.summary, sort_keys=True)
    assert a.events == b.events


@pytest.mark.parametrize("example", SERVING_EXAMPLES)
def test_every_serving_example_is_identical_to_stepping(example):
    dep = load_deployment(ROOT / "examples" / example, ["workload.num_requests=300"])
    sim, fast = _run(dep, True)
    _, slow = _run(dep, False)
    assert_same(fast, slow)
    if example.startswith("llama"):  # colocated, no MTP: most steps are advanced in closed form
        assert sim.fast_forwarded_steps > len(fast.steps) / 2 and not sim.stepped_again


@pytest.mark.parametrize("router", ["round_robin", "least_outstanding", "kv_aware"])
@pytest.mark.parametrize("batching", ["splitfuse", "prefill_first", "decode_first"])
def test_policies_and_routers_with_preemption_are_identical_to_stepping(router, batching):
    """Closed-form runs, stepping, and stepping without lanes (``simulator.lanes``) agree under every
    batch policy x router with preemption."""
    dep = load_deployment(ROOT / "examples/llama-3.1-70b_h200_tp4_colocated.yaml",
                          ["workload.num_requests=150", "workload.arrival.rate_per_s=20",
                           f"scheduler.router={router}", f"scheduler.batching={batching}"])
    sim, fast = _run(dep, True, kv_capacity_tokens=64 * 400)  # tight KV: runs stop before preemptions
    _, slow = _run(dep, False, kv_capacity_tokens=64 * 400)
    _, plain = _run(dep, False, kv_capacity_tokens=64 * 400, lanes=False)  # per-stream arrays (simulator.lanes off)
    if batching == "splitfuse":
        assert fast.summary["counts"]["preemptions"] > 0
    assert sim.fast_forwarded_steps > 0
    assert_same(fast, slow)
    assert_same(slow, plain)


def test_same_time_events_fall_back_to_stepping(tmp_path):
    """Two instances stepping in lockstep (same arrivals, same constant cost): their steps share
    times, whose order simpy decides by scheduling order, so the run is stepped."""
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens,cached_tokens\n0.0,100,40,0\n0.0,100,40,0\n"
                     "0.5,100,30,0\n")
    dep = load_deployment_text(yaml.safe_dump({
        "cluster": "h200-node", "model": "llama-3.1-8b",
        "serving": {"mode": "colocated", "pool": {"instances": 2, "devices_per_instance": 1}},
        "scheduler": {"router": "round_robin"},
        "workload": {"arrival": {"kind": "trace", "path": str(trace)}}}), check=False)
    cost = lambda role, shape: 0.25 if shape.phase == "prefill" else 0.01  # noqa: E731
    sim, fast = _run(dep, True, step_cost=cost)
    _, slow = _run(dep, False, step_cost=cost)
    assert sim.stepped_again
    assert_same(fast, slow)


@st.composite
def deployments(draw):
    samples = draw(st.integers(1, 3))
    pool = {
        "instances": draw(st.integers(1, 3)), "devices_per_instance": 1,
        "max_batch_size": draw(st.integers(samples, 24)),
        "max_tokens_per_iteration": draw(st.integers(16, 512)),
        "chunked_prefill": draw(st.booleans()),
        "mtp_depth": draw(st.sampled_from([0, 0, 0, 1])), "mtp_acceptance": 0.7,
    }
    prompt_max, output_max = draw(st.integers(1, 300)), draw(st.integers(1, 400))
    mode = draw(st.sampled_from(["colocated", "colocated", "disaggregated"]))
    serving = {"mode": "colocated", "pool": pool} if mode == "colocated" else {
        "mode": "disaggregated", "prefill": {**pool, "mtp_depth": 0}, "decode": pool}
    doc = {
        "cluster": "h200-node", "model": "llama-3.1-8b", "serving": serving,
        "scheduler": {"router": draw(st.sampled_from(["round_robin", "least_outstanding", "kv_aware"])),
                      "preemption": draw(st.sampled_from(["recompute", "swap"])),
                      "batching": draw(st.sampled_from(["splitfuse", "prefill_first", "decode_first"]))},
        "workload": {
            "arrival": {"kind": "poisson", "rate_per_s": draw(st.floats(1.0, 200.0))},
            "num_requests": draw(st.integers(1, 40)),
            "prompt_tokens": {"kind": "uniform", "min_tokens": 1, "max_tokens": prompt_max},
            "output_tokens": {"kind": "uniform", "min_tokens": 1, "max_tokens": output_max},
            "samples_per_request": samples,
            "sample_policy": draw(st.sampled_from(["all", "first_finish", "majority_vote", "beam"])),
        },
        "seed": draw(st.integers(0, 2**16)),
    }
    # the largest request fits (the engine refuses a deployment where one cannot), often tightly
    worst_blocks = -(-prompt_max // 64) + samples * -(-output_max // 64)
    kv_tokens = 64 * (worst_blocks + draw(st.integers(0, 64)))
    constant = draw(st.booleans())
    return load_deployment_text(yaml.safe_dump(doc), check=False), kv_tokens, constant


def _shape_cost(role, shape):
    return 0.01 + 1e-4 * shape.total_new_tokens + 1e-7 * shape.total_context_tokens


def _constant_cost(role, shape):
    return 0.05 if shape.phase == "prefill" else 0.02


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deployments())
def test_small_deployments_are_identical_to_stepping(case):
    dep, kv_tokens, constant = case
    cost = _constant_cost if constant else _shape_cost
    _, fast = _run(dep, True, step_cost=cost, kv_capacity_tokens=kv_tokens)
    _, slow = _run(dep, False, step_cost=cost, kv_capacity_tokens=kv_tokens)
    assert_same(fast, slow)


@pytest.mark.parametrize("router", ["least_outstanding", "kv_aware"])
def test_sessions_without_a_prefix_cache_are_identical_to_stepping(router):
    """Closed-loop turns arrive when an earlier turn finishes (``simulator.sessions``), through
    ``Simulation.arrive`` like the open-loop arrivals: extended runs are cut by them alike."""
    doc = yaml.safe_load((ROOT / "examples/sessions_llama-3.1-8b_h200_prefix-cache.yaml").read_text())
    del doc["prefix_cache"]
    doc["workload"]["num_requests"] = 200
    doc["scheduler"]["router"] = router
    dep = load_deployment_text(yaml.safe_dump(doc))
    sim, fast = _run(dep, True)
    _, slow = _run(dep, False)
    assert sim.fast_forwarded_steps > 0 and fast.summary["counts"]["session_turns_released"] > 0
    assert_same(fast, slow)
