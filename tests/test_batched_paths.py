"""The engine's batched per-request paths (``simulator.batched``: admission of whole prompts, the
P/D offer, transfer start and end) give exactly what the one-request-at-a-time code gives, on the
disaggregated and colocated examples, with room to spare and with the decode side's KV or batch
slots tight (transfers wait, the FCFS cut falls inside a batch)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from simulator import batched
from simulator.engine import Simulation
from workloads.deployment import load_deployment

from tests.test_fastforward import assert_same

ROOT = Path(__file__).resolve().parents[1]
H800 = ROOT / "examples/deepseek-v3_h800_pd-disagg.yaml"
LLAMA = ROOT / "examples/llama-3.1-70b_h200_tp4_colocated.yaml"


def _counted(monkeypatch) -> Counter:
    calls: Counter = Counter()
    for name in ("admit_many", "offer_many", "start_pending_many", "transfer_done_many"):
        fn = getattr(batched, name)

        def wrapped(*a, _fn=fn, _name=name, **kw):
            calls[_name] += 1
            return _fn(*a, **kw)
        monkeypatch.setattr(batched, name, wrapped)
    return calls


CASES = [
    (H800, ["workload.num_requests=1500"], None),
    (H800, ["workload.num_requests=1500", "serving.decode.max_batch_size=300"], None),
    (H800, ["workload.num_requests=1500"], {"prefill": 64 * 200_000, "decode": 64 * 30_000}),
    (LLAMA, ["workload.num_requests=400", "workload.arrival.rate_per_s=40"], None),
    (LLAMA, ["workload.num_requests=300", "workload.arrival.rate_per_s=40"], 64 * 400),
]


@pytest.mark.parametrize("path, sets, kv", CASES)
def test_batched_paths_are_identical_to_one_request_at_a_time(monkeypatch, path, sets, kv):
    dep = load_deployment(path, sets)
    with monkeypatch.context() as m:
        m.setattr(batched, "MIN_BATCH", 10**9)  # every request through the per-request code
        m.setattr(batched, "MANY_PENDING", 10**9)
        m.setattr(batched, "FEW", 0)
        slow = Simulation(dep, kv_capacity_tokens=kv).run()
    fast = Simulation(dep, kv_capacity_tokens=kv).run()  # as it runs: a few with Python ints, more as arrays
    assert_same(fast, slow)
    calls = _counted(monkeypatch)
    monkeypatch.setattr(batched, "FEW", 2)  # the array paths from the third request on
    monkeypatch.setattr(batched, "MANY_PENDING", batched.MIN_BATCH)
    fast = Simulation(dep, kv_capacity_tokens=kv).run()
    assert calls["admit_many"] > 0
    if path == H800:
        assert calls["offer_many"] > 0 and calls["start_pending_many"] > 0 and calls["transfer_done_many"] > 0
    assert_same(fast, slow)
