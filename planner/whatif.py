"""What-if questions answered with the planner: capacity, one-parameter sweeps, hardware comparison.

Each function runs ``planner.plan`` on variants of one PlanConfig (analytic ranking only unless
``verify_top`` says otherwise) and returns a pandas DataFrame with one row per variant: the
variant's value and the best layout's metrics. Plots are separate (``planner.plot``), written
only when the facade asks.

* ``capacity(plan, ...)``: the fewest devices (and nodes) whose best layout serves the target
  load within the SLOs.
* ``sweep(plan, parameter, values, ...)``: ``load`` (arrival rate, req/s), ``bandwidth`` (every
  fabric tier x scale), ``hbm`` (HBM capacity x scale), ``device`` (a device or cluster name),
  ``tpot_ms`` / ``ttft_ms`` (SLO limits).
* ``compare_hardware(plan, ...)``: H800 multi-plane fat-tree, H200, GB200 NVL72 and
  CloudMatrix384 for the same model, workload and SLOs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Sequence

import pandas as pd
from pydantic import ValidationError

from planner.executors import Executor
from planner.merge import COUNT
from planner.schema import PlanConfig
from planner.search import plan as run_plan
from planner.space import context_from_plan
from simulator.progress import ProgressFn
from workloads.limits import MAX_RATE_PER_S, MAX_SLO_MS, MAX_WHATIF_SCALE, MIN_WHATIF_SCALE
from workloads.yamlloc import format_validation_error

__all__ = ["capacity", "sweep", "sweep_values", "compare_hardware", "SWEEP_PARAMETERS", "DEFAULT_HARDWARE"]

SWEEP_PARAMETERS = ("load", "bandwidth", "hbm", "device", "tpot_ms", "ttft_ms")
#: column of the swept value where the parameter's name is also a metric of the best layout
_COLUMN = {"device": "hardware", "tpot_ms": "slo_tpot_ms", "ttft_ms": "slo_ttft_ms"}
#: the side-by-side comparison of issue 6: H800 multi-plane, H200, GB200 NVL72, CloudMatrix384
DEFAULT_HARDWARE = ("h800-mpft", "h200", "gb200-nvl72", "cloudmatrix384")

_BEST_COLS = ("mode", "devices", "capacity_rps", "meets_load", "tokens_per_s_per_device", "tokens_per_s_per_user",
              "ttft_ms", "tpot_ms", "tokens_per_s_per_kusd", "hardware_usd")


def _update(cfg: PlanConfig, **changes: Any) -> PlanConfig:
    """A PlanConfig with nested changes given as dotted keys (``slo.tpot_ms=30``); revalidated
    (a ValueError of one line naming the field when a change breaks a rule)."""
    data = cfg.model_dump(mode="python")
    for key, value in changes.items():
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    try:
        return PlanConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, "what-if", {}, PlanConfig)) from None


def _best_row(result) -> dict:
    t = result.table
    # a merged row stands for ``equivalent_layouts`` layouts (``planner.merge``)
    n = t[COUNT] if COUNT in t else 1
    out: dict = {"feasible_layouts": int((t["feasible"] * n).sum()) if len(t) else 0}
    feas = t.iloc[t["feasible"].to_numpy(dtype=bool).nonzero()[0]] if len(t) else t
    if len(feas):
        row = feas.iloc[0]
        out.update({c: row.get(c) for c in _BEST_COLS if c in row})
        layout = {c: row[c] for c in row.index if c.endswith(("_instances", "_devices_per_instance", "_attn_tp",
                                                               "_moe_ep", "_micro_batches", "_mtp_depth"))
                  and row[c] == row[c]}
        out["layout"] = ", ".join(f"{k}={int(v)}" for k, v in layout.items())
        if "decode_tokens_per_s_per_decode_device" in feas:
            dec = feas["decode_tokens_per_s_per_decode_device"].dropna()
            if len(dec):
                j = dec.idxmax()
                out["best_decode_tokens_per_s_per_device"] = float(dec.loc[j])
                out["best_decode_tpot_ms"] = float(feas.loc[j, "decode_tpot_ms_at_decode_capacity"])
                out["best_decode_batch_per_rank"] = float(feas.loc[j, "decode_batch_per_rank_at_decode_capacity"])
                out["best_decode_devices_per_instance"] = int(feas.loc[j, "decode_devices_per_instance"])
    else:
        out["reason"] = t["reason"].iloc[0] if len(t) else "empty search space"
    out["plan_wall_s"] = result.stats.get("wall_s")
    return out


def _device_dtype(cfg: PlanConfig, device) -> str:
    """The plan's weight dtype if the device computes in it, else int8, else bf16."""
    peaks = device.peak_flops_per_s
    for d in (cfg.weight_dtype, "int8", "bf16"):
        if d in peaks:
            return d
    return "bf16"


