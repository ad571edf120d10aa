"""Property tests of the serving engine: completion, token conservation, KV capacity."""

from __future__ import annotations

from collections import Counter

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.engine import Simulation
from workloads.deployment import load_deployment_text


@st.composite
def scenarios(draw):
    samples = draw(st.integers(1, 3))
    pool = {
        "instances": draw(st.integers(1, 2)), "devices_per_instance": 1,
        "max_batch_size": draw(st.integers(samples, 16)),
        "max_tokens_per_iteration": draw(st.integers(16, 512)),
        "chunked_prefill": draw(st.booleans()),
        "mtp_depth": draw(st.integers(0, 2)), "mtp_acceptance": draw(st.floats(0.2, 1.0)),
    }
    mode = draw(st.sampled_from(["colocated", "disaggregated"]))
    serving = {"mode": "colocated", "pool": pool} if mode == "colocated" else {
        "mode": "disaggregated", "prefill": {**pool, "mtp_depth": 0}, "decode": pool}
    doc = {
        "cluster": "h200-node", "model": "llama-3.1-8b",
        "serving": serving,
        "scheduler": {"router": draw(st.sampled_from(["round_robin", "least_outstanding", "kv_aware"])),
                      "preemption": draw(st.sampled_from(["recompute", "swap"]))},
        "workload": {
            "arrival": {"kind": "poisson", "rate_per_s": draw(st.floats(1.0, 200.0))},
            "num_requests": draw(st.integers(1, 40)),
            "prompt_tokens": {"kind": "uniform", "min_tokens": 1, "max_tokens": draw(st.integers(1, 300))},
            "output_tokens": {"kind": "uniform", "min_tokens": 1, "max_tokens": draw(st.integers(1, 256))},
            "prefix_cache_hit_rate": draw(st.sampled_from([0.0, 0.5])),
            "samples_per_request": samples,
            "sample_policy": draw(st.sampled_from(["all", "first_finish", "majority_vote", "beam"])),
        },
        "seed": draw(st.integers(0, 2**16)),
    }
    kv_tokens = 64 * (5 + 4 * samples + draw(st.integers(0, 16)))  # tight: forces preemption
    return load_deployment_text(yaml.safe_dump(doc), check=False), kv_tokens


def _cost(role, shape):
    return 0.01 + 1e-4 * shape.total_new_tokens + 1e-7 * shape.total_context_tokens


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_every_request_finishes_once_tokens_conserved_kv_within_capacity(scenario):
    dep, kv_tokens = scenario
    sim = Simulation(dep, step_cost=_cost, trace=True, kv_capacity_tokens=kv_tokens)
    res = sim.run()
    req = res.requests
    n = len(req)
    # every request finishes exactly once (first_finish siblings are cancelled, not finished)
    assert req["finish_s"].notna().all()
    kinds = Counter((kind, rid) for _, kind, rid, _ in res.events)
    for r in range(n):
        assert kinds[("finish", r)] == 1 and kinds[("first_token", r)] == 1 and kinds[("arrival", r)] == 1
    assert (req["finish_s"] >= req["first_token_s"]).all() and (req["first_token_s"] > req["arrival_s"]).all()
    # tokens conserved
    if dep.workload.sample_policy == "first_finish" and dep.workload.samples_per_request > 1:
        assert (req["output_tokens"] <= req["target_output_tokens"]).all()
        assert (req["cancelled_samples"] <= dep.workload.samples_per_request - 1).all()
    else:
        assert (req["output_tokens"] == req["target_output_tokens"]).all()
        assert (req["cancelled_samples"] == 0).all()
    # KV never above capacity, all returned at the end
    assert (res.steps["kv_used_fraction"] <= 1.0).all()
    for s in sim.servers:
        assert s.kv.peak_blocks <= s.kv.capacity_blocks
        assert s.kv.used_blocks == 0 and s.committed == 0 and s.outstanding == 0
    # the token budget holds beside the decode streams, except a whole prompt over it, which
    # runs as a batch by itself (no chunked prefill)
    for name, pool in dep.pools().items():
        k = 1 + (pool.speculative_depth if name != "prefill" else 0)
        s = res.steps[res.steps.pool == name]
        over = s[s.prefill_tokens > (pool.max_tokens_per_iteration - s.decode_seqs * k).clip(lower=0)]
        assert over.empty or not pool.chunked_prefill
        assert ((over.decode_seqs == 0) & (over.batch_size == 1)).all()
    # events are in time order
    times = [t for t, *_ in res.events]
    assert times == sorted(times)


LIVELOCK_SCENARIO = """\
name: deployment
cluster: h200-node
model: llama-3.1-8b
weight_dtype: bf16
kv_dtype: bf16
serving:
  mode: disaggregated
  prefill:
    instances: 2
    devices_per_instance: 1
    pp: 1
    attention:
      tp: 1
      dp: 1
      sp: 1
      sp_kind: ulysses
    moe:
      ep: 1
      tp: 1
      redundant_experts: 0
      imbalance: 1.0
    micro_batches: 1
    max_batch_size: 9
    max_tokens_per_iteration: 91
    chunked_prefill: true
    mtp_depth: 0
    mtp_acceptance: 0.3333333333333333
    draft_model: null
    draft_tokens: 0
    draft_accepted_tokens: 0.0
    kv_memory_fraction: 0.9
  decode:
    instances: 2
    devices_per_instance: 1
    pp: 1
    attention:
      tp: 1
      dp: 1
      sp: 1
      sp_kind: ulysses
    moe:
      ep: 1
      tp: 1
      redundant_experts: 0
      imbalance: 1.0
    micro_batches: 1
    max_batch_size: 9
    max_tokens_per_iteration: 91
    chunked_prefill: true
    mtp_depth: 1
    mtp_acceptance: 0.3333333333333333
    draft_model: null
    draft_tokens: 0
    draft_accepted_tokens: 0.0
    kv_memory_fraction: 0.9
scheduler:
  router: least_outstanding
  preemption: recompute
workload:
  arrival:
    kind: poisson
    rate_per_s: 92.24358706665062
  prompt_tokens:
    kind: uniform
    min_tokens: 1
    max_tokens: 283
  output_tokens:
    kind: uniform
    min_tokens: 1
    max_tokens: 248
  prefix_cache_hit_rate: 0.5
  num_requests: 13
  duration_s: null
  samples_per_request: 1
  sample_policy: majority_vote
slo:
  ttft_ms: 2000.0
  tpot_ms: 50.0
  percentile: 90.0
seed: 513
"""


def test_recompute_preemption_does_not_livelock():
    """Two requests re-prefilling on a tight decode instance used to evict each other forever
    (hypothesis seed 21); the admission watermark lets the running one decode."""
    dep = load_deployment_text(LIVELOCK_SCENARIO, check=False)
    res = Simulation(dep, step_cost=_cost, trace=True, kv_capacity_tokens=640).run()
    assert len(res.requests) == 13 and res.requests.finish_s.notna().all()
