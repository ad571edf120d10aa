"""Stepped decode batches kept in run order (``simulator.lanes``) give exactly what the per-stream
arrays give: every table, the summary and the event log, on every serving example, on MTP decode
with preemptions (tight KV); under every batch policy x router with preemption in
tests/test_fastforward.py (closed-form runs, stepping and stepping without lanes together)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.engine import Simulation
from workloads.deployment import load_deployment

from tests.test_fastforward import SERVING_EXAMPLES, assert_same

ROOT = Path(__file__).resolve().parents[1]


def _both(dep, **kw):
    on = Simulation(dep, fast_forward=False, trace=True, **kw)
    off = Simulation(dep, fast_forward=False, trace=True, lanes=False, **kw)
    return on, on.run(), off.run()


@pytest.mark.parametrize("example", SERVING_EXAMPLES)
def test_every_serving_example_is_identical_without_lanes(example):
    dep = load_deployment(ROOT / "examples" / example, ["workload.num_requests=300"])
    sim, a, b = _both(dep)
    assert_same(a, b)


@pytest.mark.parametrize("batching, preemption", [("splitfuse", "recompute"), ("prefill_first", "recompute"),
                                                   ("decode_first", "recompute"), ("splitfuse", "swap")])
def test_mtp_decode_with_preemptions_is_identical_without_lanes(batching, preemption):
    dep = load_deployment(ROOT / "examples/deepseek-v3_h800_pd-disagg.yaml",
                          ["workload.num_requests=600", f"scheduler.batching={batching}",
                           f"scheduler.preemption={preemption}"])
    kv = {"prefill": 64 * 200_000, "decode": 64 * 3_000}  # the decode side preempts
    sim, a, b = _both(dep, kv_capacity_tokens=kv)
    assert any(s.lanes is not None for s in sim.servers)
    assert a.summary["counts"]["preemptions"] > 0
    assert_same(a, b)


@pytest.mark.parametrize("size, lead", [(5, 3), (40, 39), (40, 30), (300, 290), (300, 100), (2000, 1990), (2000, 1)])
def test_itl_add_led_counts_and_sums_as_add(size, lead):
    """``ItlHistogram.add_led`` (the lanes' gaps: a leading run of one value) equals ``add``."""
    import numpy as np

    from simulator.metrics import ItlHistogram

    rng = np.random.default_rng(size + lead)
    gaps = np.full(size, 0.0351)
    gaps[lead:] = rng.uniform(0.001, 0.2, size - lead)
    gaps[lead::3] = 0.0351  # some of the others equal the leading gap
    a, b = ItlHistogram(), ItlHistogram()
    assert a.add_led(gaps.copy(), lead) == b.add(gaps.copy())
    assert a.n == b.n and (a.counts == b.counts).all()


@pytest.mark.parametrize("example", SERVING_EXAMPLES)
def test_every_serving_example_is_identical_with_arrivals_through_simpy(example):
    """Arrivals inline and out of simpy's queue (``Simulation._arrive_plain``, ``_run_virtual``)
    give exactly what one ``arrive`` per request in a simpy process gives (events included)."""
    dep = load_deployment(ROOT / "examples" / example, ["workload.num_requests=300"])
    for ff in (True, False):
        on = Simulation(dep, fast_forward=ff, trace=True)
        off = Simulation(dep, fast_forward=ff, trace=True, plain_arrivals=False)
        assert_same(on.run(), off.run())


def test_virtual_arrivals_are_taken_and_report_progress():
    """The H800 example runs its arrivals out of simpy's queue (the path the test above checks),
    and its progress callback is called as ``run_events`` calls it (first, periodically, last)."""
    dep = load_deployment(ROOT / "examples/deepseek-v3_h800_pd-disagg.yaml", ["workload.num_requests=2000"])
    sim = Simulation(dep)
    assert sim._plain_arrivals() and not any(s.ff for s in sim.servers)
    calls = []
    res = sim.run(lambda *a: calls.append(a))
    ref = Simulation(dep, plain_arrivals=False).run()
    assert_same(res, ref)
    assert calls[0][1] == 0 and calls[-1][1] == 2000 and len(calls) >= 2


@pytest.mark.parametrize("instances", [1, 2])
def test_kv_aware_colocated_arrivals_are_identical_through_simpy(instances):
    """``_arrive_plain``'s inline ``KvAware.choose`` over several (and one) colocated instances."""
    dep = load_deployment(ROOT / "examples/llama-3.1-70b_h200_tp4_colocated.yaml",
                          ["workload.num_requests=400", "scheduler.router=kv_aware",
                           f"serving.pool.instances={instances}"])
    on = Simulation(dep, fast_forward=False, trace=True)
    assert on._plain_arrivals()
    off = Simulation(dep, fast_forward=False, trace=True, plain_arrivals=False)
    assert_same(on.run(), off.run())


@pytest.mark.parametrize("size, lead, distinct", [(300, 280, 2), (300, 270, 1), (2000, 1975, 3), (40, 12, 2)])
def test_itl_add_led_with_joiners_sharing_gaps_counts_and_sums_as_add(size, lead, distinct):
    """Joiners whose gaps repeat (a transfer's requests prefilled in one step) are binned once per
    distinct gap: the same counts and sum as ``add``."""
    import numpy as np

    from simulator.metrics import ItlHistogram

    rng = np.random.default_rng(size + lead + distinct)
    gaps = np.full(size, 0.0351)
    gaps[lead:] = rng.choice(rng.uniform(0.001, 0.2, distinct), size - lead)
    a, b = ItlHistogram(), ItlHistogram()
    assert a.add_led(gaps.copy(), lead) == b.add(gaps.copy())
    assert a.n == b.n and (a.counts == b.counts).all()


@pytest.mark.parametrize("few_finish, depth", [(0, 1), (24, 2), (0, 2)])
def test_uncapped_draws_finish_as_capped_without_lanes(monkeypatch, few_finish, depth):
    """A depth-1 lanes step adds its draws uncapped (only finishers pass their targets: capped as
    they finish, ``Server._finish_lanes``, or all at once before ``lanes.drop`` when many finish);
    ``few_finish`` 0 sends every finishing step to the many-finishers path. Depth 2 keeps the
    capped draw. Both equal the per-stream arrays exactly."""
    import simulator.engine as engine

    monkeypatch.setattr(engine, "_FEW_FINISH", few_finish)
    dep = load_deployment(ROOT / "examples/deepseek-v3_h800_pd-disagg.yaml",
                          ["workload.num_requests=600", f"serving.decode.mtp_depth={depth}"])
    sim, a, b = _both(dep)
    assert any(s.lanes is not None for s in sim.servers)
    assert_same(a, b)