#: the open lower and closed upper end of each numeric sweep, and what the values are
_NUMERIC_SWEEPS = {"load": (0.0, MAX_RATE_PER_S, "arrival rates in req/s"),
                   "bandwidth": (0.0, MAX_WHATIF_SCALE, "bandwidth scales"),
                   "hbm": (0.0, MAX_WHATIF_SCALE, "HBM scales"),
                   "tpot_ms": (0.0, MAX_SLO_MS, "TPOT limits in ms"), "ttft_ms": (0.0, MAX_SLO_MS, "TTFT limits in ms")}


def sweep_values(parameter: str, values: Sequence[Any]) -> list:
    """The values of a sweep, checked: numbers finite and in (0, limit] for the numeric parameters
    (a ValueError naming ``--values`` and the parameter otherwise), names for ``device``."""
    values = list(values)
    if parameter not in _NUMERIC_SWEEPS:
        values = [str(v).strip() for v in values if str(v).strip()]
    if not values:
        raise ValueError(f"--values: give at least one value to sweep {parameter} over")
    if parameter not in _NUMERIC_SWEEPS:
        return values
    low, high, what = _NUMERIC_SWEEPS[parameter]
    out = []
    for v in values:
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = math.nan
        if not (low < x <= high) or (parameter in ("bandwidth", "hbm") and x < MIN_WHATIF_SCALE):  # NaN too
            bottom = f">= {MIN_WHATIF_SCALE:g}" if parameter in ("bandwidth", "hbm") else "> 0"
            raise ValueError(f"--values: {v!r} is not a valid {parameter} value ({what} must be finite numbers "
                             f"{bottom} and <= {high:g})")
        out.append(x)
    return out


def sweep(plan_config: PlanConfig, parameter: str, values: Sequence[Any], *, executor: Executor | None = None,
          verify_top: int = 0, progress: ProgressFn | None = None) -> pd.DataFrame:
    """Best layout per value of one parameter (see module docstring); one row per value.
    ``progress`` (``simulator.progress``) is told the values done (task ``what-if sweep``) and
    each variant's plan phases."""
    from hardware.catalog import lookup_hardware
    from hardware.types import Cluster

    if parameter not in SWEEP_PARAMETERS:
        raise ValueError(f"unknown what-if parameter {parameter!r} (valid: {', '.join(SWEEP_PARAMETERS)})")
    values = sweep_values(parameter, values)
    rows = []
    for i, v in enumerate(values):
        _report(progress, "what-if sweep", i, len(values), f"{parameter} = {v}")
        cfg, ctx = plan_config, None
        if parameter == "load":
            if plan_config.workload.arrival.kind == "trace":
                raise ValueError("a load sweep needs a poisson or gamma arrival, not a trace")
            cfg = _update(plan_config, **{"workload.arrival.rate_per_s": float(v)})
        elif parameter in ("tpot_ms", "ttft_ms"):
            cfg = _update(plan_config, **{f"slo.{parameter}": float(v)})
        elif parameter in ("bandwidth", "hbm"):
            base = context_from_plan(plan_config)
            field = "bandwidth_scale" if parameter == "bandwidth" else "hbm_scale"
            ctx = base.with_(cluster=dataclasses.replace(base.cluster, **{field: float(v)}))
        elif parameter == "device":
            hw = lookup_hardware(str(v))  # the catalog's one name rule: a cluster, or a device
            if isinstance(hw, Cluster):
                c = hw
                budget = min(plan_config.hardware.devices or c.num_devices, c.num_devices)
                cfg = _update(plan_config, hardware={"cluster": c.name, "device": None, "devices": budget},
                              weight_dtype=_device_dtype(plan_config, c.device))
            else:
                dev = hw
                budget = plan_config.hardware.devices or context_from_plan(plan_config).budget_devices
                cfg = _update(plan_config, hardware={"cluster": None, "device": dev.name, "devices": budget},
                              weight_dtype=_device_dtype(plan_config, dev))
        res = run_plan(cfg, executor=executor, verify_top=verify_top, context=ctx, progress=progress)
        rows.append({_COLUMN.get(parameter, parameter): v, "cluster": res.stats["cluster"], "device": res.stats["device"],
                     "budget_devices": res.stats["budget_devices"], "weight_dtype": cfg.weight_dtype,
                     **_best_row(res)})
    _report(progress, "what-if sweep", len(values), len(values), "")
    return pd.DataFrame(rows)


