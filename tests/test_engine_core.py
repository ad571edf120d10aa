"""Serving engine: exact event logs, queueing oracles, KV transfer contention, determinism."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import simpy
import yaml

from simulator.engine import Simulation, simulate
from simulator.result import to_chrome_trace
from simulator.transfer import TransferManager
from workloads.accounting import kv_cache_bytes_per_token
from workloads.deployment import load_deployment_text
from workloads.models import get_model

POOL = {"instances": 1, "devices_per_instance": 4, "attention": {"tp": 4}}


def deployment(serving=None, workload=None, **top):
    """A llama-3.1-70b deployment on one H200 node (cross-field rules skipped: costs are injected)."""
    doc = {
        "cluster": "h200-node", "model": "llama-3.1-70b",
        "serving": serving or {"mode": "colocated", "pool": dict(POOL)},
        "workload": workload or {"arrival": {"kind": "poisson", "rate_per_s": 1.0}, "num_requests": 10},
        **top,
    }
    return load_deployment_text(yaml.safe_dump(doc), check=False)


def trace_file(tmp_path, rows):
    path = tmp_path / "trace.csv"
    lines = ["arrival_s,prompt_tokens,output_tokens,cached_tokens"] + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def fixed_cost(prefill_s: float, decode_s: float):
    return lambda role, shape: prefill_s if shape.phase == "prefill" else decode_s


# ------------------------------------------------------------------ trace tests


def test_trace_colocated_exact_event_log(tmp_path):
    path = trace_file(tmp_path, [(0.0, 100, 3, 0), (0.5, 100, 2, 0)])
    dep = deployment(workload={"arrival": {"kind": "trace", "path": path}})
    res = simulate(dep, step_cost=fixed_cost(1.0, 0.25), trace=True)
    assert res.events == [
        (0.0, "arrival", 0, 0), (0.0, "schedule", 0, 0),
        (0.5, "arrival", 1, 0),
        (1.0, "first_token", 0, 0), (1.0, "schedule", 1, 0),  # r1's prefill rides with r0's first decode
        (2.0, "first_token", 1, 0),
        (2.25, "finish", 0, 0), (2.25, "finish", 1, 0),
    ]
    r = res.requests
    assert r["ttft_s"].tolist() == [1.0, 1.5]
    assert r["queue_s"].tolist() == [0.0, 0.5]
    assert r["tpot_s"].tolist() == pytest.approx([0.625, 0.25])
    assert res.steps["batch_size"].tolist() == [1, 2, 2]
    assert res.steps["decode_seqs"].tolist() == [0, 1, 2]
    chrome = to_chrome_trace(res)
    assert sum(e["ph"] == "X" for e in chrome["traceEvents"]) == 3
    assert sum(e["ph"] == "i" for e in chrome["traceEvents"]) == len(res.events)


def test_trace_disaggregated_exact_event_log(tmp_path):
    path = trace_file(tmp_path, [(0.0, 128, 2, 0)])
    dep = deployment(serving={"mode": "disaggregated", "prefill": dict(POOL), "decode": dict(POOL)},
                     workload={"arrival": {"kind": "trace", "path": path}})
    res = simulate(dep, step_cost=fixed_cost(1.0, 0.25), trace=True)
    # one flow over (prefill port, fabric, decode port): 4 x 50 GB/s everywhere
    xfer_s = kv_cache_bytes_per_token(get_model("llama-3.1-70b"), "bf16") * 128 / (4 * 50e9)
    assert [(k, r, i) for _, k, r, i in res.events] == [
        ("arrival", 0, 0), ("schedule", 0, 0), ("first_token", 0, 0),
        ("kv_transfer_start", 0, 1), ("kv_transfer_end", 0, 1), ("finish", 0, 1),
    ]
    times = [t for t, *_ in res.events]
    assert times == pytest.approx([0.0, 0.0, 1.0, 1.0, 1.0 + xfer_s, 1.25 + xfer_s])
    assert res.requests["transfer_s"][0] == pytest.approx(xfer_s)
    assert res.requests["prefill_instance"][0] == 0 and res.requests["decode_instance"][0] == 1


# ------------------------------------------------------------------ KV transfers as max-min flows


def test_transfer_manager_rerates_and_ignores_stale_wakeups():
    env = simpy.Environment()
    done = {}
    tm = TransferManager(env, {("port", 0): 100.0, ("port", 1): 100.0, "fabric": 100.0},
                         lambda payload, start: done.setdefault(payload, env.now))

    def starter():
        tm.start(0, 1, 100.0, "a")
        yield env.timeout(0.5)
        tm.start(0, 1, 100.0, "b")

    env.process(starter())
    env.run()
    # a: 50 B alone by 0.5 s, then 50 B at 50 B/s -> 1.5 s (its original 1.0 s wake-up is stale)
    # b: 50 B at 50 B/s until 1.5 s, then 50 B alone -> 2.0 s
    assert done == pytest.approx({"a": 1.5, "b": 2.0})
    assert tm.rate_changes == 4


def test_two_transfers_share_the_link_and_each_gets_half(tmp_path):
    two = {"instances": 1, "devices_per_instance": 2, "attention": {"tp": 2}}
    serving = {"mode": "disaggregated", "prefill": {**two, "instances": 2}, "decode": two}
    # fabric = 50 GB/s x min(4 prefill, 2 decode devices) = decode port = 100 GB/s; prefill ports 100 GB/s
    alone = simulate(deployment(serving=serving, workload={"arrival": {"kind": "trace", "path": trace_file(
        tmp_path, [(0.0, 1024, 2, 0)])}}, scheduler={"router": "round_robin"}), step_cost=fixed_cost(1.0, 0.1))
    both = simulate(deployment(serving=serving, workload={"arrival": {"kind": "trace", "path": trace_file(
        tmp_path, [(0.0, 1024, 2, 0), (0.0, 1024, 2, 0)])}}, scheduler={"router": "round_robin"}),
        step_cost=fixed_cost(1.0, 0.1))
    solo_s = kv_cache_bytes_per_token(get_model("llama-3.1-70b"), "bf16") * 1024 / 100e9
    assert alone.requests["transfer_s"].tolist() == pytest.approx([solo_s])
    assert both.requests["prefill_instance"].tolist() == [0, 1]
    assert both.requests["transfer_s"].tolist() == pytest.approx([2 * solo_s, 2 * solo_s])
    assert both.summary["engine"]["kv_transfers"] == 2


# ------------------------------------------------------------------ queueing oracles


def _md1(rate: float, service_s: float, n: int, seed: int = 1):
    dep = deployment(
        serving={"mode": "colocated", "pool": {**POOL, "max_batch_size": 1}},
        workload={"arrival": {"kind": "poisson", "rate_per_s": rate}, "num_requests": n,
                  "prompt_tokens": {"kind": "fixed", "tokens": 16}, "output_tokens": {"kind": "fixed", "tokens": 1}},
        seed=seed)
    return simulate(dep, step_cost=lambda role, shape: service_s)


def test_md1_mean_waiting_time():
    rate, d = 0.7, 1.0
    res = _md1(rate, d, 60_000)
    rho = rate * d
    expected = rho / (2 * (1 / d) * (1 - rho))  # Pollaczek-Khinchine for deterministic service
    assert res.requests["queue_s"].mean() == pytest.approx(expected, rel=0.05)
    assert (res.requests["e2e_s"] - res.requests["queue_s"]).to_numpy() == pytest.approx(d)


def _littles_law(res):
    """L seen by Poisson arrivals (PASTA) vs lambda x W."""
    r = res.requests
    arr, fin = np.sort(r["arrival_s"].to_numpy()), np.sort(r["finish_s"].to_numpy())
    in_system = np.arange(len(arr)) - np.searchsorted(fin, arr, side="right")  # before each arrival
    lam = (len(arr) - 1) / (arr[-1] - arr[0])
    return float(in_system.mean()), lam * float(r["e2e_s"].mean())


def test_littles_law_md1():
    l_seen, l_little = _littles_law(_md1(0.8, 1.0, 40_000, seed=3))
    assert l_seen == pytest.approx(l_little, rel=0.05)


def test_littles_law_with_continuous_batching():
    dep = deployment(
        serving={"mode": "colocated", "pool": {**POOL, "instances": 2, "max_batch_size": 8}},
        workload={"arrival": {"kind": "poisson", "rate_per_s": 20.0}, "num_requests": 8_000,
                  "prompt_tokens": {"kind": "uniform", "min_tokens": 64, "max_tokens": 512},
                  "output_tokens": {"kind": "uniform", "min_tokens": 1, "max_tokens": 40}})
    res = simulate(dep, step_cost=lambda role, shape: 0.01 + 2e-5 * shape.total_new_tokens)
    assert res.summary["pools"]["pool"]["mean_batch_size"] > 2
    l_seen, l_little = _littles_law(res)
    assert l_seen == pytest.approx(l_little, rel=0.05)


# ------------------------------------------------------------------ determinism, KV, samples


def _digest(res) -> str:
    h = hashlib.sha256()
    h.update(res.requests.to_csv().encode())
    h.update(res.steps.to_csv().encode())
    h.update(json.dumps(res.summary, sort_keys=True).encode())
    return h.hexdigest()


def test_same_seed_gives_byte_identical_outputs():
    serving = {"mode": "disaggregated", "prefill": dict(POOL), "decode": dict(POOL)}
    wl = {"arrival": {"kind": "gamma", "rate_per_s": 5.0, "cv": 2.0}, "num_requests": 300,
          "prompt_tokens": {"kind": "lognormal", "mean_tokens": 600, "cv": 0.5, "max_tokens": 4096},
          "output_tokens": {"kind": "lognormal", "mean_tokens": 60, "cv": 0.5, "max_tokens": 400},
          "prefix_cache_hit_rate": 0.3}
    runs = [simulate(deployment(serving=serving, workload=wl, seed=7)) for _ in range(2)]
    assert _digest(runs[0]) == _digest(runs[1])
    other = simulate(deployment(serving=serving, workload=wl, seed=8))
    assert _digest(other) != _digest(runs[0])


def test_default_cost_model_colocated_run_is_sane():
    res = simulate(deployment())
    s = res.summary
    assert s["counts"]["finished"] == 10
    assert 0 < s["ttft_ms"]["mean"] < 5_000 and 0 < s["tpot_ms"]["mean"] < 200
    assert 0 < s["pools"]["pool"]["compute_share"] < 1


def test_kv_admission_and_preemption_stay_within_capacity():
    wl = {"arrival": {"kind": "poisson", "rate_per_s": 50.0}, "num_requests": 200,
          "prompt_tokens": {"kind": "fixed", "tokens": 200}, "output_tokens": {"kind": "fixed", "tokens": 300}}
    for mode in ("recompute", "swap"):
        sim = Simulation(deployment(workload=wl, scheduler={"preemption": mode}),
                         step_cost=fixed_cost(0.02, 0.01), kv_capacity_tokens=64 * 40)
        res = sim.run()
        assert res.summary["counts"]["finished"] == 200
        assert res.summary["counts"]["preemptions"] > 0
        assert res.steps["kv_used_fraction"].max() <= 1.0
        assert (res.requests["output_tokens"] == 300).all()
        assert all(s.kv.used_blocks == 0 for s in sim.servers)


def test_first_finish_cancels_siblings_and_majority_vote_waits_for_all():
    wl = {"arrival": {"kind": "poisson", "rate_per_s": 2.0}, "num_requests": 50, "samples_per_request": 4,
          "output_tokens": {"kind": "uniform", "min_tokens": 5, "max_tokens": 50}}
    ff = simulate(deployment(workload={**wl, "sample_policy": "first_finish"}), step_cost=fixed_cost(0.05, 0.01))
    mv = simulate(deployment(workload={**wl, "sample_policy": "majority_vote"}), step_cost=fixed_cost(0.05, 0.01))
    assert (mv.requests["output_tokens"] == mv.requests["target_output_tokens"]).all()
    assert (mv.requests["cancelled_samples"] == 0).all()
    assert (ff.requests["output_tokens"] < ff.requests["target_output_tokens"]).any()
    assert ff.summary["counts"]["cancelled_samples"] > 0
    assert ff.requests["e2e_s"].mean() < mv.requests["e2e_s"].mean()


def test_mtp_emits_expected_tokens_per_step():
    pool = {**POOL, "mtp_depth": 2, "mtp_acceptance": 0.6}
    wl = {"arrival": {"kind": "poisson", "rate_per_s": 1.0}, "num_requests": 200,
          "output_tokens": {"kind": "fixed", "tokens": 2000}}
    res = simulate(deployment(serving={"mode": "colocated", "pool": pool}, workload=wl),
                   step_cost=fixed_cost(0.01, 0.01))
    dec = res.steps[res.steps["prefill_tokens"] == 0]
    emissions = dec["decode_seqs"].sum()
    tokens = res.requests["output_tokens"].sum() - len(res.requests)  # minus the prefill's first tokens
    assert tokens / emissions == pytest.approx(1 + 0.6 + 0.36, rel=0.02)
    assert (dec["new_tokens"] == 3 * dec["decode_seqs"]).all()
