"""Max-min fair sharing (hardware.flows)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.flows import MaxMinAllocator, maxmin_rates

REL = 1e-7


# ------------------------------------------------------------------ textbook oracles


def test_single_bottleneck_equal_shares():
    rates = maxmin_rates([["l"]] * 4, {"l": 100.0})
    assert rates == pytest.approx([25.0] * 4)


def test_parking_lot():
    # one long flow over n links, one short flow per link: everybody gets C/2
    n, cap = 5, 10.0
    links = [f"l{i}" for i in range(n)]
    flows = [links] + [[l] for l in links]
    assert maxmin_rates(flows, {l: cap for l in links}) == pytest.approx([cap / 2] * (n + 1))


def test_two_bottlenecks_water_filling():
    # Bertsekas-Gallager style: flow 0 over a (cap 1) and b (cap 3), flow 1 over a, flow 2 over b
    rates = maxmin_rates([["a", "b"], ["a"], ["b"]], {"a": 1.0, "b": 3.0})
    assert rates == pytest.approx([0.5, 0.5, 2.5])


def test_demand_caps_and_empty_path():
    rates = maxmin_rates([["l"], ["l"], []], {"l": 10.0}, demands_bytes_per_s=[2.0, None, None])
    assert rates[:2] == pytest.approx([2.0, 8.0])
    assert rates[2] == float("inf")


def test_unknown_link_is_named():
    with pytest.raises(KeyError, match="nope"):
        maxmin_rates([["nope"]], {"l": 1.0})


# ------------------------------------------------------------------ properties

_links = st.integers(min_value=1, max_value=7)


@st.composite
def networks(draw):
    n_links = draw(_links)
    caps = {i: draw(st.floats(min_value=0.1, max_value=100.0)) for i in range(n_links)}
    n_flows = draw(st.integers(min_value=1, max_value=12))
    flows = [draw(st.lists(st.integers(0, n_links - 1), min_size=1, max_size=n_links, unique=True)) for _ in range(n_flows)]
    return flows, caps


def _check_maxmin(flows, caps, rates):
    load = {l: 0.0 for l in caps}
    for path, r in zip(flows, rates):
        assert r > 0
        for l in path:
            load[l] += r
    for l, c in caps.items():  # feasible
        assert load[l] <= c * (1 + REL) + 1e-12
    for path, r in zip(flows, rates):  # each flow has a saturated link on which it is maximal
        assert any(
            load[l] >= caps[l] * (1 - REL) and all(r >= r2 * (1 - REL) for p2, r2 in zip(flows, rates) if l in p2)
            for l in path
        ), (path, r)


@settings(max_examples=200, deadline=None)
@given(networks())
def test_maxmin_is_feasible_and_every_flow_has_a_bottleneck(net):
    flows, caps = net
    _check_maxmin(flows, caps, maxmin_rates(flows, caps))


@settings(max_examples=100, deadline=None)
@given(networks(), st.data())
def test_incremental_allocator_matches_full_recompute(net, data):
    flows, caps = net
    alloc = MaxMinAllocator(caps)
    active = {}
    for i, path in enumerate(flows):
        alloc.add(i, path)
        active[i] = path
        if data.draw(st.booleans()) and len(active) > 1:
            victim = data.draw(st.sampled_from(sorted(active)))
            alloc.remove(victim)
            del active[victim]
        ids = sorted(active)
        full = maxmin_rates([active[i] for i in ids], caps)
        assert [alloc.rate(i) for i in ids] == pytest.approx(full, rel=1e-9)


def test_incremental_reports_changed_rates_only():
    alloc = MaxMinAllocator({"a": 10.0, "b": 10.0})
    assert alloc.add("x", ["a"]) == {"x": 10.0}
    assert alloc.add("y", ["b"]) == {"y": 10.0}  # disjoint component: x untouched
    assert alloc.add("z", ["a"]) == {"x": 5.0, "z": 5.0}
    assert alloc.remove("z") == {"x": 10.0}
