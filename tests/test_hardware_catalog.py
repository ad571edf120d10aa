"""Hardware catalog: every device/cluster loads, SI conversion, lookups, reports, data validation."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import yaml

import hardware
from hardware import catalog
from hardware.catalog import (
    UnknownNameError,
    cluster_report,
    get_cluster,
    get_device,
    list_clusters,
    list_devices,
    parse_clusters,
    parse_devices,
    parse_prices,
)

REF = yaml.safe_load((Path(__file__).parent / "data" / "reference" / "isca_topology.yaml").read_text())
TARGETS = {t["id"]: t for t in REF["targets"]}
DATA = Path(hardware.__file__).parent / "data"

REQUIRED_DEVICES = {"h800-sxm", "h100-sxm", "h200-sxm", "h20", "b200", "gb200", "ascend-910c", "ascend-910c-die"}
REQUIRED_CLUSTERS = {"h800-mpft", "h800-mrft", "h100-ib", "h200-node", "gb200-nvl72", "cloudmatrix384"}


def test_public_names_reexported():
    for name in ("get_device", "get_cluster", "list_devices", "list_clusters", "cluster_report",
                 "UnknownNameError", "DeviceSpec", "Tier", "Topology", "Cluster"):
        assert hasattr(hardware, name)


@pytest.mark.parametrize("name", sorted(REQUIRED_DEVICES))
def test_every_device_loads_with_sources(name):
    d = get_device(name)
    assert name in list_devices()
    assert d.peak_flops("bf16") > 0 and d.hbm_bytes > 0 and d.hbm_bytes_per_s > 0
    assert d.scale_up_bytes_per_s > 0 and d.compute_units > 0
    for key in ("bf16_tflops", "hbm_gb", "hbm_tb_per_s", "compute_units", "price_usd"):
        assert key in d.sources, key


@pytest.mark.parametrize("name", sorted(REQUIRED_CLUSTERS | {"h800-ft3"}))
def test_every_cluster_loads(name):
    c = get_cluster(name)
    assert c.num_devices == c.topology.endpoints or c.topology.endpoints >= c.num_devices
    assert c.tiers[-1].span_devices == c.num_devices
    spans = [t.span_devices for t in c.tiers]
    assert spans == sorted(spans) and len(set(spans)) == len(spans)
    r = cluster_report(c)
    assert r["devices"] == c.num_devices and r["nodes"] == c.num_nodes
    assert r["bisection_bytes_per_s"] > 0 and r["all_to_all_bytes_per_s_per_device"] > 0
    assert len(r["tiers"]) == len(c.tiers)


def test_required_clusters_listed():
    assert REQUIRED_CLUSTERS <= set(list_clusters())


# --- SI conversion ---------------------------------------------------------------------------


def test_h800_si_conversion():
    d = get_device("h800-sxm")
    nominal = TARGETS["isca.h800.nvlink_uni_nominal"]["value"]["nominal"] * 1e9
    assert d.scale_up_bytes_per_s == pytest.approx(nominal) == pytest.approx(200e9)
    assert d.scale_out_bytes_per_s == pytest.approx(TARGETS["isca.h800.ib_effective"]["value"]["nominal"] * 1e9)
    assert d.peak_flops("bf16") == pytest.approx(989.4e12)
    assert d.hbm_bytes == pytest.approx(80e9)
    assert d.compute_units == 132  # isca.train.comm_sms: "H800 has 132" SMs


def test_h800_nvlink_tier_matches_isca():
    c = get_cluster("h800-mpft")
    nvl = c.tier_for_group(8)
    v = TARGETS["isca.h800.nvlink_uni_nominal"]["value"]
    assert nvl.technology == "nvlink"
    assert nvl.bandwidth_bytes_per_s == pytest.approx(v["nominal"] * 1e9)
    assert nvl.effective_bytes_per_s == pytest.approx(v["achievable"] * 1e9)
    assert nvl.latency_s == pytest.approx(TARGETS["isca.latency.nvlink"]["value"] * 1e-6)
    ib = TARGETS["isca.h800.ib_effective"]["value"]
    lat = TARGETS["isca.latency.ib"]["value"]
    leaf, spine = c.tiers[1], c.tiers[2]
    assert leaf.effective_bytes_per_s == pytest.approx(ib["effective"] * 1e9)
    assert (leaf.latency_s, spine.latency_s) == pytest.approx((lat["same_leaf"] * 1e-6, lat["cross_leaf"] * 1e-6))
    assert leaf.planes == spine.planes == 8


def test_h200_datasheet_figures():
    d = get_device("H200")
    assert d.hbm_bytes == pytest.approx(141e9)
    assert d.hbm_bytes_per_s == pytest.approx(4.8e12)
    assert d.peak_flops("bf16") == pytest.approx(989e12, rel=1e-3)
    assert d.compute_units == 132
    assert d.scale_up_bytes_per_s == pytest.approx(450e9)  # 900 GB/s bidirectional


def test_ascend_910c_package_and_die():
    hw = TARGETS["cm384.hw.npu"]["value"]
    pkg, die = get_device("ascend-910c"), get_device("ascend-910c-die")
    assert pkg.dies == hw["dies"] == 2
    assert pkg.peak_flops("bf16") == pytest.approx(hw["bf16_tflops"] * 1e12)
    assert pkg.hbm_bytes == pytest.approx(hw["hbm_GB"] * 1e9)
    assert pkg.hbm_bytes_per_s == pytest.approx(hw["hbm_TBps"] * 1e12)
    assert pkg.scale_up_bytes_per_s == pytest.approx(hw["ub_unidir_GBps_per_npu"] * 1e9)
    assert pkg.scale_out_bytes_per_s == pytest.approx(hw["rdma_Gbps_per_npu"] * 1e9 / 8)
    assert pkg.compute_units == hw["aic_per_die"] * hw["dies"]
    for dtype, flops in pkg.peak_flops_per_s.items():
        assert die.peak_flops(dtype) == pytest.approx(flops / 2)
    for field in ("hbm_bytes", "hbm_bytes_per_s", "scale_up_bytes_per_s", "scale_out_bytes_per_s", "price_usd"):
        assert getattr(die, field) == pytest.approx(getattr(pkg, field) / 2), field
    assert die.compute_units == pkg.compute_units // 2 and die.dies == 1
    with pytest.raises(KeyError, match="fp8"):
        pkg.peak_flops("fp8")


def test_gb200_nvl72_tier():
    c = get_cluster("gb200-nvl72")
    assert c.num_devices == 72
    assert c.tier_for_group(72).bandwidth_bytes_per_s == pytest.approx(900e9)


def test_cloudmatrix384_fabric():
    c = get_cluster("CloudMatrix384")
    assert (c.num_nodes, c.devices_per_node, c.num_devices) == (48, 8, 384)
    ub = c.tier_for_group(384)
    assert ub.technology == "ub" and ub.bandwidth_bytes_per_s == pytest.approx(392e9)
    assert c.tier_for_group(8).bandwidth_bytes_per_s == ub.bandwidth_bytes_per_s  # non-blocking UB
    assert c.topology.switches == 48 * 7 + 7 * 16
    rdma = {t.name: t for t in c.side_tiers}["rdma"]
    assert rdma.bandwidth_bytes_per_s == pytest.approx(50e9)
    r = cluster_report(c)
    assert r["all_to_all_bytes_per_s_per_device"] == pytest.approx(392e9 * 0.776, rel=0.03)


# --- lookups ---------------------------------------------------------------------------------


def test_names_case_insensitive_and_aliases():
    assert get_device("H800-SXM") is get_device("h800") is get_device(" h800-sxm ")
    assert get_cluster("H800-MPFT") is get_cluster("mpft")


def test_unknown_name_lists_known_and_suggests():
    with pytest.raises(UnknownNameError) as exc:
        get_cluster("h800-mpftt")
    msg = str(exc.value)
    assert isinstance(exc.value, LookupError)
    for name in REQUIRED_CLUSTERS:
        assert name in msg
    assert "did you mean 'h800-mpft'" in msg
    with pytest.raises(UnknownNameError, match="known: .*h20"):
        get_device("h2000")


def test_device_name_is_not_a_cluster():
    with pytest.raises(UnknownNameError):
        get_cluster("h800-sxm")


def test_tier_for_group():
    c = get_cluster("h800-mpft")
    assert c.tier_for_group(1).name == "nvlink"
    assert c.tier_for_group(8).name == "nvlink"
    assert c.tier_for_group(9).name == "ib-leaf"
    assert c.tier_for_group(256).name == "ib-leaf"
    assert c.tier_for_group(257).name == "ib-spine"
    assert c.tier_for_group(16384).name == "ib-spine"
    with pytest.raises(ValueError, match="exceeds"):
        c.tier_for_group(16385)


# --- reports ---------------------------------------------------------------------------------


def test_mpft_report_matches_table3_row():
    r = cluster_report("h800-mpft")
    want = TARGETS["isca.topo.mpft"]["value"]
    assert (r["endpoints"], r["switches"], r["links"]) == (want["endpoints"], want["switches"], want["links"])
    assert r["cost_per_endpoint_usd"] == pytest.approx(want["cost_per_endpoint_kusd"] * 1e3, rel=0.02)
    assert r["bisection_bytes_per_s"] == pytest.approx(16384 / 2 * 50e9)
    # uniform all-to-all is bounded by the one 400G NIC per GPU (~40 GB/s effective)
    assert r["all_to_all_bytes_per_s_per_device"] == pytest.approx(40e9, rel=0.01)
    assert r["all_to_all_bottleneck_tier"] == "ib-leaf"


def test_mrft_and_ft3_reports_match_table3_rows():
    for cluster, tid in (("h800-mrft", "isca.topo.ft2"), ("h800-ft3", "isca.topo.ft3")):
        r = cluster_report(cluster)
        want = TARGETS[tid]["value"]
        assert (r["endpoints"], r["switches"], r["links"]) == (want["endpoints"], want["switches"], want["links"])
        assert r["cost_per_endpoint_usd"] == pytest.approx(want["cost_per_endpoint_kusd"] * 1e3, rel=0.02)


def test_scale_up_clusters_cost_not_modelled():
    for name in ("h200-node", "gb200-nvl72", "cloudmatrix384"):
        r = cluster_report(name)
        assert r["cost_usd"] == 0.0 and "not modelled" in r["cost_notes"]
        assert r["devices_cost_usd"] > 0


def test_load_is_fast_and_cached():
    catalog._catalog.cache_clear()
    t0 = time.perf_counter()
    c = get_cluster("h800-mpft")
    assert time.perf_counter() - t0 < 0.5
    assert c.num_devices == 16384
    t0 = time.perf_counter()
    for _ in range(1000):
        get_cluster("h800-mpft")
    assert time.perf_counter() - t0 < 0.1


def test_report_is_plain_data():
    r = cluster_report("h800-mpft")
    yaml.safe_dump(r)  # no custom objects
    assert all(math.isfinite(row["a2a_bound_bytes_per_s"]) or row["a2a_carried_share"] == 0 for row in r["tiers"])


# --- data validation -------------------------------------------------------------------------


def _devices_text() -> str:
    return (DATA / "devices.yaml").read_text()


def _mutate(text: str, fn) -> str:
    doc = yaml.safe_load(text)
    fn(doc)
    return yaml.safe_dump(doc)


def test_bad_device_value_names_file_and_field():
    text = _mutate(_devices_text(), lambda d: d["devices"]["h20"].__setitem__("hbm_gb", -1))
    with pytest.raises(ValueError, match=r"^devices\.yaml: devices\.h20\.hbm_gb: "):
        parse_devices(text, "devices.yaml")


def test_unknown_device_field_rejected():
    text = _mutate(_devices_text(), lambda d: d["devices"]["h20"].__setitem__("hbm_gib", 96))
    with pytest.raises(ValueError, match=r"devices\.h20\.hbm_gib: Extra inputs"):
        parse_devices(text, "devices.yaml")


def test_missing_source_rejected():
    text = _mutate(_devices_text(), lambda d: d["devices"]["h20"]["sources"].pop("fp8_tflops"))
    with pytest.raises(ValueError, match=r"devices\.yaml: devices\.h20\.sources\.fp8_tflops: missing source"):
        parse_devices(text, "devices.yaml")


def test_source_must_cite_a_ref():
    text = _mutate(_devices_text(), lambda d: d["devices"]["h20"]["sources"].__setitem__("hbm_gb", "trust me"))
    with pytest.raises(ValueError, match=r"devices\.h20\.sources\.hbm_gb: source must start with a ref"):
        parse_devices(text, "devices.yaml")


def test_bad_cluster_data_names_file_and_field():
    devices, aliases, refs = parse_devices(_devices_text(), "devices.yaml")
    prices = parse_prices((DATA / "prices.yaml").read_text(), "prices.yaml", refs)
    clusters_text = (DATA / "clusters.yaml").read_text()
    doc = yaml.safe_load(clusters_text)
    doc.pop("templates")
    doc["clusters"]["h800-mpft"]["tiers"][1]["span_devices"] = 4
    with pytest.raises(ValueError, match=r"clusters\.yaml: clusters\.h800-mpft\.tiers\.1\.span_devices: spans must grow"):
        parse_clusters(yaml.safe_dump(doc), devices, prices, "clusters.yaml", refs, aliases)
    doc = yaml.safe_load(clusters_text)
    doc["clusters"]["h200-node"]["device"] = "h300"
    with pytest.raises(ValueError, match=r"clusters\.h200-node\.device: unknown device 'h300'"):
        parse_clusters(yaml.safe_dump(doc), devices, prices, "clusters.yaml", refs, aliases)
    doc = yaml.safe_load(clusters_text)
    doc["clusters"]["h100-ib"]["topology"]["kind"] = "torus"
    with pytest.raises(ValueError, match=r"clusters\.h100-ib\.topology"):
        parse_clusters(yaml.safe_dump(doc), devices, prices, "clusters.yaml", refs, aliases)
    doc = yaml.safe_load(clusters_text)
    doc["clusters"]["h100-ib"]["num_nodes"] = 512  # 4096 GPUs exceed a 64-port two-layer fat-tree
    with pytest.raises(ValueError, match=r"clusters\.h100-ib\.topology: .*at most 2048"):
        parse_clusters(yaml.safe_dump(doc), devices, prices, "clusters.yaml", refs, aliases)


def test_invalid_yaml_names_file():
    with pytest.raises(ValueError, match=r"^devices\.yaml: invalid YAML"):
        parse_devices("devices: [unclosed", "devices.yaml")


def test_unknown_name_error_pickles():
    import pickle

    err = UnknownNameError("cluster", "nope", ["a", "b"])
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.known == ["a", "b"]
