"""Topology counts and the price model (ISCA'25 Table 3, clustersim/data/reference/isca_topology.yaml).

The published rows themselves (counts exact; costs: FT2 and FT3 fit the two prices, MPFT, SF
and DF are held out; DF per-endpoint is 2.2% high, a known gap) are checked by the registry,
``clustersim.checks.published.topology_checks``; this file tests the formulas and the fit.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clustersim.checks import load_reference
from clustersim.checks.published import topology_counts
from hardware import topology as topo
from hardware.catalog import get_cluster, get_network_prices
from hardware.types import Tier

REF = load_reference("isca_topology.yaml")
TARGETS = {t["id"]: t for t in REF["targets"]}
# Table 3's counts, costs and per-endpoint costs are checked by the registry
# (clustersim.checks.published.topology_checks, tests/test_reference_checks.py); the builders:
COUNTS = topology_counts()


def test_fat_tree_closed_forms():
    for k in (4, 8, 16, 32, 64, 128):
        ft2, ft3 = topo.fat_tree2(k), topo.fat_tree3(k)
        assert (ft2.endpoints, ft2.switches, ft2.links) == (k * k // 2, 3 * k // 2, k * k // 2)
        assert (ft3.endpoints, ft3.switches, ft3.links) == (k**3 // 4, 5 * k * k // 4, k**3 // 2)


def test_slim_fly_parameters_for_64_ports():
    sf = topo.slim_fly_for_radix(64)
    assert sf.params["q"] == 28 and sf.params["network_radix"] == 42 and sf.params["concentration"] == 21
    assert sf.params["network_radix"] + sf.params["concentration"] <= 64


def test_dragonfly_default_is_maximal_and_balanced():
    df = topo.dragonfly_for_radix(64)
    assert df.params == {"p": 16, "a": 32, "h": 16, "groups": 513}
    # with one global link per pair of groups, global links = g(g-1)/2
    g, a = 513, 32
    assert df.links == g * a * (a - 1) // 2 + g * (g - 1) // 2
    with pytest.raises(ValueError, match="at most 513 groups"):
        topo.dragonfly(16, 32, 16, groups=514)


def test_partial_fat_trees_are_non_blocking():
    ft = topo.fat_tree2(64, endpoints=1024)
    assert (ft.switches, ft.links) == (32 + 16, 1024)
    ft3 = topo.fat_tree3(64, endpoints=16384)
    assert ft3.links == 2 * 16384
    with pytest.raises(ValueError, match="at most 2048"):
        topo.fat_tree2(64, endpoints=4096)


@given(k=st.integers(2, 64).map(lambda x: 2 * x), frac=st.floats(0.01, 1.0))
def test_fat_tree2_partial_bounds(k, frac):
    e = max(1, int(frac * k * k / 2))
    c = topo.fat_tree2(k, e)
    assert c.links >= c.endpoints  # every endpoint has an uplink's worth of leaf-spine capacity
    assert c.switches <= 3 * k // 2


def _calibrated() -> topo.NetworkPrices:
    rows = [(COUNTS[i](), TARGETS[i]["value"]["cost_musd"] * 1e6) for i in REF["calibration_rows"]]
    return topo.calibrate_prices(rows, name="from-reference")


def test_packaged_prices_equal_calibration_on_ft2_ft3():
    packaged = get_network_prices("ib-400g-64port-isca25")
    derived = _calibrated()
    assert packaged.switch_usd == pytest.approx(derived.switch_usd, rel=1e-6)
    assert packaged.switch_link_usd == pytest.approx(derived.switch_link_usd, rel=1e-6)
    assert packaged.endpoint_usd == 0.0
    assert set(REF["calibration_rows"]).isdisjoint(REF["validation_rows"])


def test_calibration_rejects_proportional_rows():
    ft2, mpft = topo.fat_tree2(64), topo.multi_plane_fat_tree2(64, 8)
    with pytest.raises(ValueError, match="proportional"):
        topo.calibrate_prices([(ft2, 9e6), (mpft, 72e6)])


def test_calibration_with_assumed_endpoint_price_still_fits_rows():
    rows = [(COUNTS[i](), TARGETS[i]["value"]["cost_musd"] * 1e6) for i in REF["calibration_rows"]]
    p = topo.calibrate_prices(rows, endpoint_usd=300.0)
    for counts, cost in rows:
        assert topo.network_cost_usd(counts, p) == pytest.approx(cost, rel=1e-9)


def test_unified_bus_counts():
    ub = topo.unified_bus_two_layer(48, 8, 7, 7, 16, 14)
    assert ub.endpoints == 384
    assert ub.switches == 48 * 7 + 7 * 16
    assert ub.links == 48 * 7 * 16  # each L1 chip links to the 16 L2 chips of its sub-plane
    with pytest.raises(ValueError, match="sub-plane"):
        topo.unified_bus_two_layer(48, 8, 7, 6, 16, 14)


# ---------------------------------------------------------------------------------------------
# Tier accounting
# ---------------------------------------------------------------------------------------------


def _tier(name, span, gbps, tech="ib", planes=1, eff=1.0, over=1.0):
    return Tier(name, span, gbps * 1e9, 1e-6, efficiency=eff, planes=planes, oversubscription=over, technology=tech)


def test_effective_bandwidth_formula():
    t = _tier("x", 8, 100, eff=0.8, over=2.0)
    assert t.effective_bytes_per_s == pytest.approx(100e9 * 0.8 / 2.0)


def test_multi_plane_all_to_all_bounded_by_single_nic():
    c = get_cluster("h800-mpft")
    a2a, shares = topo.uniform_all_to_all(c.tiers, c.num_devices)
    nic_eff = c.device.scale_out_bytes_per_s * 0.8
    assert nic_eff <= a2a <= nic_eff * 1.01
    nvl = shares[0]
    # 7/8 of all off-node traffic is cross-plane and is forwarded over NVLink first
    assert nvl.carried_share == pytest.approx((7 + 7 / 8 * (16384 - 8)) / 16383)


def test_all_to_all_single_tier_is_tier_bandwidth():
    tiers = [_tier("ub", 384, 392, tech="ub", eff=0.9)]
    a2a, _ = topo.uniform_all_to_all(tiers, 384)
    assert a2a == pytest.approx(392e9 * 0.9)


def test_all_to_all_shares_sum_to_one():
    tiers = [_tier("nvl", 8, 200, tech="nvlink"), _tier("leaf", 256, 50), _tier("spine", 4096, 50)]
    _, shares = topo.uniform_all_to_all(tiers, 4096)
    assert math.fsum(s.destination_share for s in shares) == pytest.approx(1.0)


def test_oversubscribed_spine_lowers_all_to_all_and_bisection():
    flat = [_tier("nvl", 8, 200, tech="nvlink"), _tier("leaf", 32, 50), _tier("spine", 1024, 50)]
    over = [flat[0], flat[1], _tier("spine", 1024, 50, over=4.0)]
    assert topo.uniform_all_to_all(over, 1024)[0] < topo.uniform_all_to_all(flat, 1024)[0]
    assert topo.bisection(over, 1024)[0] == pytest.approx(topo.bisection(flat, 1024)[0] / 4)


def test_bisection_formula():
    tiers = [_tier("nvl", 8, 200, tech="nvlink"), _tier("leaf", 32, 50), _tier("spine", 1024, 50)]
    nominal, effective, name = topo.bisection(tiers, 1024)
    assert name == "spine" and nominal == pytest.approx(512 * 50e9)
    # a cluster that fits in half a tier group is cut inside that tier
    assert topo.bisection(tiers, 16)[2] == "leaf"
