"""Simulator verification of the planner's top layouts: each claim checked where it is made.

One ``verify_task`` per candidate; ``verify_batch`` runs several in one process (the local
pool or Ray runs one batch per worker, and all its runs share one warm step-cost cache):

1. **The emitted deployment.** The deployment ``best_deployment.yaml`` would hold (the
   target rate, the plan's request count) is rendered to YAML, loaded back through the
   deployment rules (``load_deployment_text``) and simulated. A layout whose YAML does not
   load, or whose run raises, fails: it is never emitted.
2. **The claimed capacity.** The rate behind the layout's tokens/s per device is simulated
   long enough for the decode batch to fill: ``requests >= rate x 4 request lifetimes``
   (lifetime = the estimated TTFT + output tokens x TPOT); the SLO percentiles are read over
   the steady part (arrivals from two lifetimes after the start to one before the last
   arrival), since the ramp-up and the drain both flatter a short run.
3. **The sustainable rate**, when the SLO fails at the claimed rate: 0.9x, 0.75x, 0.5x and
   0.25x the claim until one passes, then bisection until the passing and failing rates are
   within 5% of the claim. The verified capacity is the largest rate that passed (so the
   reported gap is at most ~5 points too large); ``failed`` when none did. Near capacity
   the p90 TTFT of one seeded run varies by about +-5% between seeds, which bounds how
   finely one run can place the capacity.

Every run of a point uses the same seed (``point_seed``): the rates are compared on common
random numbers.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from planner.space import PlanContext, ServingLayout

__all__ = ["layout_deployment", "simulation_hooks", "verify_task", "verify_batch", "engine_available", "steady_slo",
           "SEARCH_FACTORS", "MAX_VERIFY_REQUESTS"]

#: rates tried, as fractions of the claimed capacity, after the claim itself fails
SEARCH_FACTORS = (0.9, 0.75, 0.5, 0.25)
#: the search stops when the passing and failing rates are this close (fraction of the claim)
BRACKET = 0.05
#: request lifetimes a capacity run spans: two of ramp-up (near the KV limit the decode batch
#: fills slowly), one measured, one of drain
RUN_LIFETIMES = 4.0
WARMUP_LIFETIMES = 2.0
#: most requests one verification run simulates (bounds its time at very high rates)
MAX_VERIFY_REQUESTS = 20_000


def engine_available() -> bool:
    """Whether the simulator's engine (``simulator.engine.simulate``) can be imported."""
    try:
        from simulator.engine import simulate  # noqa: F401
    except ImportError:
        return False
    return True


def layout_deployment(cfg, ctx: PlanContext, layout: ServingLayout, rate_per_s: float | None = None, name: str | None = None,
                      seed: int | None = None, num_requests: int | None = None):
    """The Deployment of a layout (the plan's workload and SLOs; arrival rate ``rate_per_s``;
    ``num_requests`` replaces the workload's count or duration)."""
    from workloads.deployment import ColocatedServing, Deployment, DisaggregatedServing

    if layout.mode == "colocated":
        (c, n), = layout.pools
        serving = ColocatedServing(mode="colocated", pool=c.to_pool(n, ctx))
    else:
        (p, n_p), (d, n_d) = layout.pools
        serving = DisaggregatedServing(mode="disaggregated", prefill=p.to_pool(n_p, ctx), decode=d.to_pool(n_d, ctx))
    wl = cfg.workload
    if rate_per_s is not None and wl.arrival.kind != "trace":
        wl = wl.model_copy(update={"arrival": wl.arrival.model_copy(update={"rate_per_s": float(rate_per_s)})})
    if num_requests is not None and wl.arrival.kind != "trace":
        wl = wl.model_copy(update={"num_requests": int(num_requests), "duration_s": None})
    return Deployment(name=name or f"{cfg.name}-best", cluster=ctx.cluster.name, model=cfg.model,
                      weight_dtype=cfg.weight_dtype, kv_dtype=cfg.kv_dtype,
                      serving=serving, scheduler=cfg.scheduler, workload=wl, slo=cfg.slo,
                      seed=cfg.seed if seed is None else seed, profile=ctx.profile)


