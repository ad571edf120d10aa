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
CAL = load_comm_calibration()


def base(proto="simple"):
    return CAL.get(f"nccl.base_latency_s.{proto}")


def hop(fabric, proto="simple"):
    """NCCL per-step latency: fabric 'nvlink' (toy tier 'in') or 'net' (toy tier 'out', IB)."""
    return CAL.get(f"nccl.hop_latency_s.{fabric}.{proto}")


def test_ring_all_reduce_closed_form_inside_one_tier():
    c = toy_cluster()
    p, bw = 8, 100e9 * 0.5
    cost = collective_time("all_reduce", B, p, c, algorithm="ring", protocol="simple")
    assert cost.seconds == pytest.approx(2 * (p - 1) / p * B / bw + base() + 2 * (p - 1) * hop("nvlink"))
    assert cost.bus_bytes == pytest.approx(2 * (p - 1) / p * B)
    assert cost.tiers == ("in",) and cost.source == "model:ring" and cost.protocol == "simple"


@pytest.mark.parametrize("proto", ["ll", "ll128", "simple"])
def test_protocol_terms(proto):
    # each protocol: its own base and per-step latency, and its payload fraction of the bandwidth
    c = toy_cluster()
    p, bw, frac = 8, 50e9, CAL.get(f"nccl.protocol_bw_fraction.{proto}")
    cost = collective_time("all_reduce", B, p, c, algorithm="ring", protocol=proto)
    assert cost.seconds == pytest.approx(2 * (p - 1) / p * B / (bw * frac) + base(proto) + 14 * hop("nvlink", proto))


def test_protocol_regimes_small_messages_low_latency_large_messages_simple():
    c = toy_cluster()
    small = collective_time("all_reduce", 64e3, 8, c, algorithm="ring")
    large = collective_time("all_reduce", 1e9, 8, c, algorithm="ring")
    assert small.protocol in ("ll", "ll128") and large.protocol == "simple"
    for proto in ("ll", "ll128", "simple"):  # auto is the cheapest protocol
        assert small.seconds <= collective_time("all_reduce", 64e3, 8, c, algorithm="ring", protocol=proto).seconds


@pytest.mark.parametrize("op", ["all_gather", "reduce_scatter"])
def test_ring_gather_scatter_closed_form(op):
    c = toy_cluster()
    p, bw = 8, 50e9
    cost = collective_time(op, B, p, c, algorithm="ring", protocol="simple")
    assert cost.seconds == pytest.approx((p - 1) / p * B / bw + base() + (p - 1) * hop("nvlink"))


def test_ring_across_nodes_uses_each_nodes_nics_in_parallel():
    # 8 ranks of a node share its 8 NIC exits: per-rank ring bandwidth min(50, 8 * 5) = 40 GB/s;
    # NCCL's step count: 2(p-1) steps, 2(nodes-1) of them over the network
    c = toy_cluster()
    p = 32
    cost = collective_time("all_reduce", B, p, c, algorithm="ring", protocol="simple")
    steps, inter = 2 * (p - 1), 2 * 3
    lat = base() + (steps - inter) * hop("nvlink") + inter * hop("net")
    assert cost.seconds == pytest.approx(2 * (p - 1) / p * B / 40e9 + lat)
    # one rank per node (placement): the ring runs at one NIC, every step over the network
    spread = collective_time("all_reduce", B, 4, c, algorithm="ring", placement=[0, 8, 16, 24], protocol="simple")
    assert spread.seconds == pytest.approx(2 * 3 / 4 * B / 5e9 + base() + 6 * hop("net"))


def test_tree_has_log_latency_and_wins_for_small_messages_at_scale():
    c = toy_cluster(nodes=64)
    small, big = 8e3, 1e9
    tree = collective_time("all_reduce", small, 512, c, algorithm="tree", protocol="ll")
    ring = collective_time("all_reduce", small, 512, c, algorithm="ring", protocol="ll")
    assert tree.seconds < ring.seconds
    lat = dict(tree.breakdown)["latency"]
    assert lat == pytest.approx(base("ll") + 2 * (math.ceil(math.log2(64)) * hop("net", "ll") + 7 * hop("nvlink", "ll")))
    assert collective_time("all_reduce", small, 512, c).algorithm == "tree"
    assert collective_time("all_reduce", big, 16, c).algorithm in ("ring", "hierarchical")


def test_hierarchical_all_reduce_phases():
    c = toy_cluster()
    g, m = 8, 4
    cost = collective_time("all_reduce", B, 32, c, algorithm="hierarchical", protocol="simple")
    phases = dict(cost.breakdown)
    assert phases["intra_reduce_scatter"] == pytest.approx((g - 1) / g * B / 50e9 + base() + (g - 1) * hop("nvlink"))
    assert phases["inter_all_reduce"] == pytest.approx(2 * (m - 1) / m * (B / g) / 5e9 + base()
                                                       + 2 * (m - 1) * hop("net"))
    assert cost.seconds == pytest.approx(sum(phases.values()))


def _nvs_cluster(efficiency: float) -> Cluster:
    tier = Tier("nvlink", 8, 450e9, 3e-6, 0.8, 1, 1.0, "nvlink", efficiency)
    return Cluster("nvs", DEV, 8, 1, (tier,), Topology("nvswitch_node", 8, 1, 0, 0.0))


