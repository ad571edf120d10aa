"""Reference checks of the catalogs and the closed forms: model accounting, network topology
counts and prices, and the hardware figures the catalog takes from papers.

* ``accounting``: ``workloads.accounting`` (parameters, KV bytes, training FLOPs) against
  ``isca_accounting.yaml``;
* ``topology``: ``hardware.topology`` counts and the two-price cost model against ISCA'25
  Table 3 (``isca_topology.yaml``; FT2 and FT3 costs fit the prices, the others are held out);
* ``catalog``: the device and fabric figures of ``hardware.catalog`` against the same file's
  configuration rows (bandwidths, latencies, the Ascend 910C package).
"""

from __future__ import annotations

from typing import Any, Callable

from clustersim.checks.core import Check, Tolerance, load_reference, role_of, setting_text

__all__ = ["accounting_checks", "topology_checks", "catalog_checks", "topology_counts"]


def _accounting_value(t: dict) -> float:
    from workloads import accounting as acc

    q, m, s = t["quantity"], t["model"], t.get("setting") or {}
    if q == "kv_cache_bytes_per_token":
        return acc.kv_cache_bytes_per_token(m, s.get("kv_dtype", "bf16"))
    if q == "kv_cache_bytes_per_token_per_layer":
        return acc.kv_cache_bytes_per_token_per_layer(m, s.get("kv_dtype", "bf16"))
    if q == "training_flops_per_token":
        return acc.training_flops_per_token(m, seq_len=s.get("seq_len", 4096), causal=s.get("causal", True))
    if q == "total_params":
        return acc.total_params(m)
    if q == "activated_params":
        return acc.activated_params(m)
    if q == "checkpoint_params":
        return acc.checkpoint_params(m)
    raise ValueError(f"isca_accounting.yaml: {t['id']}: unknown quantity {q!r}")


def accounting_checks() -> list[Check]:
    """Every target of ``isca_accounting.yaml``, in the unit the source prints."""
    ref = load_reference("isca_accounting.yaml")
    out = []
    for t in ref["targets"]:
        scale = float(t["value_si"]) / float(t["value"])  # SI per printed unit
        src = ref["sources"][t["source"]]
        out.append(Check(
            family="accounting", id=t["id"], source=f"{t['source']}: {src['title']}, {src['url']}",
            setting=setting_text({"model": t["model"], **(t.get("setting") or {})}), quantity=t["quantity"],
            unit=t["unit"], published=float(t["value"]), predicted=_accounting_value(t) / scale,
            tolerance=Tolerance.parse(t["tolerance"], scale), source_status=t["status"],
            known_gap=" ".join(str(t.get("known_deviation", "")).split())))
    return out