def simulation_hooks(ctx: PlanContext, layout: ServingLayout, evaluator=None) -> tuple[Any, dict]:
    """(step_cost, kv_capacity_tokens) that make ``simulator.simulate`` cost a layout exactly
    as the analytic ranking does (resolved cluster, equivalent EP, activation-aware KV).
    ``evaluator``: share one ``planner.analytic.Evaluator`` (and its step-cost caches) over
    several layouts."""
    from planner.analytic import Evaluator, engine_step_s
    from planner.feasibility import pool_fit

    ev = evaluator or Evaluator(ctx)
    names = {"pool": "colocated", "prefill": "prefill", "decode": "decode"}
    models: dict[str, tuple[Any, float]] = {}
    kv: dict[str, float] = {}
    for choice, _n in layout.pools:
        m = ev.pool_model(choice)
        models[names[choice.role]] = (m, m.dp / choice.layout.dp)
        fit = pool_fit(ctx, choice, ev.model, ev.cluster)
        kv[choice.role] = fit.kv_capacity_tokens * choice.layout.dp * choice.layout.sp

    def step_cost(role: str, shape) -> float:
        m, keep = models[role]
        return engine_step_s(m.inst, keep, shape)

    return step_cost, kv


def steady_slo(requests, slo, lifetime_s: float, warmup_lifetimes: float = WARMUP_LIFETIMES) -> dict:
    """TTFT and TPOT percentiles (ms) over the steady part of a run, and whether both meet
    the SLO: arrivals from ``warmup_lifetimes`` lifetimes after the first to one lifetime
    before the last (all requests when that window holds fewer than 50). ``requests``: the
    run's request table, a DataFrame or its columns (``SimResult.request_columns``: no DataFrame
    built, ~2-4 ms of a verification run)."""
    arr = np.asarray(requests["arrival_s"])
    lo, hi = arr.min() + warmup_lifetimes * lifetime_s, arr.max() - lifetime_s
    sel = (arr >= lo) & (arr <= hi)
    if sel.sum() < 50:
        sel = np.ones(arr.size, dtype=bool)
    q = slo.percentile
    ttft = float(np.percentile(np.asarray(requests["ttft_s"])[sel], q)) * 1e3
    tpots = np.asarray(requests["tpot_s"])[sel]
    tpots = tpots[~np.isnan(tpots)]
    tpot = float(np.percentile(tpots, q)) * 1e3 if tpots.size else 0.0
    return {"ttft_ms": ttft, "tpot_ms": tpot, "met": ttft <= slo.ttft_ms and tpot <= slo.tpot_ms,
            "measured": int(sel.sum())}


