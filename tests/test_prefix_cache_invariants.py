"""Property test of the prefix cache inside the engine: after every step of every instance,
cached + active KV blocks never exceed its capacity and the cache's books balance (idle
entries have no user, the idle count is what the KV accounting holds); at the end every
request (every session turn) finished once, no KV is in use anywhere and every cached entry
is idle. Scenarios: colocated and disaggregated, tight KV (preemption by recompute or swap),
sessions, shared prefixes or none, capped caches, a shared pool."""

from __future__ import annotations

from collections import Counter

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.engine import Simulation
from simulator.kv import BLOCK_TOKENS
from simulator.workload import generate_workload
from workloads.deployment import load_deployment_text


@st.composite
def scenarios(draw):
    kind = draw(st.sampled_from(["sessions", "shared_prefix", "none"]))
    samples = 1 if kind == "sessions" else draw(st.integers(1, 2))
    pool = {"instances": draw(st.integers(1, 3)), "devices_per_instance": 1,
            "max_batch_size": draw(st.integers(samples, 12)), "max_tokens_per_iteration": draw(st.integers(64, 512)),
            "chunked_prefill": draw(st.booleans()), "mtp_depth": draw(st.integers(0, 1)), "mtp_acceptance": 0.7}
    mode = draw(st.sampled_from(["colocated", "disaggregated"]))
    serving = {"mode": "colocated", "pool": pool} if mode == "colocated" else {
        "mode": "disaggregated", "prefill": {**pool, "mtp_depth": 0}, "decode": pool}
    workload = {
        "arrival": {"kind": "poisson", "rate_per_s": draw(st.floats(1.0, 100.0))},
        "num_requests": draw(st.integers(1, 40)),
        "prompt_tokens": {"kind": "uniform", "min_tokens": 1, "max_tokens": draw(st.integers(1, 400))},
        "output_tokens": {"kind": "uniform", "min_tokens": 1, "max_tokens": draw(st.integers(1, 200))},
        "samples_per_request": samples,
    }
    if kind == "sessions":
        workload["prefix"] = {"kind": "sessions", "turns": {"kind": "geometric", "mean": draw(st.floats(1.0, 4.0))},
                              "think_time_s": draw(st.sampled_from([0.0, 0.05])),
                              "system_prompt_tokens": draw(st.sampled_from([0, 100, 200])),
                              "system_prompts": draw(st.integers(1, 3)), "max_context_tokens": 1500}
    elif kind == "shared_prefix":
        workload["prefix"] = {"kind": "shared_prefix", "reuse_ratio": draw(st.floats(0.0, 0.9)),
                              "prefixes": draw(st.integers(1, 3))}
    cache = {"max_cached_tokens": draw(st.sampled_from([None, 0, 64, 640]))}
    if draw(st.booleans()):
        cache["shared_pool"] = {"capacity_tokens": draw(st.sampled_from([64, 1000, 10**6]))}
    doc = {"cluster": "h200-node", "model": "llama-3.1-8b", "serving": serving,
           "scheduler": {"router": draw(st.sampled_from(["round_robin", "least_outstanding", "kv_aware"])),
                         "preemption": draw(st.sampled_from(["recompute", "swap"]))},
           "workload": workload, "prefix_cache": cache, "seed": draw(st.integers(0, 2**16))}
    dep = load_deployment_text(yaml.safe_dump(doc), check=False)
    wl = generate_workload(dep.workload, *(np.random.default_rng(s) for s in np.random.SeedSequence(dep.seed).spawn(2)))
    worst = 0
    if wl.num_requests:
        need = -(-wl.prompt_tokens // BLOCK_TOKENS) + (-(-wl.output_tokens // BLOCK_TOKENS)).sum(axis=1)
        worst = int(need.max())
    kv_tokens = BLOCK_TOKENS * (worst + 2 * samples + draw(st.integers(0, 12)))  # tight: forces preemption
    return dep, kv_tokens


def _cost(role, shape):
    return 0.01 + 1e-4 * shape.total_new_tokens + 1e-7 * shape.total_context_tokens


def _books_balance(server) -> None:
    kv, c = server.kv, server.cache.local
    assert kv.used_blocks + kv.idle_blocks <= kv.capacity_blocks
    assert kv.peak_total_blocks <= kv.capacity_blocks and kv.used_blocks >= 0
    if c is None:
        assert kv.idle_blocks == 0
        return
    assert kv.idle_blocks == len(c.idle) * c.entry_blocks
    assert all(c.ref[h] == 0 for h in c.idle)
    assert sum(1 for v in c.ref.values() if v == 0) == len(c.idle)
    busy = sum(1 for v in c.ref.values() if v > 0) * c.entry_blocks
    assert busy <= kv.used_blocks  # entries in use are part of the KV in use
    if c.max_idle_entries is not None:
        assert len(c.idle) <= c.max_idle_entries


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_cached_plus_active_kv_never_exceed_capacity(scenario):
    dep, kv_tokens = scenario
    sim = Simulation(dep, step_cost=_cost, trace=True, kv_capacity_tokens=kv_tokens)
    steps = [0]
    for s in sim.servers:
        apply = s._apply

        def checked(plan, _apply=apply, _s=s):
            _apply(plan)
            _books_balance(_s)
            steps[0] += 1
        s._apply = checked
    res = sim.run()
    req = res.requests
    assert req["finish_s"].notna().all()
    kinds = Counter((kind, rid) for _, kind, rid, _ in res.events)
    assert all(kinds[("finish", r)] == 1 and kinds[("arrival", r)] == 1 for r in range(len(req)))
    for s in sim.servers:
        _books_balance(s)
        assert s.kv.used_blocks == 0 and s.committed == 0 and s.outstanding == 0
        if s.cache.local is not None:
            assert all(v == 0 for v in s.cache.local.ref.values()) and not s.cache.held
    pc = res.summary["prefix_cache"]
    assert 0 <= pc["hit_tokens"] <= pc["prompt_tokens"] == (req["prompt_tokens"].sum() if len(req) else 0)
    assert (req["cached_tokens"] < req["prompt_tokens"]).all()


def test_preempting_the_last_decode_stream_leaves_an_empty_batch():
    """Hypothesis found it: a step whose KV growth preempts every running stream (one instance,
    tight KV) must go on with an empty decode batch, not reduce an empty array."""
    doc = {"cluster": "h200-node", "model": "llama-3.1-8b",
           "serving": {"mode": "colocated", "pool": {"instances": 1, "devices_per_instance": 1, "max_batch_size": 2,
                       "max_tokens_per_iteration": 64, "chunked_prefill": True}},
           "scheduler": {"router": "round_robin", "preemption": "recompute"},
           "workload": {"arrival": {"kind": "poisson", "rate_per_s": 4.0}, "num_requests": 24,
                        "prompt_tokens": {"kind": "uniform", "min_tokens": 1, "max_tokens": 153},
                        "output_tokens": {"kind": "uniform", "min_tokens": 1, "max_tokens": 81}},
           "seed": 0}
    dep = load_deployment_text(yaml.safe_dump(doc), check=False)
    res = Simulation(dep, step_cost=_cost, kv_capacity_tokens=448).run()
    assert res.requests["finish_s"].notna().all() and (res.requests["preemptions"] > 0).any()
