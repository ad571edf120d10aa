"""One hardware-name rule (issue 11 item 21) and HGX H20 / B200 clusters (item 20).

A name means one thing: device names and aliases name devices, cluster names and aliases name
clusters (the loader rejects a clash). Where a cluster is needed, a device name stands for the
smallest catalog cluster of that device holding the group (``hardware.catalog.cluster_for``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clustersim.cli import app
from hardware.catalog import (
    _catalog,
    cluster_for,
    get_cluster,
    get_device,
    lookup_hardware,
    parse_clusters,
    parse_devices,
    parse_prices,
)
from hardware.types import Cluster, DeviceSpec

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "hardware" / "data"
runner = CliRunner()


def _json(*args: str) -> dict:
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


# ------------------------------------------------------------------------- the rule


def test_no_name_is_both_a_device_and_a_cluster():
    cat = _catalog()
    devices = set(cat.devices) | set(cat.device_aliases)
    clusters = set(cat.clusters) | set(cat.cluster_aliases)
    assert not devices & clusters


def test_loader_rejects_a_cluster_alias_that_is_a_device_name():
    devices, dev_aliases, refs = parse_devices((DATA / "devices.yaml").read_text(), "devices.yaml")
    prices = parse_prices((DATA / "prices.yaml").read_text(), "prices.yaml", refs)
    text = (DATA / "clusters.yaml").read_text().replace("aliases: [hgx-h200]", "aliases: [h200, hgx-h200]")
    with pytest.raises(ValueError, match=r"clusters.h200-node.aliases.0: alias 'h200' is a device name"):
        parse_clusters(text, devices, prices, "clusters.yaml", refs, dev_aliases)


@pytest.mark.parametrize("name,kind,resolved", [
    ("h100", DeviceSpec, "h100-sxm"), ("h200", DeviceSpec, "h200-sxm"), ("h800", DeviceSpec, "h800-sxm"),
    ("B200", DeviceSpec, "b200"), ("h20", DeviceSpec, "h20"), ("910c", DeviceSpec, "ascend-910c"),
    ("h100-ib", Cluster, "h100-ib"), ("h200-node", Cluster, "h200-node"), ("mpft", Cluster, "h800-mpft"),
    ("nvl72", Cluster, "gb200-nvl72"), ("cm384", Cluster, "cloudmatrix384"), ("dgx-b200", Cluster, "b200-node"),
])
def test_lookup_hardware_names_what_the_name_is(name, kind, resolved):
    hw = lookup_hardware(name)
    assert isinstance(hw, kind) and hw.name == resolved


@pytest.mark.parametrize("name,devices,cluster", [
    ("h200", 1, "h200-node"), ("h200", 8, "h200-node"), ("h200", 9, "h200-ib"),
    ("h800", 8, "h800-mrft"), ("h800", 2048, "h800-mrft"), ("h800", 2049, "h800-mpft"),
    ("h800", 20000, "h800-ft3"), ("h20", 8, "h20-node"), ("h20", 16, "h20-ib"),
    ("b200", 8, "b200-node"), ("b200", 64, "b200-ib"), ("gb200", 72, "gb200-nvl72"),
    ("h800-mpft", 8, "h800-mpft"), ("mpft", 8, "h800-mpft"),  # a cluster name is that cluster
])
def test_cluster_for_device_is_the_smallest_cluster_holding_the_group(name, devices, cluster):
    assert cluster_for(name, devices).name == cluster


def test_cluster_for_names_the_clusters_when_none_is_big_enough():
    with pytest.raises(LookupError, match=r"no catalog cluster of h200-sxm has 2,048 devices \(its clusters: "
                                          r"h200-node \(8\), h200-ib \(1,024\)\)"):
        cluster_for("h200", 2048)


def test_get_cluster_of_a_device_name_says_it_is_a_device():
    with pytest.raises(LookupError, match=r"'h800' is a device \(h800-sxm\), its clusters: h800-mrft, h800-mpft"):
        get_cluster("h800")


# ------------------------------------------------------------------------- through the CLI


@pytest.mark.parametrize("name", ["h100", "h200", "h800", "b200", "h20"])
def test_hardware_show_device_names_show_the_device(name):
    data = _json("hardware", "show", name)
    assert data["name"] == get_device(name).name and "vendor" in data


@pytest.mark.parametrize("name,cluster", [("h100-ib", "h100-ib"), ("mpft", "h800-mpft"), ("b200-node", "b200-node"),
                                          ("h20-node", "h20-node")])
def test_hardware_show_cluster_names_show_the_cluster(name, cluster):
    data = _json("hardware", "show", name)
    assert data["name"] == cluster and "tiers" in data


@pytest.mark.parametrize("hw,cluster", [("h20", "h20-node"), ("b200", "b200-node"), ("h800", "h800-mrft"),
                                        ("h100", "h100-ib"), ("h200", "h200-node"), ("h800-mpft", "h800-mpft")])
def test_estimate_step_resolves_by_the_rule(hw, cluster):
    data = _json("estimate", "step", "--model", "llama-3.1-8b", "--hardware", hw, "--phase", "decode",
                 "--batch", "8", "--context", "1024", "--tp", "2")
    assert data["hardware"] == cluster and data["seconds"] > 0


def test_estimate_dispatch_b200_spans_its_own_ib_fabric():
    data = _json("estimate", "dispatch", "--hardware", "b200", "--ep", "64", "--tokens-per-rank", "128")
    assert data["hardware"] == "b200-ib"


def test_estimate_group_too_big_is_one_line_exit_2():
    r = runner.invoke(app, ["estimate", "dispatch", "--hardware", "h20", "--ep", "2048", "--tokens-per-rank", "8"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        "error: no catalog cluster of h20 has 2,048 devices (its clusters: h20-node (8), h20-ib (1,024))"]


# ------------------------------------------------------------------------- H20 / B200 clusters


@pytest.mark.parametrize("name,device,nvlink_unidir_gb,switches", [
    ("h20-node", "h20", 450, 4), ("b200-node", "b200", 900, 2)])
def test_hgx_node_clusters(name, device, nvlink_unidir_gb, switches):
    c = get_cluster(name)
    assert c.device.name == device and c.num_devices == 8 and c.devices_per_node == 8
    assert len(c.tiers) == 1 and c.tiers[0].span_devices == 8
    assert c.tiers[0].bandwidth_bytes_per_s == nvlink_unidir_gb * 1e9
    # the NVLink tier matches the device's own catalog scale-up bandwidth
    assert c.tiers[0].bandwidth_bytes_per_s == c.device.scale_up_bytes_per_s
    assert c.topology.switches == switches
    for key in ("bandwidth_gb_per_s_unidir", "span_devices", "latency_us", "efficiency"):  # every number sourced
        assert c.sources[f"tiers.nvlink.{key}"]
    assert c.sources["topology.switches"] and c.sources["topology.links_per_endpoint"]


def test_compare_b200_uses_its_own_hgx_fabric_not_nvl72():
    import planner
    from planner.space import resolve_hardware

    plan = planner.load_plan(ROOT / "examples/plan_deepseek-v3_h200x32.yaml", ["hardware={device: b200, devices: 32}"])
    ref, budget = resolve_hardware(plan)
    assert (ref.name, ref.device, budget) == ("b200-ib", None, 32)  # not gb200-nvl72[b200]
    assert ref.resolve().tiers[0].span_devices == 8
    plan = planner.load_plan(ROOT / "examples/plan_deepseek-v3_h200x32.yaml", ["hardware={device: h20, devices: 8}"])
    assert resolve_hardware(plan)[0].name == "h20-node"


def test_what_if_compare_b200_through_the_cli():
    data = _json("what-if", str(ROOT / "examples/plan_deepseek-v3_h200x32.yaml"), "--compare", "b200",
                 "--set", "search.attention_tp=[1]", "--set", "search.decode_batch_per_rank=[64]")
    (row,) = data["rows"]
    assert (row["cluster"], row["device"]) == ("b200-ib", "b200")
