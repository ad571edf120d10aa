"""aiconfigurator's layouts in our planner and simulator (helper of ``vs_aiconfigurator.py``).

aiconfigurator (NVIDIA, TRT-LLM backend) names a layout by worker parallelism strings such as
``tp1pp1dp16etp1ep16`` (attention TP x PP x attention DP GPUs per worker; MoE TP x EP over the
same GPUs) and worker counts. This module turns such an answer into our ``planner.space.ServingLayout``
and prices it three ways with the product's own functions:

* **analytic**: ``planner.analytic.Evaluator.evaluate_layout``, the planner's capacity under
  the plan's SLOs (p90 TTFT and TPOT) at the best decode batch the SLO allows;
* **verified**: ``planner.verify.verify_task``, that claim checked in the simulator (the
  planner's verification of its own candidates);
* **at their rate**: one simulation at the request rate aiconfigurator claims for the layout,
  reporting our p90 and mean TTFT/TPOT there (their TPOT is a mean over the output).

The layout is evaluated as aiconfigurator runs it (no MTP, one micro-batch, 4,096 prefill
tokens per attention-DP rank: their prefill batch of one 4,000-token prompt per rank), and then
with one mechanism changed at a time (``VARIANTS``) to attribute the gap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "examples" / "plan_deepseek-v3_h200x32.yaml"
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

__all__ = ["OUR_LADDER", "PLAN", "VARIANTS", "aic_layout", "applies", "evaluate_layout", "our_ladder", "parse_parallel",
           "simulate_at"]

_PARALLEL = re.compile(r"^tp(\d+)pp(\d+)dp(\d+)etp(\d+)ep(\d+)$")
#: decode/colocated batch limit per attention-DP rank given to a layout taken from aiconfigurator
#: (our search's largest value; the SLO, not this limit, sets the operating batch)
BATCH_PER_RANK = 256
#: prefill tokens per attention-DP rank and iteration: aiconfigurator's prefill batch is one
#: 4,000-token prompt per rank (``prefill_max_batch_size: 1``)
TOKENS_PER_RANK = 4096

#: one mechanism changed at a time: (name, plan overrides, pool-choice changes by role). The
#: ``ll_pure_rdma`` change prices DeepEP's low-latency (decode) dispatch/combine as the 2025-02
#: release did (pure RDMA, every copy through the NIC even inside the node) instead of the
#: default 2025-05 release (NVLink for peers in the node, ``hardware.dispatch``).
VARIANTS: tuple[tuple[str, tuple[str, ...], dict], ...] = (
    ("as aiconfigurator runs it", (), {}),
    ("+ MTP 1 (acceptance 0.85) in decode", (), {"decode": {"mtp_depth": 1}, "pool": {"mtp_depth": 1}}),
    ("+ two micro-batches (overlap)", (), {"prefill": {"micro_batches": 2}, "decode": {"micro_batches": 2},
                                          "pool": {"micro_batches": 2}}),
    ("+ FP8 KV cache", ("kv_dtype=fp8",), {}),
    ("+ SLO at the median, not p90", ("slo.percentile=50",), {}),
    ("+ busiest EP rank 1.8x the mean (their power-law routing)", ("search.moe_imbalance=1.8",), {}),
    ("+ decode all-to-all pure RDMA (DeepEP 2025-02; ours: NVLink in the node)", (), {"ll_pure_rdma": True}),
    ("+ 512-token prefill chunks per rank (colocated)", (), {"pool": {"tokens_per_rank": 512}}),
)


def applies(layout_roles: set, overrides: tuple, changes: dict) -> bool:
    """Whether a ``VARIANTS`` entry changes anything in a layout with these pool roles."""
    return bool(overrides) or changes.get("ll_pure_rdma", False) or bool(layout_roles & set(changes))


@contextlib.contextmanager
def _dispatch_pure_rdma(on: bool):
    """Temporarily price low-latency dispatch/combine as DeepEP 2025-02 did (pure RDMA)."""
    from hardware import dispatch

    if not on:
        yield
        return
    original = dispatch.dispatch_combine_time

    def pure_rdma(*args, **kw):
        if kw.get("kernel") == "low_latency" and not kw.get("release"):
            kw["release"] = "2025-02"
        return original(*args, **kw)

    dispatch.dispatch_combine_time = pure_rdma
    try:
        yield
    finally:
        dispatch.dispatch_combine_time = original


def parse_parallel(text: str) -> dict:
    """``tp1pp1dp16etp1ep16`` -> {tp, pp, dp, etp, ep}; ValueError on anything else."""
    m = _PARALLEL.match(text.strip())
    if not m:
        raise ValueError(f"not an aiconfigurator parallel string: {text!r} (expected e.g. tp1pp1dp8etp1ep8)")
    tp, pp, dp, etp, ep = (int(g) for g in m.groups())
    if tp * dp != etp * ep:
        raise ValueError(f"{text}: attention tp x dp = {tp * dp} GPUs but moe etp x ep = {etp * ep}")
    return {"tp": tp, "pp": pp, "dp": dp, "etp": etp, "ep": ep}


def _choice(role: str, parallel: str, **changes):
    """The ``PoolChoice`` of one aiconfigurator pool; ``changes[role]``: its fields or its
    ``Layout``'s (``micro_batches``) to change (``VARIANTS``)."""
    from planner.space import PoolChoice
    from workloads.layout import Layout

    p = parse_parallel(parallel)
    change = dict(changes.get(role, {}))
    layout_change = {k: change.pop(k) for k in list(change) if k in Layout.__dataclass_fields__}
    lay = Layout(tp=p["tp"], dp=p["dp"], ep=p["ep"], moe_tp=p["etp"], pp=p["pp"])
    c = PoolChoice(role=role, layout=dataclasses.replace(lay, **layout_change), mtp_depth=0,
                   batch_per_rank=1 if role == "prefill" else BATCH_PER_RANK,
                   tokens_per_rank=1 if role == "decode" else TOKENS_PER_RANK)
    return dataclasses.replace(c, **change)