def topology_counts() -> dict[str, Callable[[], Any]]:
    from hardware import topology as topo

    # the dragonfly's group count is read off the published switch count (16,352 / 32 routers)
    return {"isca.topo.ft2": lambda: topo.fat_tree2(64),
            "isca.topo.mpft": lambda: topo.multi_plane_fat_tree2(64, planes=8),
            "isca.topo.ft3": lambda: topo.fat_tree3(64),
            "isca.topo.sf": lambda: topo.slim_fly_for_radix(64),
            "isca.topo.df": lambda: topo.dragonfly_for_radix(64, groups=16352 // 32)}


def _gap(t: dict, key: str) -> tuple[str, Tolerance | None]:
    gap = (t.get("known_gap") or {}).get(key)
    if not gap:
        return "", None
    return " ".join(gap["mechanism"].split()), Tolerance.parse(gap["bound"]) if "bound" in gap else None


def topology_checks() -> list[Check]:
    """Table 3 of ISCA'25: endpoints, switches and links (exact), total cost and cost per endpoint."""
    from hardware import topology as topo
    from hardware.catalog import get_network_prices

    ref = load_reference("isca_topology.yaml")
    targets = {t["id"]: t for t in ref["targets"]}
    prices = get_network_prices("ib-400g-64port-isca25")
    fit = set(ref["calibration_rows"])
    src = ref["sources"]["isca25"]
    out = []
    for tid, build in topology_counts().items():
        t, counts = targets[tid], build()
        cost = topo.network_cost_usd(counts, prices)
        common = dict(family="topology", source=f"isca25: {src['title']}, {src['url']}",
                      setting=setting_text(t["setting"]), source_status=t["status"])
        for key in ("endpoints", "switches", "links"):
            role = "fit" if (tid == "isca.topo.df" and key == "switches") else "-"  # DF groups read off it
            out.append(Check(id=f"{tid}.{key}", quantity=key, unit=t["unit"][key], published=float(t["value"][key]),
                             predicted=float(getattr(counts, key)), tolerance=Tolerance(exact=True), role=role, **common))
        tol = Tolerance.parse(t["tolerance"]["cost"])
        for key, got in (("cost_musd", cost / 1e6), ("cost_per_endpoint_kusd", cost / counts.endpoints / 1e3)):
            gap, bound = _gap(t, key)
            out.append(Check(id=f"{tid}.{key}", quantity=key, unit=t["unit"][key], published=float(t["value"][key]),
                             predicted=got, tolerance=tol, role="fit" if tid in fit and key == "cost_musd" else "holdout",
                             known_gap=gap, gap_bound=bound, **common))
    return out


def _catalog_values() -> dict[str, dict[str, float]]:
    """What the catalog holds for each configuration row (same units as the row)."""
    from hardware.catalog import get_cluster, get_device

    h800, mpft = get_device("h800-sxm"), get_cluster("h800-mpft")
    nvl = mpft.tier_for_group(8)
    npu, cm = get_device("ascend-910c"), get_cluster("cloudmatrix384")
    ub_in, ub_out = cm.tiers[0], cm.tiers[-1]
    return {
        "isca.latency.ib": {"same_leaf": mpft.tiers[1].latency_s * 1e6, "cross_leaf": mpft.tiers[2].latency_s * 1e6},
        "isca.latency.nvlink": {"": nvl.latency_s * 1e6},
        "isca.h800.nvlink_bidir": {"": 2 * h800.scale_up_bytes_per_s / 1e9},
        "isca.h800.nvlink_uni_nominal": {"nominal": h800.scale_up_bytes_per_s / 1e9,
                                         "achievable": nvl.effective_bytes_per_s / 1e9},
        "isca.h800.ib_effective": {"nominal": h800.scale_out_bytes_per_s / 1e9,
                                   "effective": mpft.tiers[1].effective_bytes_per_s / 1e9},
        "isca.h800.nics_per_node": {"": float(mpft.devices_per_node)},  # one NIC per GPU, one plane each
        "cm384.hw.npu": {"dies": float(npu.dies), "bf16_tflops": npu.peak_flops("bf16") / 1e12,
                         "hbm_GB": npu.hbm_bytes / 1e9, "hbm_TBps": npu.hbm_bytes_per_s / 1e12,
                         "aic_per_die": npu.compute_units / npu.dies,
                         "ub_unidir_GBps_per_npu": npu.scale_up_bytes_per_s / 1e9,
                         "rdma_Gbps_per_npu": npu.scale_out_bytes_per_s * 8 / 1e9},
        "cm384.hw.ub_interconnect": {
            "bw_loss_pct_max": (1 - ub_out.effective_bytes_per_s / ub_in.effective_bytes_per_s) * 100,
            "added_latency_us_max": (ub_out.latency_s - ub_in.latency_s) * 1e6},
    }


def catalog_checks() -> list[Check]:
    """The configuration and measured-latency rows of ``isca_topology.yaml`` against the catalog.

    Rows the catalog has no field for (RoCE latency, the 910C's vector cores, the SMs DeepSeek
    reserves for communication: an input of a training job, not a catalog figure) are listed as
    known gaps with that reason, so every row of the file appears."""
    ref = load_reference("isca_topology.yaml")
    values = _catalog_values()
    out = []
    for t in ref["targets"]:
        if t["id"].startswith("isca.topo.") or t["id"].startswith("isca.decode_limit."):
            continue  # Table 3 rows: topology_checks; the decode limit: comm.isca_decode_limit
        src = ref["sources"][t["source"]]
        have = values.get(t["id"], {})
        parts = t["value"] if isinstance(t["value"], dict) else {"": t["value"]}
        units = t["unit"]
        for key, published in parts.items():
            got = have.get(key)
            tol = Tolerance.parse(t["tolerance"])
            out.append(Check(
                family="catalog", id=f"{t['id']}.{key}" if key else t["id"],
                source=f"{t['source']}: {src['title']}, {src['url']}", setting=setting_text(t.get("setting")),
                quantity=f"{t['quantity']}{f' ({key})' if key else ''}",
                unit=units if isinstance(units, str) else str(units), published=float(published), predicted=got,
                tolerance=tol, source_status=t["status"], role=role_of(None),
                known_gap="" if got is not None else "no field for it in the hardware catalog (not used by the model)"))
    return out