@pytest.mark.parametrize("p", [2, 4, 5, 8])
def test_nvls_sends_n_plus_one_and_needs_a_reducing_switch(p):
    # NVLink SHARP: every rank pushes its buffer once and receives 1/p reduced + the results:
    # B (1 + 1/p) per direction at the switch's reduction efficiency; busbw = 2(p-1)/(p+1) x that
    c = _nvs_cluster(0.85)
    big = 8 * 2**30
    nvls = collective_time("all_reduce", big, p, c, algorithm="nvls")
    link = 450e9 * 0.8 * 0.85
    assert nvls.seconds == pytest.approx(big * (1 + 1 / p) / link + CAL.get("nccl.nvls_latency_s"))
    assert nvls.bus_bytes_per_s == pytest.approx(2 * (p - 1) / (p + 1) * link, rel=0.01)
    assert nvls.protocol == "simple"
    # auto takes NVLS only where it beats the ring (the ring wins at 2 ranks)
    ring = collective_time("all_reduce", big, p, c, algorithm="ring")
    assert collective_time("all_reduce", big, p, c).algorithm == ("nvls" if nvls.seconds < ring.seconds else "ring")
    assert collective_time("all_reduce", big, 2, c).algorithm == "ring"
    with pytest.raises(ValueError, match="does not apply"):
        collective_time("all_reduce", big, p, _nvs_cluster(0.0), algorithm="nvls")
    with pytest.raises(ValueError, match="does not apply"):
        collective_time("all_reduce", big, 16, toy_cluster(), algorithm="nvls")


def test_all_to_all_flat_counts_the_share_that_crosses_the_nic():
    c = toy_cluster()
    p = 32
    frac = CAL.get("nccl.all_to_all_bw_fraction")
    cost = collective_time("all_to_all", B, p, c, algorithm="flat", protocol="simple")
    sent = B * (p - 1) / p
    nic_share = 24 / 31  # peers outside the node
    per_tier = dict(cost.breakdown)
    assert per_tier["out"] == pytest.approx(sent * nic_share / (5e9 * frac))
    assert per_tier["in"] == pytest.approx(sent * 7 / 31 / (50e9 * frac))
    assert cost.seconds == pytest.approx(per_tier["out"] + base() + hop("net"))


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
    nccl = all(t.technology in ("nvlink", "ib", "roce") for t in cluster.tiers)
    frac = CAL.get("nccl.all_to_all_bw_fraction") * (CAL.get(f"nccl.protocol_bw_fraction.{cost.protocol}") if nccl else 1)
    assert B * (p - 1) / p / beta == pytest.approx(rate * frac)


def test_send_recv_paths():
    c = toy_cluster(planes=8)
    inside = collective_time("send_recv", B, 2, c, protocol="simple")
    assert inside.seconds == pytest.approx(B / 50e9 + base() + hop("nvlink"))
    same_plane = collective_time("send_recv", B, 2, c, placement=[1, 9], protocol="simple")
    assert same_plane.seconds == pytest.approx(B / 5e9 + base() + hop("net"))
    cross_plane = collective_time("send_recv", B, 2, c, placement=[0, 9], protocol="simple")
    assert cross_plane.seconds == pytest.approx(B / 5e9 + base() + hop("net") + hop("nvlink"))
    with pytest.raises(ValueError, match="2 ranks"):
        collective_time("send_recv", B, 4, c)


def test_fabric_that_nccl_does_not_drive_keeps_tier_latency():
    # unified bus (CloudMatrix384): one native protocol, the tier's own latency per step
    ub = Tier("ub", 8, 100e9, 1e-6, 0.5, 1, 1.0, "ub")
    c = Cluster("ub", DEV, 8, 1, (ub,), Topology("unified_bus", 8, 1, 0, 0.0))
    cost = collective_time("all_reduce", B, 8, c, algorithm="ring")
    assert cost.protocol == "native"
    assert cost.seconds == pytest.approx(2 * 7 / 8 * B / 50e9 + 14 * 1e-6)


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
    with pytest.raises(ValueError, match="valid: auto, ll"):
        collective_time("all_reduce", B, 8, c, protocol="ll64")


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
            for algo in ALGORITHMS[op]:  # auto picks the fastest of the algorithms that apply
                try:
                    other = collective_time(op, 1e9, p, cluster, algorithm=algo).seconds
                except ValueError as exc:
                    assert algo == "nvls" and "does not apply" in str(exc)
                    continue
                assert large.seconds <= other * (1 + 1e-12)


def test_contiguous_geometry_memo_equals_a_placement_of_the_same_ranks():
    """``group_geometry`` memoises contiguous groups by the tiers' shapes: the answer is the one
    an explicit placement of ranks 0..p-1 computes afresh, on every catalog cluster."""
    for name in list_clusters():
        c = get_cluster(name)
        for p in sorted({1, 2, 4, 8, 16, 64, 144, c.num_devices} - {0}):
            if p <= c.num_devices:
                assert group_geometry(p, c) == group_geometry(p, c, list(range(p)))