def aic_layout(answer: dict, changes: dict | None = None):
    """Our ``planner.space.ServingLayout`` of an aiconfigurator answer (``vs_aiconfigurator.parse_aic_tables`` row):
    ``mode`` agg (``parallel``, ``replicas``) or disagg (``p_parallel``, ``p_workers``,
    ``d_parallel``, ``d_workers``); ``changes``: PoolChoice fields by role (``VARIANTS``)."""
    from planner.space import ServingLayout

    changes = changes or {}
    if answer["mode"] == "agg":
        return ServingLayout("colocated", ((_choice("pool", answer["parallel"], **changes), int(answer["replicas"])),))
    pre = _choice("prefill", answer["p_parallel"], **changes)
    dec = _choice("decode", answer["d_parallel"], **changes)
    return ServingLayout("disaggregated", ((pre, int(answer["p_workers"])), (dec, int(answer["d_workers"]))))


def _steady(requests, lifetime_s: float, percentile: float) -> dict:
    """p-th percentile and mean TTFT/TPOT (ms) over the steady window of ``planner.verify.steady_slo``."""
    import numpy as np

    arr = requests["arrival_s"].to_numpy()
    sel = (arr >= arr.min() + 2.0 * lifetime_s) & (arr <= arr.max() - lifetime_s)
    if sel.sum() < 50:
        sel = np.ones(arr.size, dtype=bool)
    ttft = requests["ttft_s"].to_numpy()[sel] * 1e3
    tpot = requests["tpot_s"].to_numpy()[sel] * 1e3
    tpot = tpot[~np.isnan(tpot)]
    return {"ttft_p_ms": float(np.percentile(ttft, percentile)), "ttft_mean_ms": float(ttft.mean()),
            "tpot_p_ms": float(np.percentile(tpot, percentile)), "tpot_mean_ms": float(tpot.mean()),
            "requests_measured": int(sel.sum())}


def simulate_at(cfg, ctx, layout, rate_per_s: float, lifetime_s: float, evaluator=None, seed: int = 0) -> dict:
    """One simulation of ``layout`` at ``rate_per_s`` (4 request lifetimes of arrivals, the
    planner's own step costs and KV capacities), steady-window percentiles and means."""
    from planner.verify import (
        MAX_VERIFY_REQUESTS,
        RUN_LIFETIMES,
        layout_deployment,
        simulation_hooks,
    )
    from simulator.engine import simulate

    n = int(min(MAX_VERIFY_REQUESTS, max(cfg.verify.num_requests, math.ceil(rate_per_s * RUN_LIFETIMES * lifetime_s))))
    dep = layout_deployment(cfg, ctx, layout, rate_per_s, name=f"{cfg.name}-at-aic-rate", seed=seed, num_requests=n)
    step_cost, kv = simulation_hooks(ctx, layout, evaluator)
    res = simulate(dep, step_cost=step_cost, kv_capacity_tokens=kv)
    out = _steady(res.requests, lifetime_s, cfg.slo.percentile)
    out.update(rate_per_s=rate_per_s, requests=n, met=out["ttft_p_ms"] <= cfg.slo.ttft_ms
               and out["tpot_p_ms"] <= cfg.slo.tpot_ms)
    return out


