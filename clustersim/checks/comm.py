"""Reference checks of communication: NCCL collectives against published nccl-tests figures,
``hardware.dispatch`` against DeepEP's README tables and CloudMatrix384's fused dispatch/combine,
and ISCA'25's decode speed limit.

Every row of ``comm_nccl.yaml``, ``comm_deepep.yaml`` and ``comm_cm384.yaml`` is marked ``fit``
(used by ``hardware.comm_fit`` to fit a parameter of ``hardware/data/comm_calibration.yaml``) or
``holdout`` (never seen by a fit); the rows are read and predicted by ``hardware.comm_fit``, the
one home of that prediction, so what ``clustersim check`` judges is what the fit minimises. A row
the model misses carries the mechanism it lacks (``known_deviations`` of comm_nccl.yaml).
"""

from __future__ import annotations

from functools import lru_cache

from clustersim.checks.core import Check, Tolerance, load_reference, reference_dir, role_of, setting_text

__all__ = ["nccl_checks", "deepep_checks", "cm384_comm_checks", "isca_decode_limit_checks", "comm_points"]

#: check family -> the ``hardware.comm_fit`` families of its rows
_COMM_FAMILIES = {"comm.nccl": ("nccl",), "comm.deepep": ("deepep_normal", "deepep_ll", "deepep_ll_bw", "deepep_ll_h20"),
                  "comm.cm384": ("cm384", "cm384_bw")}
_QUANTITY = {"deepep_normal": "bandwidth", "deepep_ll": "latency", "deepep_ll_h20": "latency", "deepep_ll_bw": "bandwidth", "cm384": "latency",
             "cm384_bw": "bandwidth"}
_UNITS = {"busbw_GBps": "GB/s (busbw)", "time_us": "us"}


@lru_cache(maxsize=1)
def comm_points() -> tuple:
    """Every published communication row (``hardware.comm_fit.RefPoint``) of the reference folder."""
    from hardware.comm_fit import load_points

    return tuple(load_points(reference_dir()))


def _source(p) -> str:
    if p.family != "nccl":
        return p.source
    src = load_reference("comm_nccl.yaml")["sources"][p.source]
    return f"{p.source}: {src['title']} ({src['url']})"


def _quantity(p) -> str:
    if p.family == "nccl":
        what = "time" if p.unit == "time_us" else "bus bandwidth"
        return f"{p.args['op']} {what}"
    return f"{p.args['op']} {_QUANTITY[p.family]}"


def _setting(p) -> dict:
    if p.family == "nccl":
        return {k: p.args[k] for k in ("cluster", "op", "ranks", "size_MiB", "algorithm")}
    keys = ("tokens_per_rank", "hidden", "topk", "num_experts", "dispatch", "combine", "release", "ep")
    return {k: p.args[k] for k in keys if k in p.args}


def _extra(p, cost) -> dict:
    if p.family == "nccl":
        from hardware.catalog import get_cluster

        return {"cost_source": cost.source, "algorithm": cost.algorithm, "protocol": cost.protocol,
                "cluster": p.args["cluster"], "device": get_cluster(p.args["cluster"]).device.name,
                "size_MiB": p.args["size_MiB"], "series": p.series}
    return {"cost_source": cost.source, "series": p.series}


def _comm_checks(family: str) -> list[Check]:
    from hardware.collectives import load_comm_calibration
    from hardware.comm_fit import cost_of, value_of

    calib = load_comm_calibration()
    out = []
    for p in comm_points():
        if p.family not in _COMM_FAMILIES[family]:
            continue
        cost = cost_of(p, calib)
        out.append(Check(family=family, id=p.label, source=_source(p), setting=setting_text(_setting(p)),
                         quantity=_quantity(p), unit=_UNITS.get(p.unit, p.unit), published=p.value,
                         predicted=value_of(p, cost), tolerance=Tolerance(rel=p.rel_tol), role=role_of(p.role),
                         source_status=p.status, known_gap=p.known_deviation,
                         gap_bound=Tolerance(rel=p.deviation_bound_rel) if p.deviation_bound_rel else None,
                         extra=_extra(p, cost)))
    return out


def nccl_checks() -> list[Check]:
    """Every row of ``comm_nccl.yaml``: NCCL bus bandwidth or time (``hardware.collectives``)."""
    return _comm_checks("comm.nccl")


def deepep_checks() -> list[Check]:
    """Every row of ``comm_deepep.yaml``: normal-kernel bandwidth, low-latency latency and bandwidth."""
    return _comm_checks("comm.deepep")


def cm384_comm_checks() -> list[Check]:
    """Every row of ``comm_cm384.yaml``: fused dispatch/combine latency and reported bandwidth."""
    return _comm_checks("comm.cm384")


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
