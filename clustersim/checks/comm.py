"""Reference checks of MoE communication: ``hardware.dispatch`` against DeepEP's README tables,
CloudMatrix384's fused dispatch/combine, and ISCA'25's decode speed limit.

Rows marked ``fit`` in the reference files were used to fit ``hardware/data/comm_calibration.yaml``;
``validate`` rows were held out (``holdout`` here).
"""

from __future__ import annotations

from clustersim.checks.core import Check, Tolerance, load_reference, role_of, setting_text

__all__ = ["deepep_checks", "cm384_comm_checks", "isca_decode_limit_checks", "predict_deepep_normal",
           "predict_deepep_low_latency", "predict_cm384"]


def predict_deepep_normal(release: str, ep: int, op: str) -> float:
    """DeepEP normal kernels: bottleneck bandwidth (GB/s, as DeepEP's tests count it) on H800."""
    from hardware.catalog import get_cluster
    from hardware.dispatch import dispatch_combine_time

    s = load_reference("comm_deepep.yaml")["normal"]["setting"]
    nodes = max(1, ep // 8)
    cost = dispatch_combine_time(s["tokens_per_rank"], s["hidden"], s["topk"], ep, get_cluster("h800-mpft"),
                                 num_experts=s["num_experts"], groups=nodes, max_groups_per_token=min(nodes, 4),
                                 kernel="normal", release=release)
    return (cost.dispatch_reported_bytes_per_s if op == "dispatch" else cost.combine_reported_bytes_per_s) / 1e9


def predict_deepep_low_latency(ep: int, op: str) -> tuple[float, float]:
    """DeepEP low-latency kernels on H800: (latency in us, reported bandwidth in GB/s)."""
    from hardware.catalog import get_cluster
    from hardware.dispatch import dispatch_combine_time

    s = load_reference("comm_deepep.yaml")["low_latency"]["setting"]
    cost = dispatch_combine_time(s["tokens_per_rank"], s["hidden"], s["topk"], ep, get_cluster("h800-mpft"),
                                 num_experts=s["num_experts"], kernel="low_latency", release=s["release"])
    if op == "dispatch":
        return cost.dispatch_s * 1e6, cost.dispatch_reported_bytes_per_s / 1e9
    return cost.combine_s * 1e6, cost.combine_reported_bytes_per_s / 1e9


def predict_cm384(ep: int, op: str) -> tuple[float, float, str]:
    """CloudMatrix384 FusedDispatch/FusedCombine: (latency in us, reported GB/s, cost source)."""
    from hardware.catalog import get_cluster
    from hardware.dispatch import dispatch_combine_time

    s = load_reference("comm_cm384.yaml")["setting"]
    cost = dispatch_combine_time(s["tokens_per_rank"], s["hidden"], s["topk"], ep, get_cluster("cloudmatrix384"),
                                 num_experts=s["num_experts"], dispatch_dtype=s["dispatch"],
                                 combine_dtype=s["combine"], kernel="low_latency")
    if op == "dispatch":
        return cost.dispatch_s * 1e6, cost.dispatch_reported_bytes_per_s / 1e9, cost.source
    return cost.combine_s * 1e6, cost.combine_reported_bytes_per_s / 1e9, cost.source


def deepep_checks() -> list[Check]:
    """Every row of ``comm_deepep.yaml``: normal-kernel bandwidth, low-latency latency and bandwidth."""
    ref = load_reference("comm_deepep.yaml")
    out = []
    n = ref["normal"]
    for release, ep, op, value, role in n["rows"]:
        out.append(Check(family="comm.deepep", id=f"{n['id']}/{release}/ep{ep}/{op}", source=ref["source"],
                         setting=setting_text({**n["setting"], "release": release, "ep": ep}), quantity=f"{op} bandwidth",
                         unit="GB/s", published=float(value), predicted=predict_deepep_normal(release, ep, op),
                         tolerance=Tolerance.parse(n["tolerance"]), role=role_of(role), source_status=n["status"]))
    ll = ref["low_latency"]
    for part, index, unit in (("low_latency", 0, "us"), ("low_latency_bandwidth", 1, "GB/s")):
        sec = ref[part]
        for ep, op, value, role in sec["rows"]:
            quantity = f"{op} latency" if index == 0 else f"{op} bandwidth"
            out.append(Check(family="comm.deepep", id=f"{sec['id']}/ep{ep}/{op}/{'latency' if index == 0 else 'bw'}",
                             source=ref["source"], setting=setting_text({**ll["setting"], "ep": ep}), quantity=quantity,
                             unit=unit, published=float(value), predicted=predict_deepep_low_latency(ep, op)[index],
                             tolerance=Tolerance.parse(sec["tolerance"]), role=role_of(role),
                             source_status=sec["status"]))
    return out


def cm384_comm_checks() -> list[Check]:
    """Every row of ``comm_cm384.yaml``: fused dispatch/combine latency and reported bandwidth."""
    ref = load_reference("comm_cm384.yaml")
    out = []
    for part, rows, tol, index, unit in (("latency", ref["rows"], ref["tolerance"], 0, "us"),
                                         ("bandwidth", ref["bandwidth"]["rows"], ref["bandwidth"]["tolerance"], 1, "GB/s")):
        for ep, op, value, role in rows:
            pred = predict_cm384(ep, op)
            out.append(Check(family="comm.cm384", id=f"{ref['id']}/ep{ep}/{op}/{part}", source=ref["source"],
                             setting=setting_text({**ref["setting"], "ep": ep}), quantity=f"{op} {part}", unit=unit,
                             published=float(value), predicted=pred[index], tolerance=Tolerance.parse(tol),
                             role=role_of(role), source_status=ref["status"], extra={"cost_source": pred[2]}))
    return out


def isca_decode_limit_checks() -> list[Check]:
    """ISCA'25's decode speed limit from EP communication, with the paper's own inputs."""
    from hardware.dispatch import ep_decode_speed_limit

    ref = load_reference("comm_isca_decode_limit.yaml")
    inp = ref["inputs"]
    common = dict(layers=inp["layers"], tokens_per_device=inp["tokens_per_device"],
                  experts_per_token=inp["experts_per_token"], dispatch_bytes=inp["dispatch_bytes"],
                  combine_bytes=inp["combine_bytes"], micro_batches=inp["micro_batches"])
    ib = ep_decode_speed_limit(inp["hidden_paper"], bandwidth=inp["ib_bandwidth_bytes_per_s"], **common)
    nvl = ep_decode_speed_limit(inp["hidden_paper"], bandwidth=inp["nvl72_bandwidth_bytes_per_s"], **common)
    true = ep_decode_speed_limit(inp["hidden_true"], bandwidth=inp["ib_bandwidth_bytes_per_s"], **common)
    got = {
        "isca.decode_limit.ib.comm_per_ep_step": ib.comm_per_ep_step_s * 1e6,
        "isca.decode_limit.ib.per_layer": ib.per_layer_s * 1e6,
        "isca.decode_limit.ib.tpot": ib.tpot_s * 1e3,
        "isca.decode_limit.ib.tps": ib.tokens_per_s,
        "isca.decode_limit.nvl72.comm_per_ep_step": nvl.comm_per_ep_step_s * 1e6,
        "isca.decode_limit.nvl72.tpot": nvl.tpot_s * 1e3,
        "isca.decode_limit.nvl72.tps": nvl.tokens_per_s,
        "isca.decode_limit.ib.comm_per_ep_step_hidden7168": true.comm_per_ep_step_s * 1e6,
    }
    setting = setting_text({k: v for k, v in inp.items() if not k.endswith("bytes_per_s")})
    return [Check(family="comm.isca_decode_limit", id=t["id"], source=ref["source"],
                  setting=setting + (", hidden=7168" if t["id"].endswith("hidden7168") else ""),
                  quantity=t["id"].split(".", 2)[2], unit=t["unit"], published=float(t["value"]),
                  predicted=got.get(t["id"]), tolerance=Tolerance(rel=float(t["rel"])), source_status=t["status"])
            for t in ref["targets"]]