def _report(progress: ProgressFn | None, task: str, done: int, total: int, note: str) -> None:
    if callable(progress):
        progress(task, done, total, note)


def capacity(plan_config: PlanConfig, *, target_rate_per_s: float | None = None,
             device_counts: Iterable[int] | None = None, executor: Executor | None = None,
             progress: ProgressFn | None = None) -> pd.DataFrame:
    """Fewest devices whose best layout serves the target load within the SLOs.

    Budgets tried in increasing order (default: whole nodes 1, 2, 3, ... up to the cluster or
    the plan's budget, doubling past 16 nodes); stops at the first that serves the load. The
    returned DataFrame has one row per budget tried; ``df.attrs['fewest_devices']`` and
    ``df.attrs['fewest_nodes']`` hold the answer (None when even the largest budget falls short).
    """
    cfg = plan_config
    if target_rate_per_s is not None:
        cfg = _update(cfg, **{"workload.arrival.rate_per_s": float(target_rate_per_s)})
    ctx = context_from_plan(cfg)
    cluster = ctx.cluster.resolve()
    node = cluster.devices_per_node
    limit = cluster.num_devices if cfg.hardware.cluster is not None else ctx.budget_devices
    if device_counts is None:
        counts, n = [], 1
        while n * node <= limit:
            counts.append(n * node)
            n = n + 1 if n < 16 else n * 2
        device_counts = counts or [limit]
    rows, fewest = [], None
    budgets = sorted(set(int(x) for x in device_counts))
    for i, d in enumerate(budgets):  # the bar's total is every budget; the search stops at the first that serves
        _report(progress, "what-if capacity", i, len(budgets), f"{d} devices")
        hw = cfg.hardware.model_dump()
        hw["devices"] = d
        res = run_plan(_update(cfg, hardware=hw), executor=executor, verify_top=0, progress=progress)
        row = {"budget_devices": d, "budget_nodes": math.ceil(d / node), **_best_row(res)}
        rows.append(row)
        if row.get("meets_load"):
            fewest = row
            break
    _report(progress, "what-if capacity", len(budgets), len(budgets), "")
    df = pd.DataFrame(rows)
    df.attrs["fewest_devices"] = int(fewest["devices"]) if fewest else None
    df.attrs["fewest_nodes"] = math.ceil(int(fewest["devices"]) / node) if fewest else None
    df.attrs["target_rate_per_s"] = ctx.arrival_rate_per_s
    return df


def compare_hardware(plan_config: PlanConfig, hardware: Sequence[str] = DEFAULT_HARDWARE, *,
                     devices: int | None = None, executor: Executor | None = None,
                     progress: ProgressFn | None = None) -> pd.DataFrame:
    """The same model, workload and SLOs on each hardware (cluster or device names), side by side.

    ``devices``: the device budget on each (default: the plan's budget, capped by each cluster).
    The weight dtype falls back to INT8 (then BF16) where the device lacks the plan's (e.g.
    FP8 on Ascend 910C), as CloudMatrix-Infer serves DeepSeek-R1 in INT8.
    """
    cfg = plan_config
    if devices is not None:
        hw = cfg.hardware.model_dump()
        hw["devices"] = devices
        cfg = _update(cfg, hardware=hw)
    elif cfg.hardware.devices is None:
        hw = cfg.hardware.model_dump()
        hw["devices"] = context_from_plan(cfg).budget_devices
        cfg = _update(cfg, hardware=hw)
    return sweep(cfg, "device", list(hardware), executor=executor, progress=progress)