def _error(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _run(deployment, step_cost, kv, lifetime_s: float) -> dict:
    """One simulation; its steady SLO figures (or the error it raised)."""
    from simulator.engine import simulate

    try:
        res = simulate(deployment, step_cost=step_cost, kv_capacity_tokens=kv)
    except Exception as exc:  # a verification failure is a result to report, not a crash of the plan
        return {"error": _error(exc)}
    counts = res.summary.get("counts", {})
    if counts.get("finished") != counts.get("requests"):
        return {"error": f"{counts.get('requests', 0) - counts.get('finished', 0)} requests never finished"}
    cols = res.request_columns
    return steady_slo(res.requests if cols is None else cols, deployment.slo, lifetime_s)


def _label(rate: float, r: dict) -> str:
    if "error" in r:
        return f"{rate:.3g}/s: {r['error']}"
    return f"{rate:.3g}/s: TTFT {r['ttft_ms']:.0f} ms, TPOT {r['tpot_ms']:.1f} ms {'ok' if r['met'] else 'missed'}"


#: the parts a candidate's verification splits into (``verify_part``): the emitted deployment,
#: and the claimed capacity (with the search for the sustainable rate when it fails); a trace
#: workload replays one arrival sequence, so both are one run (``both``)
PARTS = ("emitted", "claim", "both")


def verify_batch(cfg, ctx: PlanContext, items: list[tuple]) -> list[dict]:
    """``verify_task`` over ``items`` of (layout, point id, analytic row, seed), in one process
    sharing one step-cost cache (candidates often share a pool)."""
    from planner.analytic import Evaluator

    ev = Evaluator(ctx)
    return [verify_task(cfg, ctx, *item, evaluator=ev) for item in items]


def verify_parts(cfg, ctx: PlanContext, items: list[tuple]) -> list[dict]:
    """``verify_part`` over ``items`` of (part, layout, point id, analytic row, seed), sharing
    one step-cost cache, which a pool worker process keeps for its next task
    (``planner.analytic.worker_evaluator``); the runs go with the collector as
    ``planner.executors.worker_heap`` leaves it (off, nothing frozen)."""
    from planner.analytic import worker_evaluator
    from planner.executors import worker_heap

    ev = worker_evaluator(ctx)
    with worker_heap():
        return [verify_part(cfg, ctx, *item, evaluator=ev) for item in items]


def verify_task(cfg, ctx: PlanContext, layout: ServingLayout, point_id: int, analytic: dict, seed: int,
                evaluator=None) -> dict:
    """Verify one candidate (module docstring); returns one row of ``PlanResult.verification``."""
    if cfg.workload.arrival.kind == "trace":
        return combine_parts(cfg, ctx, point_id, analytic,
                             verify_part(cfg, ctx, "both", layout, point_id, analytic, seed, evaluator))
    emitted = verify_part(cfg, ctx, "emitted", layout, point_id, analytic, seed, evaluator)
    claim = verify_part(cfg, ctx, "claim", layout, point_id, analytic, seed, evaluator) \
        if emitted.get("failed") is None else None
    return combine_parts(cfg, ctx, point_id, analytic, emitted, claim)


def claim_figures(analytic: dict, ctx: PlanContext) -> tuple[float, float, float, float]:
    """(claimed req/s, analytic TTFT s, TPOT s, request lifetime s) of an analytic row."""
    claimed = float(analytic.get("capacity_rps") or 0.0)
    ttft_s = float(analytic.get("ttft_ms") or 0.0) / 1e3
    tpot_s = float(analytic.get("tpot_ms") or 0.0) / 1e3
    return claimed, ttft_s, tpot_s, ttft_s + ctx.output_tokens * tpot_s


def part_requests(cfg, ctx: PlanContext, part: str, analytic: dict) -> float:
    """Requests the part's first run simulates (what a part costs, roughly)."""
    claimed, _t, _p, lifetime = claim_figures(analytic, ctx)
    if part == "emitted" or not (math.isfinite(lifetime) and math.isfinite(claimed)):
        return float(cfg.verify.num_requests)
    return float(min(MAX_VERIFY_REQUESTS, max(cfg.verify.num_requests, math.ceil(claimed * RUN_LIFETIMES * lifetime))))


def verify_part(cfg, ctx: PlanContext, part: str, layout: ServingLayout, point_id: int, analytic: dict, seed: int,
                evaluator=None) -> dict:
    """One part of a candidate's verification (``PARTS``): its runs' figures, for ``combine_parts``.
    ``emitted``: the deployment that would be written, through the rules, then simulated;
    ``claim``: the claimed capacity, then the sustainable rate if the claim fails; ``both``:
    the emitted run, which a trace workload also reads as the claim."""
    from planner.result import deployment_to_yaml
    from workloads.deployment import load_deployment_text

    t0 = time.perf_counter()
    claimed, _ttft, _tpot, lifetime = claim_figures(analytic, ctx)
    got: dict = {"part": part, "runs": 0}
    if not (math.isfinite(lifetime) and math.isfinite(claimed)):
        return got
    step_cost, kv = simulation_hooks(ctx, layout, evaluator)
    first = None
    if part in ("emitted", "both"):
        emitted = layout_deployment(cfg, ctx, layout, name=f"{cfg.name}-best", seed=cfg.seed)
        try:
            load_deployment_text(deployment_to_yaml(emitted), "best_deployment.yaml")
        except ValueError as exc:
            got.update(failed=f"the emitted YAML does not validate: {str(exc).splitlines()[0]}",
                       wall_s=time.perf_counter() - t0)
            return got
        r = _run(emitted, step_cost, kv, lifetime)
        got["runs"] += 1
        if "error" in r:
            got.update(failed=f"simulating the emitted deployment raised {r['error']}", wall_s=time.perf_counter() - t0)
            return got
        got.update(sim_ttft_target_ms=r["ttft_ms"], sim_tpot_target_ms=r["tpot_ms"], sim_slo_met_target=r["met"])
        first = r
        if part == "emitted":
            got["wall_s"] = time.perf_counter() - t0
            return got
    got.update(claim_search(claimed, rate_runner(cfg, ctx, layout, lifetime, seed, step_cost, kv), first))
    got["runs"] += got.pop("claim_runs")
    got["wall_s"] = time.perf_counter() - t0
    return got


def rate_runner(cfg, ctx: PlanContext, layout: ServingLayout, lifetime: float, seed: int, step_cost, kv):
    """``run(rate) -> figures``: one capacity run of ``layout`` at ``rate`` req/s (``requests >=
    rate x RUN_LIFETIMES lifetimes``, the point's ``seed``), a pure function of the rate."""
    def at(rate: float) -> dict:
        n = int(min(MAX_VERIFY_REQUESTS, max(cfg.verify.num_requests, math.ceil(rate * RUN_LIFETIMES * lifetime))))
        dep = layout_deployment(cfg, ctx, layout, rate, name=f"{cfg.name}-verify", seed=seed, num_requests=n)
        return _run(dep, step_cost, kv, lifetime)

    return at


def claim_search(claimed: float, run, first: dict | None = None) -> dict:
    """The claimed capacity (``first``: a trace's one run), then 0.9x ... and bisection, each
    rate's figures from ``run(rate)`` (``rate_runner``; ``planner.verify_sched`` answers from runs
    made elsewhere): the rates asked depend only on the answers, so a run's figures may come
    from any process, in any order."""
    runs = [0]
    history: list[str] = []

    def at(rate: float) -> dict:
        res = run(rate)
        runs[0] += 1
        history.append(_label(rate, res))
        return res

    trace = first is not None
    first = first if trace else at(claimed)
    out: dict = {}
    if "error" in first:
        out.update(failed=f"simulating the claimed rate raised {first['error']}", history="; ".join(history))
        out["claim_runs"] = runs[0]
        return out
    out.update(sim_ttft_p_ms=first["ttft_ms"], sim_tpot_p_ms=first["tpot_ms"])
    passed, failed, good = (claimed, None, first) if first["met"] else (None, claimed, None)
    if not first["met"] and not trace:
        for f in SEARCH_FACTORS:
            r = at(claimed * f)
            if "error" in r:
                break
            if r["met"]:
                passed, good = claimed * f, r
                break
            failed = claimed * f
        while passed is not None and failed - passed > BRACKET * claimed:  # bisect towards the failing rate
            mid = 0.5 * (passed + failed)
            r = at(mid)
            if "error" in r:
                break
            if r["met"]:
                passed, good = mid, r
            else:
                failed = mid
    out.update(history="; ".join(history), passed=passed, claim_runs=runs[0])
    if passed is not None:
        out.update(sim_ttft_at_capacity_ms=good["ttft_ms"], sim_tpot_at_capacity_ms=good["tpot_ms"])
    else:
        out["missed"] = history[-1] if history else "no run"
    return out


def combine_parts(cfg, ctx: PlanContext, point_id: int, analytic: dict, emitted: dict,
                  claim: dict | None = None) -> dict:
    """A candidate's verification row from its parts (``emitted`` first; for a trace, the one
    ``both`` part), as one run of the whole check would give it."""
    out: dict = {"id": point_id, "ok": False, "status": "failed", "reason": "", "runs": 0}
    claimed, ttft_s, tpot_s, lifetime = claim_figures(analytic, ctx)
    if not (math.isfinite(lifetime) and math.isfinite(claimed)):
        out.update(reason=f"the analytic estimate is not finite (TTFT {ttft_s * 1e3:g} ms, TPOT {tpot_s * 1e3:g} ms, "
                          f"{claimed:g} req/s)")
        return out
    out.update(claimed_rps=claimed, analytic_ttft_ms=ttft_s * 1e3, analytic_tpot_ms=tpot_s * 1e3)
    parts = [emitted] + ([claim] if claim is not None else [])
    wall = sum(p.get("wall_s", 0.0) for p in parts)
    out["runs"] = emitted["runs"]
    if emitted.get("failed") and "sim_ttft_target_ms" not in emitted:  # the emitted deployment failed
        out.update(reason=emitted["failed"], sim_wall_s=wall)
        return out
    out.update({k: emitted[k] for k in ("sim_ttft_target_ms", "sim_tpot_target_ms", "sim_slo_met_target")})
    c = emitted if claim is None else claim
    if claim is not None:
        out["runs"] += claim["runs"]
    if c.get("failed"):
        out.update(reason=c["failed"], history=c.get("history", ""), sim_wall_s=wall)
        return out
    out.update(sim_ttft_p_ms=c["sim_ttft_p_ms"], sim_tpot_p_ms=c["sim_tpot_p_ms"])
    out.update(history=c["history"], sim_wall_s=wall)
    passed = c["passed"]
    if passed is None:
        out["reason"] = (f"SLO missed at every rate tried, down to {claimed * SEARCH_FACTORS[-1]:.3g} req/s "
                         f"({c['missed']})")
        return out
    out.update(ok=True, status="verified", sim_capacity_rps=passed,
               sim_ttft_at_capacity_ms=c["sim_ttft_at_capacity_ms"],
               sim_tpot_at_capacity_ms=c["sim_tpot_at_capacity_ms"],
               capacity_gap=claimed / passed - 1.0 if passed else math.nan,
               reason="" if passed == claimed else f"SLO missed at the claimed {claimed:.3g} req/s; "
                                                    f"holds at {passed:.3g} req/s")
    return out