def evaluate_layout(answer: dict, overrides: tuple[str, ...] = (), changes: dict | None = None,
                    verify: bool = True, at_rate: bool = True, seed: int = 0) -> dict:
    """Our figures for aiconfigurator's ``answer`` layout under the plan (with ``overrides``):
    the analytic row, the simulator-verified capacity and, with ``at_rate``, one run at the
    rate aiconfigurator claims (``answer['request_rate']``)."""
    import planner
    from planner.analytic import Evaluator
    from planner.space import context_from_plan

    changes = dict(changes or {})
    with _dispatch_pure_rdma(changes.pop("ll_pure_rdma", False)):
        cfg = planner.load_plan(PLAN, list(overrides))
        ctx = context_from_plan(cfg)
        return _evaluate(cfg, ctx, Evaluator(ctx), answer, aic_layout(answer, changes), verify, at_rate, seed)


def _evaluate(cfg, ctx, ev, answer: dict, layout, verify: bool, at_rate: bool, seed: int) -> dict:
    """``evaluate_layout`` once the plan, context and evaluator are built."""
    from planner.verify import verify_task

    row = ev.evaluate_layout(layout)
    out = {"layout": row["layout"], "devices": layout.devices, "feasible": bool(row["feasible"]),
           "reason": row.get("reason", "")}
    if not row["feasible"]:
        return out
    O = ctx.output_tokens
    out.update(capacity_rps=row["capacity_rps"], tokens_per_s_per_gpu=row["tokens_per_s_per_device"],
               tokens_per_s_per_user=row["tokens_per_s_per_user"], ttft_ms=row["ttft_ms"], tpot_ms=row["tpot_ms"],
               decode_batch_per_rank=row["decode_batch_per_rank"])
    if verify:
        v = verify_task(cfg, ctx, layout, 0, row, seed, evaluator=ev)
        out.update(verified=v["status"], verify_reason=v.get("reason", ""),
                   sim_capacity_rps=v.get("sim_capacity_rps", math.nan))
        out["sim_tokens_per_s_per_gpu"] = out["sim_capacity_rps"] * O / layout.devices
    if at_rate and answer.get("request_rate"):
        rate = float(answer["request_rate"])
        lifetime = (float(answer["ttft_ms"]) + O * float(answer["tpot_ms"])) / 1e3
        out["at_aic_rate"] = simulate_at(cfg, ctx, layout, rate, lifetime, ev, seed)
    return out


#: our planner's search with aiconfigurator's assumptions, cumulatively: (label, plan overrides,
#: decode all-to-all pure RDMA); the last row changes only the decode all-to-all pricing of our defaults
OUR_LADDER: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("our defaults", (), False),
    ("- MTP (theirs: off unless asked)", ("search.mtp=[false]",), False),
    ("+ busiest EP rank 1.8x the mean (their power-law routing)", ("search.mtp=[false]", "search.moe_imbalance=1.8"), False),
    ("+ FP8 KV cache (theirs)", ("search.mtp=[false]", "search.moe_imbalance=1.8", "kv_dtype=fp8"), False),
    ("our defaults, decode all-to-all pure RDMA (DeepEP 2025-02)", (), True),
)


def our_ladder(workers: int = 2) -> list[dict]:
    """``OUR_LADDER``: ``planner.plan`` of the question at each step; its best verified layout."""
    import planner
    from planner.executors import LocalExecutor

    out = []
    for label, overrides, pure_rdma in OUR_LADDER:
        with _dispatch_pure_rdma(pure_rdma):
            res = planner.plan(planner.load_plan(PLAN, list(overrides)), executor=LocalExecutor(workers, progress=False))
        t = res.table
        best = t[t["verified"] == "yes"].head(1)
        row = {"step": label, "overrides": list(overrides), "status": res.status}
        if len(best):
            b = best.iloc[0]
            row.update(layout=b["layout"], gpus=int(b["devices"]), tokens_per_s_per_gpu=float(b["sim_tokens_per_s_per_device"]),
                       tokens_per_s_per_user=float(b["tokens_per_s_per_user"]), ttft_ms=float(b["ttft_ms"]),
                       tpot_ms=float(b["tpot_ms"]), request_rate=float(b["sim_capacity_rps"]))
        out.append(row)
        print(f"  our ladder, {label}: {row.get('tokens_per_s_per_gpu', float('nan')):.1f} tok/s/GPU",
              file=sys.stderr, flush=True)
    return out

