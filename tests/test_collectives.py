"""Collective time models (hardware.collectives): closed-form oracles, tiers, profile override."""

from __future__ import annotations

import math

import pytest

from hardware.catalog import get_cluster, list_clusters
from hardware.collectives import (
    ALGORITHMS,
    OPS,
    achievable_bytes_per_s,
    collective_time,
    group_geometry,
    load_comm_calibration,
)
from hardware.topology import uniform_all_to_all
from hardware.types import Cluster, DeviceSpec, Tier, Topology

DEV = DeviceSpec("toy", "none", {"bf16": 1e15}, 80e9, 3e12, 100, 100e9, 10e9)


def toy_cluster(nodes=4, dpn=8, bw_in=100e9, bw_out=10e9, lat_in=1e-6, lat_out=5e-6, planes=1) -> Cluster:
    tiers = (
        Tier("in", dpn, bw_in, lat_in, 0.5, 1, 1.0, "nvlink"),
        Tier("out", dpn * nodes, bw_out, lat_out, 0.5, planes, 1.0, "ib"),
    )
    return Cluster("toy", DEV, dpn, nodes, tiers, Topology("fat_tree2", dpn * nodes, 1, 0, 0.0))


B = 256e6


def test_ring_all_reduce_closed_form_inside_one_tier():
    c = toy_cluster()
    p, bw, lat = 8, 100e9 * 0.5, 1e-6
    cost = collective_time("all_reduce", B, p, c, algorithm="ring")
    assert cost.seconds == pytest.approx(2 * (p - 1) / p * B / bw + 2 * (p - 1) * lat)
    assert cost.bus_bytes == pytest.approx(2 * (p - 1) / p * B)
    assert cost.tiers == ("in",) and cost.source == "model:ring"


@pytest.mark.parametrize("op", ["all_gather", "reduce_scatter"])
def test_ring_gather_scatter_closed_form(op):
    c = toy_cluster()
    p, bw, lat = 8, 50e9, 1e-6
    cost = collective_time(op, B, p, c, algorithm="ring")
    assert cost.seconds == pytest.approx((p - 1) / p * B / bw + (p - 1) * lat)


def test_ring_across_nodes_uses_each_nodes_nics_in_parallel():
    # 8 ranks of a node share its 8 NIC exits: per-rank ring bandwidth min(50, 8 * 5) = 40 GB/s
    c = toy_cluster()
    p = 32
    cost = collective_time("all_reduce", B, p, c, algorithm="ring")
    assert cost.seconds == pytest.approx(2 * (p - 1) / p * B / 40e9 + 2 * (p - 1) * 5e-6)
    # one rank per node (placement): the ring runs at one NIC
    spread = collective_time("all_reduce", B, 4, c, algorithm="ring", placement=[0, 8, 16, 24])
    assert spread.seconds == pytest.approx(2 * 3 / 4 * B / 5e9 + 2 * 3 * 5e-6)


def test_tree_has_log_latency_and_wins_for_small_messages_at_scale():
    c = toy_cluster(nodes=64)
    small, big = 8e3, 1e9
    tree = collective_time("all_reduce", small, 512, c, algorithm="tree")
    ring = collective_time("all_reduce", small, 512, c, algorithm="ring")
    assert tree.seconds < ring.seconds
    lat = dict(tree.breakdown)["latency"]
    assert lat == pytest.approx(2 * (math.ceil(math.log2(64)) * 5e-6 + 7 * 1e-6))
    assert collective_time("all_reduce", small, 512, c).algorithm == "tree"
    assert collective_time("all_reduce", big, 16, c).algorithm in ("ring", "hierarchical")


def test_hierarchical_all_reduce_phases():
    c = toy_cluster()
    g, m = 8, 4
    cost = collective_time("all_reduce", B, 32, c, algorithm="hierarchical")
    phases = dict(cost.breakdown)
    assert phases["intra_reduce_scatter"] == pytest.approx((g - 1) / g * B / 50e9 + (g - 1) * 1e-6)
    assert phases["inter_all_reduce"] == pytest.approx(2 * (m - 1) / m * (B / g) / 5e9 + 2 * (m - 1) * 5e-6)
    assert cost.seconds == pytest.approx(sum(phases.values()))


def test_all_to_all_flat_counts_the_share_that_crosses_the_nic():
    c = toy_cluster()
    p = 32
    cost = collective_time("all_to_all", B, p, c, algorithm="flat")
    sent = B * (p - 1) / p
    nic_share = 24 / 31  # peers outside the node
    per_tier = dict(cost.breakdown)
    assert per_tier["out"] == pytest.approx(sent * nic_share / 5e9)
    assert per_tier["in"] == pytest.approx(sent * 7 / 31 / 50e9)
    assert cost.seconds == pytest.approx(per_tier["out"] + 5e-6)


