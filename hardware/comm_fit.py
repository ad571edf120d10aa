"""Fit and hold-out evaluation of the communication parameters against published figures.

The published rows live in ``clustersim/data/reference/comm_nccl.yaml``, ``comm_deepep.yaml`` and
``comm_cm384.yaml``; every row is marked ``fit`` or ``holdout``. This module

* reads them into :class:`RefPoint` (``load_points(reference_dir)``),
* predicts each with the models of ``hardware.collectives`` / ``hardware.dispatch``
  (``predict(point, calibration)``; ``cost_of`` gives the cost object behind it) -- the one
  prediction of these rows, which ``clustersim check`` (families ``comm.nccl``, ``comm.deepep``,
  ``comm.cm384``) judges at each row's tolerance, fit and hold-out apart,
* fits every fitted parameter of ``hardware/data/comm_calibration.yaml`` on the ``fit`` rows
  only (``fit_parameters``): least squares of the log error, Nelder-Mead from the parameter's
  documented ``fit_start``, deterministic. ``tests/test_comm_fit.py`` re-runs the fit and checks that
  the stored values are what the fit rows give, so no stored value can have seen a hold-out row,
* and reports the error of every row, fit and hold-out apart (``evaluate``).

    python -m hardware.comm_fit clustersim/data/reference   # print the fitted values and the errors
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml
from scipy.optimize import minimize

from hardware.catalog import get_cluster
from hardware.collectives import CollectiveCost, CommCalibration, collective_time, load_comm_calibration
from hardware.dispatch import DispatchCost, dispatch_combine_time

__all__ = ["RefPoint", "FITS", "load_points", "cost_of", "value_of", "predict", "fit_parameters", "evaluate"]

MIB = 2**20


@dataclass(frozen=True)
class RefPoint:
    """One published figure: its family (which model predicts it), label (``clustersim check``'s
    id of the row), value, unit, role (fit / holdout), relative tolerance, status and the
    arguments of the prediction; ``series``: the table it belongs to, ``source``: its source key
    (comm_nccl.yaml's ``sources``) or citation. ``known_deviation``: the mechanism the model
    lacks, for a row it misses (else ""); ``deviation_bound_rel``: beyond this |error| the row
    fails even so (None: no bound)."""

    family: str
    label: str
    value: float
    unit: str
    role: str
    rel_tol: float
    status: str
    args: Mapping[str, Any] = field(default_factory=dict)
    known_deviation: str = ""
    series: str = ""
    source: str = ""
    deviation_bound_rel: float | None = None


# ----------------------------------------------------------------------------- loading

_MATCH_SKIP = ("series", "mechanism", "max_size_MiB", "bound")


def _deviation(series: str, args: Mapping[str, Any], known: Sequence[Mapping[str, Any]]) -> tuple[str, float | None]:
    """(mechanism, bound) of the first ``known_deviations`` entry matching a row (("", None) if none)."""
    for k in known:
        if k["series"] != series:
            continue
        if any(args.get(key) != want for key, want in k.items() if key not in _MATCH_SKIP):
            continue
        if "max_size_MiB" in k and args["size_MiB"] > k["max_size_MiB"]:
            continue
        bound = k.get("bound")
        return " ".join(k["mechanism"].split()), (float(bound["rel"]) if bound else None)
    return "", None


def _nccl_points(doc: Mapping[str, Any]) -> list[RefPoint]:
    out = []
    known = doc.get("known_deviations") or []
    for s in doc["series"]:
        base = {k: s[k] for k in ("cluster", "op", "ranks", "size_MiB", "algorithm") if k in s}
        base.setdefault("algorithm", "auto")
        for row in s["points"]:
            a = dict(base)
            if "ranks" in s and "size_MiB" not in s:  # per-size table: [MiB, value, role]
                a["size_MiB"], value, role = row
            elif "size_MiB" in s and "op" in s:  # GPU-count sweep: [ranks, value, role]
                a["ranks"], value, role = row
            elif len(row) == 4:  # [op, value, role, algorithm]
                a["op"], value, role, a["algorithm"] = row
            else:  # [cluster, op, algorithm, value, role]
                a["cluster"], a["op"], a["algorithm"], value, role = row
            label = f"{s['id']}/{a['cluster']}/{a['op']}/{a['algorithm']}/p{a['ranks']}/{a['size_MiB']}MiB"
            mechanism, bound = _deviation(s["id"], a, known)
            out.append(RefPoint("nccl", label, float(value), s["unit"], role, s["tolerance"]["rel"], s["status"], a,
                                mechanism, s["id"], s["source"], bound))
    return out


def _role_of_latency_row(roles: Mapping[tuple, str], ep: int, op: str, role: str, where: str) -> str:
    """A bandwidth row is its latency row's measurement in another unit: it must share that role."""
    if roles[(ep, op)] != role:
        raise ValueError(f"{where}: ep {ep} {op}: role {role!r} differs from the latency row's {roles[(ep, op)]!r}")
    return role


def _deepep_points(doc: Mapping[str, Any]) -> list[RefPoint]:
    out, src = [], doc["source"]
    normal = doc["normal"]
    for release, ep, op, value, role in normal["rows"]:
        out.append(RefPoint("deepep_normal", f"{normal['id']}/{release}/ep{ep}/{op}", float(value), "GB/s", role,
                            normal["tolerance"]["rel"], normal["status"],
                            {**normal["setting"], "release": release, "ep": ep, "op": op},
                            series=normal["id"], source=src))
    ll = doc["low_latency"]
    roles = {}
    for ep, op, value, role in ll["rows"]:
        roles[(ep, op)] = role
        out.append(RefPoint("deepep_ll", f"{ll['id']}/ep{ep}/{op}/latency", float(value), "us", role,
                            ll["tolerance"]["rel"], ll["status"], {**ll["setting"], "ep": ep, "op": op},
                            series=ll["id"], source=src))
    bw = doc["low_latency_bandwidth"]
    for ep, op, value, role in bw["rows"]:
        role = _role_of_latency_row(roles, ep, op, role, "comm_deepep.yaml low_latency_bandwidth")
        out.append(RefPoint("deepep_ll_bw", f"{bw['id']}/ep{ep}/{op}/bw", float(value), "GB/s", role,
                            bw["tolerance"]["rel"], bw["status"], {**ll["setting"], "ep": ep, "op": op},
                            series=bw["id"], source=src))
    h20 = doc["low_latency_h20"]
    for release, ep, op, value, role in h20["rows"]:
        experts = h20["setting"]["num_experts"] if h20["setting"]["num_experts"] % ep == 0 else 256
        out.append(RefPoint("deepep_ll_h20", f"{h20['id']}/{release}/ep{ep}/{op}/latency", float(value), "us", role,
                            h20["tolerance"]["rel"], h20["status"],
                            {**h20["setting"], "num_experts": experts, "release": release, "ep": ep, "op": op},
                            series=h20["id"], source=h20["source"]))
    return out


def _cm384_points(doc: Mapping[str, Any]) -> list[RefPoint]:
    out, roles = [], {}
    for ep, op, value, role in doc["rows"]:
        roles[(ep, op)] = role
        out.append(RefPoint("cm384", f"{doc['id']}/ep{ep}/{op}/latency", float(value), "us", role,
                            doc["tolerance"]["rel"], doc["status"], {**doc["setting"], "ep": ep, "op": op},
                            series=doc["id"], source=doc["source"]))
    bw = doc["bandwidth"]
    for ep, op, value, role in bw["rows"]:
        role = _role_of_latency_row(roles, ep, op, role, "comm_cm384.yaml bandwidth")
        out.append(RefPoint("cm384_bw", f"{doc['id']}/ep{ep}/{op}/bandwidth", float(value), "GB/s", role,
                            bw["tolerance"]["rel"], doc["status"], {**doc["setting"], "ep": ep, "op": op},
                            series=doc["id"], source=doc["source"]))
    return out


def load_points(reference_dir: str | Path) -> list[RefPoint]:
    """Every published communication row of ``reference_dir`` (comm_nccl/deepep/cm384.yaml)."""
    d = Path(reference_dir)
    read = lambda name: yaml.safe_load((d / name).read_text(encoding="utf-8"))  # noqa: E731
    return _nccl_points(read("comm_nccl.yaml")) + _deepep_points(read("comm_deepep.yaml")) + \
        _cm384_points(read("comm_cm384.yaml"))


# ----------------------------------------------------------------------------- prediction


def _dispatch(a: Mapping[str, Any], calib: CommCalibration, cluster: str, kernel: str, **kw: Any):
    return dispatch_combine_time(a["tokens_per_rank"], a["hidden"], a["topk"], a["ep"], get_cluster(cluster),
                                 num_experts=a["num_experts"], dispatch_dtype=a["dispatch"],
                                 combine_dtype=a["combine"], kernel=kernel, calibration=calib, **kw)


def cost_of(point: RefPoint, calib: CommCalibration | None = None) -> CollectiveCost | DispatchCost:
    """The model's cost behind ``point``: the collective (nccl rows) or the dispatch/combine pair
    (DeepEP and CloudMatrix384 rows), with how it was obtained (algorithm, protocol, source)."""
    calib = calib or load_comm_calibration()
    a, fam = point.args, point.family
    if fam == "nccl":
        return collective_time(a["op"], a["size_MiB"] * MIB, a["ranks"], get_cluster(a["cluster"]),
                               algorithm=a["algorithm"], calibration=calib)
    if fam == "deepep_normal":
        nodes = max(1, a["ep"] // 8)
        return _dispatch(a, calib, "h800-mpft", "normal", groups=nodes, max_groups_per_token=min(nodes, 4),
                         release=a["release"])
    if fam in ("deepep_ll", "deepep_ll_bw"):
        return _dispatch(a, calib, "h800-mpft", "low_latency", release=a["release"])
    if fam == "deepep_ll_h20":
        return _dispatch(a, calib, a["cluster"], "low_latency", release=a["release"])
    if fam in ("cm384", "cm384_bw"):
        return _dispatch(a, calib, "cloudmatrix384", "low_latency")
    raise ValueError(f"unknown reference family {fam!r}")


def value_of(point: RefPoint, cost: CollectiveCost | DispatchCost) -> float:
    """The figure ``point`` publishes, read off the model's ``cost`` of it (``cost_of``), in the point's unit."""
    if point.family == "nccl":
        return cost.seconds * 1e6 if point.unit == "time_us" else cost.bus_bytes / cost.seconds / 1e9
    op = point.args["op"]
    if point.family == "deepep_normal" or point.family.endswith("_bw"):
        return (cost.dispatch_reported_bytes_per_s if op == "dispatch" else cost.combine_reported_bytes_per_s) / 1e9
    return (cost.dispatch_s if op == "dispatch" else cost.combine_s) * 1e6


def predict(point: RefPoint, calib: CommCalibration | None = None) -> float:
    """The model's value for ``point``, in the point's unit."""
    return value_of(point, cost_of(point, calib))


# ----------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class Fit:
    """Parameters fitted together on the fit rows that ``select`` picks."""

    params: tuple[str, ...]
    select: Callable[[RefPoint], bool]
    log_scale: bool = True  # search log(parameter): positive parameters spanning decades


FITS: tuple[Fit, ...] = (
    Fit(("nccl.all_to_all_bw_fraction",), lambda p: p.family == "nccl" and p.args["op"] == "all_to_all"),
    Fit(("nccl.hop_latency_s.nvlink.ll", "nccl.hop_latency_s.nvlink.ll128", "nccl.hop_latency_s.nvlink.simple",
         "nccl.nvls_latency_s"), lambda p: p.family == "nccl" and p.args["op"] != "all_to_all"),
    *(Fit((f"deepep_normal.{r}.nvlink_fraction_of_nominal", f"deepep_normal.{r}.rdma_fraction_of_nominal"),
          (lambda p, r=r: p.family == "deepep_normal" and p.args["release"] == r)) for r in ("2025-02", "2025-04")),
    Fit(("deepep_low_latency.2025-02.wire_fraction_of_nominal", "deepep_low_latency.2025-02.peer_doubling_slowdown"),
        lambda p: p.family == "deepep_ll"),
    Fit(("deepep_low_latency.2025-05.nvlink_per_copy_s", "deepep_low_latency.2025-05.nvlink_fraction_of_nominal"),
        lambda p: p.family == "deepep_ll_h20" and p.args["release"] == "2025-05"),
    Fit(("ub_fused.2025-06.per_copy_s", "ub_fused.2025-06.peer_doubling_slowdown"), lambda p: p.family == "cm384"),
)


def _objective(points: Sequence[RefPoint], calib: CommCalibration, names: Sequence[str], log_scale: bool):
    def f(x):
        vals = {n: (math.exp(v) if log_scale else v) for n, v in zip(names, x)}
        c = calib.with_values(vals)
        return sum(math.log(predict(p, c) / p.value) ** 2 for p in points)
    return f


def fit_parameters(points: Sequence[RefPoint], calib: CommCalibration | None = None) -> dict[str, float]:
    """Fitted value of every ``FITS`` parameter, each fit on its ``fit`` rows only (in order,
    each fit seeing the values of the previous ones)."""
    calib = calib or load_comm_calibration()
    out: dict[str, float] = {}
    for fit in FITS:
        rows = [p for p in points if p.role == "fit" and fit.select(p)]
        if not rows:
            raise ValueError(f"no fit rows for {', '.join(fit.params)}")
        missing = [n for n in fit.params if n not in calib.fit_start]
        if missing:
            raise ValueError(f"{calib.path}: {', '.join(missing)}: fitted parameters need fitted_on and fit_start")
        x0 = [calib.fit_start[n] for n in fit.params]
        x0 = [math.log(v) if fit.log_scale else v for v in x0]
        res = minimize(_objective(rows, calib, fit.params, fit.log_scale), x0, method="Nelder-Mead",
                       options={"xatol": 1e-9, "fatol": 1e-14, "maxiter": 4000})
        vals = {n: (math.exp(v) if fit.log_scale else float(v)) for n, v in zip(fit.params, res.x)}
        out.update(vals)
        calib = calib.with_values(vals)
    return out


def evaluate(points: Sequence[RefPoint], calib: CommCalibration | None = None) -> list[dict[str, Any]]:
    """Every row with its prediction and signed relative error (prediction / published - 1)."""
    calib = calib or load_comm_calibration()
    rows = []
    for p in points:
        pred = predict(p, calib)
        rows.append({"family": p.family, "label": p.label, "role": p.role, "status": p.status, "unit": p.unit,
                     "published": p.value, "predicted": pred, "error": pred / p.value - 1.0, "rel_tol": p.rel_tol,
                     "known_deviation": p.known_deviation})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    points = load_points(args[0] if args else "clustersim/data/reference")
    fitted = fit_parameters(points)
    for name, value in fitted.items():
        print(f"{name}: {value:.6g}")
    calib = load_comm_calibration().with_values(fitted)
    for r in evaluate(points, calib):
        flag = "" if abs(r["error"]) <= r["rel_tol"] else ("  known deviation" if r["known_deviation"] else "  OUTSIDE")
        print(f"{r['role']:8s} {r['label']:70s} {r['published']:10.4g} {r['predicted']:10.4g} {r['error']:+7.1%}{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
