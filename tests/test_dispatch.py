"""MoE dispatch/combine models (hardware.dispatch) against closed forms and published tables.

The published rows (clustersim/data/reference/comm_*.yaml, fit and held-out) are predicted and
checked by the one registry, ``clustersim.checks.comm`` (tests/test_reference_checks.py, and
``clustersim check``); this file tests the mechanisms.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from hardware.catalog import get_cluster, list_clusters
from hardware.collectives import collective_time
from hardware.dispatch import dispatch_combine_time, ep_decode_speed_limit, expected_distinct_units, token_bytes


# ------------------------------------------------------------------ mechanisms


def test_token_bytes_with_scales():
    assert token_bytes(7168, "fp8") == 7168 + 7168 / 128 * 4
    assert token_bytes(7168, "int8") == 7168 + 224
    assert token_bytes(7168, "bf16") == 2 * 7168
    with pytest.raises(ValueError, match="valid: fp8"):
        token_bytes(7168, "fp4")


@pytest.mark.parametrize(
    "units,groups,m",
    [(8, None, None), (32, None, None), (4, 4, 4), (8, 8, 4), (64, 8, 4), (2, 8, 4), (16, 2, 1)],
)
def test_expected_distinct_units_matches_monte_carlo(units, groups, m):
    rng = np.random.default_rng(np.random.SeedSequence(1234))
    E, k, n = 256, 8, 20000
    exact = expected_distinct_units(units, E, k, groups, m)
    g = groups or 1
    m_ = m or 1
    per_group = E // g
    hits = 0
    for _ in range(n):
        chosen = rng.choice(g, size=m_, replace=False)
        pool = (chosen[:, None] * per_group + np.arange(per_group)).ravel()
        experts = rng.choice(pool, size=k, replace=False)
        hits += np.unique(experts // (E // units)).size
    assert exact == pytest.approx(hits / n, rel=0.01)


def test_expected_distinct_units_edges():
    assert expected_distinct_units(1, 256, 8) == pytest.approx(1.0)
    assert expected_distinct_units(256, 256, 8) == pytest.approx(8.0)
    # node-limited routing caps the nodes per token at M
    assert expected_distinct_units(32, 256, 8, groups=32, max_groups_per_token=4) <= 4.0
    with pytest.raises(ValueError, match="nest"):
        expected_distinct_units(3, 258, 8, groups=2, max_groups_per_token=1)


# ------------------------------------------------------------------ ISCA'25 decode limit
# The published rows (ISCA'25 decode limit, DeepEP, CloudMatrix384) are checked by the registry
# (clustersim.checks.comm, tests/test_reference_checks.py); the mechanisms stay here.


def test_decode_speed_limit_fed_from_catalog_bandwidths():
    # the same bound from catalog numbers: the H800 NIC and the NVL72 NVLink nominal bandwidths
    nic = get_cluster("h800-mpft").tiers[1].bandwidth_bytes_per_s
    nvl = get_cluster("gb200-nvl72").tiers[0].bandwidth_bytes_per_s
    ib = ep_decode_speed_limit(7168, 61, 32, 9, nic)
    fast = ep_decode_speed_limit(7168, 61, 32, 9, nvl)
    assert fast.tokens_per_s / ib.tokens_per_s == pytest.approx(nvl / nic)


# ------------------------------------------------------------------ DeepEP


def test_deepep_low_latency_reported_bandwidth_definition():
    cost = dispatch_combine_time(128, 7168, 8, 8, get_cluster("h800-mpft"), num_experts=256, kernel="low_latency")
    assert cost.dispatch_reported_bytes_per_s == pytest.approx(128 * 8 * (7168 + 224) / cost.dispatch_s)
    assert cost.combine_reported_bytes_per_s == pytest.approx(128 * 8 * 7168 * 2 / cost.combine_s)


def test_low_latency_nvlink_release_splits_copies_by_domain():
    """DeepEP 2025-05 (NVLink P2P, the default): copies to the sender's own node ride NVLink (g/ep
    of them under uniform routing); 2025-02 sends every copy through the NIC."""
    cluster = get_cluster("h20-ib")
    ll = dict(num_experts=256, kernel="low_latency")
    for ep in (8, 16, 64):
        new = dispatch_combine_time(128, 7168, 8, ep, cluster, **ll)
        old = dispatch_combine_time(128, 7168, 8, ep, cluster, release="2025-02", **ll)
        assert new.release == "2025-05" and old.release == "2025-02"
        assert new.dispatch_s < old.dispatch_s and new.combine_s < old.combine_s
        by = dict(new.dispatch_bytes_by_tier)
        total = 128 * 8 * (7168 + 224)
        assert by["nvlink"] == pytest.approx(total * 8 / ep)
        assert by.get("ib-leaf", 0.0) == pytest.approx(total * (1 - 8 / ep))
    # inside one node nothing leaves through the NIC; the gain shrinks as the group spreads
    one = dispatch_combine_time(128, 7168, 8, 8, cluster, **ll)
    assert one.bottleneck_tier == "nvlink" and set(dict(one.combine_bytes_by_tier)) == {"nvlink"}
    gain = [dispatch_combine_time(128, 7168, 8, ep, cluster, release="2025-02", **ll).dispatch_s
            / dispatch_combine_time(128, 7168, 8, ep, cluster, **ll).dispatch_s for ep in (8, 16, 32, 64)]
    assert gain == sorted(gain, reverse=True) and gain[-1] > 1.0
    with pytest.raises(ValueError, match="valid: 2025-02, 2025-05"):
        dispatch_combine_time(128, 7168, 8, 16, cluster, release="2025-04", **ll)


# ------------------------------------------------------------------ mechanisms across clusters


def test_multi_plane_all_to_all_is_bounded_by_one_nic():
    from hardware.collectives import load_comm_calibration

    cluster = get_cluster("h800-mpft")
    nic = cluster.tiers[1].effective_bytes_per_s * load_comm_calibration().get("nccl.all_to_all_bw_fraction")
    cost = collective_time("all_to_all", 1e9, 256, cluster, algorithm="flat", protocol="simple")
    per_rank_rate = 1e9 * 255 / 256 / (cost.seconds - dict(cost.breakdown)["latency"])
    # the NIC carries only the off-node share, so the send rate is nic / off-node share, never more
    assert per_rank_rate == pytest.approx(nic / (248 / 255))


def test_node_limited_routing_reduces_rdma_bytes():
    cluster = get_cluster("h800-mpft")
    free = dispatch_combine_time(4096, 7168, 8, 256, cluster, num_experts=256)
    limited = dispatch_combine_time(4096, 7168, 8, 256, cluster, num_experts=256, groups=32, max_groups_per_token=4)
    assert dict(limited.dispatch_bytes_by_tier)["ib-leaf"] < dict(free.dispatch_bytes_by_tier)["ib-leaf"]
    assert limited.nodes_per_token <= 4.0
    assert limited.dispatch_s < free.dispatch_s


def test_unified_bus_is_faster_than_rdma_and_int8_is_smaller_than_bf16():
    h800 = dispatch_combine_time(128, 7168, 8, 256, get_cluster("h800-mpft"), num_experts=256, kernel="low_latency")
    cm = dispatch_combine_time(128, 7168, 8, 256, get_cluster("cloudmatrix384"), num_experts=256,
                               kernel="low_latency", dispatch_dtype="int8")
    assert cm.total_s < h800.total_s
    normal_ub = dispatch_combine_time(4096, 7168, 8, 256, get_cluster("cloudmatrix384"), num_experts=256)
    assert normal_ub.source == "model:ub_all_to_all"


@pytest.mark.parametrize("name", list_clusters())
@pytest.mark.parametrize("kernel", ["normal", "low_latency"])
def test_every_catalog_cluster_dispatch(name, kernel):
    cluster = get_cluster(name)
    ep = min(cluster.num_devices, 64)
    cost = dispatch_combine_time(128, 7168, 8, ep, cluster, num_experts=256, kernel=kernel)
    assert 0 < cost.dispatch_s < cost.combine_s * 1.5
    bigger = dispatch_combine_time(1024, 7168, 8, ep, cluster, num_experts=256, kernel=kernel)
    assert bigger.dispatch_s > cost.dispatch_s


def test_errors():
    cluster = get_cluster("h800-mpft")
    with pytest.raises(ValueError, match="valid: normal"):
        dispatch_combine_time(128, 7168, 8, 16, cluster, num_experts=256, kernel="fast")
    with pytest.raises(ValueError, match="multiple of the domain"):
        dispatch_combine_time(128, 7168, 8, 12, cluster, num_experts=240)
    with pytest.raises(KeyError, match="known"):
        dispatch_combine_time(128, 7168, 8, 16, cluster, num_experts=256, release="1999-01")


# ------------------------------------------------------------------ speed


@pytest.mark.parametrize("name", ["h800-mpft", "cloudmatrix384"])
def test_build_and_all_to_all_estimate_under_one_second(name):
    start = time.perf_counter()
    cluster = get_cluster(name)
    collective_time("all_to_all", 1e9, cluster.num_devices, cluster)
    dispatch_combine_time(4096, 7168, 8, min(cluster.num_devices, 256), cluster, num_experts=256)
    assert time.perf_counter() - start < 1.0