def test_multi_plane_all_to_all_forwards_cross_plane_share_over_nvlink():
    c = toy_cluster(planes=8)
    geo = group_geometry(32, c)
    assert geo.carried_share[0] == pytest.approx(7 / 31 + 24 / 31 * 7 / 8)
    assert geo.carried_share[1] == pytest.approx(24 / 31)


@pytest.mark.parametrize("name", list_clusters())
def test_contiguous_all_to_all_agrees_with_topology_uniform_all_to_all(name):
    cluster = get_cluster(name)
    p = cluster.num_devices
    rate, shares = uniform_all_to_all(cluster.tiers, p)
    geo = group_geometry(p, cluster)
    for t, share in enumerate(shares):
        assert geo.carried_share[t] == pytest.approx(share.carried_share)
    cost = collective_time("all_to_all", B, p, cluster, algorithm="flat")
    beta = max(v for k, v in cost.breakdown if k != "latency")
    assert B * (p - 1) / p / beta == pytest.approx(rate)


def test_send_recv_paths():
    c = toy_cluster(planes=8)
    inside = collective_time("send_recv", B, 2, c)
    assert inside.seconds == pytest.approx(B / 50e9 + 1e-6)
    same_plane = collective_time("send_recv", B, 2, c, placement=[1, 9])
    assert same_plane.seconds == pytest.approx(B / 5e9 + 5e-6)
    cross_plane = collective_time("send_recv", B, 2, c, placement=[0, 9])
    assert cross_plane.seconds == pytest.approx(B / 5e9 + 5e-6 + 1e-6)
    with pytest.raises(ValueError, match="2 ranks"):
        collective_time("send_recv", B, 4, c)


class _Profile:
    def collective_seconds(self, op, group, nbytes, fabric=None, device=None):
        if op == "all_reduce" and group == 8:
            return 1.25e-3
        raise LookupError("not profiled")


def test_profile_wins_when_it_covers_the_case():
    c = toy_cluster()
    covered = collective_time("all_reduce", B, 8, c, profile=_Profile())
    assert covered.seconds == 1.25e-3 and covered.source == "profile"
    uncovered = collective_time("all_gather", B, 8, c, profile=_Profile())
    assert uncovered.source.startswith("model:")


def test_errors_list_valid_choices():
    c = toy_cluster()
    with pytest.raises(ValueError, match="valid: all_reduce"):
        collective_time("allreduce", B, 8, c)
    with pytest.raises(ValueError, match="valid: auto, ring"):
        collective_time("all_reduce", B, 8, c, algorithm="butterfly")
    with pytest.raises(ValueError, match="exceeds"):
        collective_time("all_reduce", B, 33, c)


def test_calibration_parameters_are_sourced_and_tier_efficiency_wins():
    calib = load_comm_calibration()
    assert calib.values and all(calib.sources[k] for k in calib.values)
    assert calib.get("link_achievable_fraction.nvlink") == pytest.approx(160 / 200)
    assert calib.get("link_achievable_fraction.ib") == pytest.approx(40 / 50)
    stated = Tier("x", 8, 200e9, 1e-6, 0.7, 1, 1.0, "nvlink")
    unstated = Tier("x", 8, 200e9, 1e-6, 1.0, 1, 1.0, "nvlink")
    assert achievable_bytes_per_s(stated) == pytest.approx(140e9)
    assert achievable_bytes_per_s(unstated) == pytest.approx(160e9)
    with pytest.raises(KeyError, match="known"):
        calib.get("nccl.nonexistent")


@pytest.mark.parametrize("name", list_clusters())
def test_every_catalog_cluster_every_op(name):
    cluster = get_cluster(name)
    sizes = sorted({2, min(8, cluster.num_devices), cluster.num_devices})
    for op in OPS:
        for p in sizes:
            if op == "send_recv" and p != 2:
                continue
            small = collective_time(op, 1e6, p, cluster)
            large = collective_time(op, 1e9, p, cluster)
            assert 0 < small.seconds < large.seconds
            assert small.algorithm in ALGORITHMS[op]
            for algo in ALGORITHMS[op]:  # auto picks the fastest
                assert large.seconds <= collective_time(op, 1e9, p, cluster, algorithm=algo).seconds * (1 + 1e-12)
