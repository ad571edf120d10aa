"""``plan()``: enumerate (or optuna-search) layouts, rank them analytically, verify the top ones.

Flow (planner/README.md has the why):

1. Pool choices per role from the plan's ``SearchSpace``.
2. Pool capacities, grouped by pool cost key, in the executor (``pool_task``): each task
   returns the capacities and its memoised step-cost tables, which seed the ranking process
   so no step is costed twice.
3. Layouts: a rejected pool choice gives one row with its reason (it rejects every layout it
   appears in); feasible choices are crossed with instance counts within the budget. Up to
   ``max_grid_layouts`` layouts are evaluated exhaustively, beyond that optuna's TPE sampler
   (seeded) searches the same space through the same evaluation.
4. Rank: feasible, serves the target load, objective (tokens/s per device or per $1000),
   fewer devices, point id.
5. Verify the top candidates with ``simulator.simulate`` (same step costs, same KV capacity),
   each run seeded from the plan seed and the point id.

``evaluate(point, seed)`` is the pure per-point function (what Ray tasks or a process pool
run for a sweep); ``evaluate_chunk`` amortises the caches over many points.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from typing import Any, Iterable

import numpy as np
import pandas as pd

from planner.analytic import Evaluator, PoolModel, PoolPerf
from planner.executors import Executor, default_executor
from planner.result import PlanResult, pareto_front
from planner.space import (
    Layout,
    PlanContext,
    Point,
    PoolChoice,
    pair_count,
    context_from_plan,
    instance_sizes,
    pool_choices,
)
from simulator.progress import ProgressFn, Throttle
from workloads.limits import MAX_PLAN_LAYOUTS

__all__ = ["plan", "evaluate", "evaluate_chunk", "point_seed", "pool_task", "layout_deployment", "verify_task",
           "engine_available"]


def point_seed(seed: int, point_id: int) -> int:
    """The seed of one point: derived from the base seed and the point id (never worker order)."""
    return int(np.random.SeedSequence([int(seed), int(point_id)]).generate_state(1)[0])


def evaluate(point: Point, seed: int = 0) -> dict:
    """Analytic metrics of one layout: a pure function of (point.ctx, point.layout, seed).

    The row carries ``id`` and ``seed`` (= ``point_seed(seed, point.id)``, the seed a
    verification run of this point uses).
    """
    if point.ctx is None:
        raise ValueError("evaluate(point, seed) needs point.ctx (a PlanContext)")
    return evaluate_chunk(point.ctx, [point], seed)[0]


def evaluate_chunk(ctx: PlanContext | None, points: Iterable[Point], seed: int = 0,
                   evaluator: Evaluator | None = None) -> list[dict]:
    """``evaluate`` over many points sharing one context and one cache; sorted by point id."""
    points = list(points)
    ctx = ctx or points[0].ctx
    ev = evaluator or Evaluator(ctx)
    out = []
    for p in sorted(points, key=lambda q: q.id):
        row = ev.evaluate_layout(p.layout)
        row["id"] = p.id
        row["seed"] = point_seed(seed, p.id)
        out.append(row)
    return out


def pool_task(ctx: PlanContext, choices: list[PoolChoice]) -> tuple[dict, dict]:
    """Capacities of pool choices (sharing few cost keys) and the step tables they filled."""
    ev = Evaluator(ctx)
    perfs = {c: ev.perf(c) for c in choices}
    tables = {k: (dict(m._dec), dict(m._pre), m.calls) for k, m in ev._models.items()}
    return perfs, tables


def _seed_evaluator(ev: Evaluator, perfs: dict, tables: dict, choices_by_key: dict) -> None:
    ev._perf.update(perfs)
    for key, (dec, pre, _calls) in tables.items():
        choice = choices_by_key[key]
        try:
            m = ev.pool_model(choice)
        except (ValueError, LookupError):
            continue
        m._dec.update(dec)
        m._pre.update(pre)


def _layouts(ctx: PlanContext, space, feasible: dict[str, list[PoolChoice]]) -> list[Layout]:
    budget, cap = ctx.budget_devices, space.max_instances
    n = _layout_count(ctx, space, feasible)
    if n > MAX_PLAN_LAYOUTS:
        raise ValueError(f"search: {n:,} feasible layouts within the budget, more than the planner holds in memory "
                         f"(at most {MAX_PLAN_LAYOUTS:,}; lower search.max_instances or hardware.devices, or shorten "
                         f"the search lists)")
    out: list[Layout] = []
    if "colocated" in space.modes:
        for c in feasible.get("pool", []):
            for n in range(1, min(cap, budget // c.devices_per_instance) + 1):
                out.append(Layout("colocated", ((c, n),)))
    if "disaggregated" in space.modes:
        for d in feasible.get("decode", []):
            for p in feasible.get("prefill", []):
                dp_, dd = p.devices_per_instance, d.devices_per_instance
                for n_p in range(1, min(cap, (budget - dd) // dp_) + 1):
                    for n_d in range(1, min(cap, (budget - n_p * dp_) // dd) + 1):
                        out.append(Layout("disaggregated", ((p, n_p), (d, n_d))))
    return out


def _layout_count(ctx: PlanContext, space, feasible: dict[str, list[PoolChoice]]) -> int:
    """How many layouts ``_layouts`` would build, counted per instance size without building them."""
    budget, cap = ctx.budget_devices, space.max_instances
    total = 0
    if "colocated" in space.modes:
        total += sum(min(cap, budget // c.devices_per_instance) for c in feasible.get("pool", []))
    if "disaggregated" in space.modes:
        pre = Counter(c.devices_per_instance for c in feasible.get("prefill", []))
        dec = Counter(c.devices_per_instance for c in feasible.get("decode", []))
        total += sum(n_p * n_d * pair_count(dp_, dd, budget, cap) for dp_, n_p in pre.items() for dd, n_d in dec.items())
    return total


def _objective_column(cfg) -> str:
    return "tokens_per_s_per_kusd" if cfg.objective == "tokens_per_dollar" else "tokens_per_s_per_device"


def _rank(df: pd.DataFrame, objective: str) -> pd.DataFrame:
    if df.empty:
        return df
    for col in ("capacity_rps", objective, "tokens_per_s_per_device"):
        if col not in df:
            df[col] = np.nan
    key = df[objective].fillna(-1.0)
    df = df.assign(_obj=key).sort_values(["feasible", "meets_load", "_obj", "devices", "id"],
                                         ascending=[False, False, False, True, True], kind="mergesort")
    df = df.drop(columns="_obj").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    lead = ["rank", "id", "mode", "devices", "feasible", "meets_load", "reason"]
    return df[[c for c in lead if c in df] + [c for c in df.columns if c not in lead]]


def _optuna_search(ctx, cfg, feasible, ev: Evaluator, seed: int,
                   ticker: Throttle | None = None) -> list[tuple[Layout, dict]]:
    """TPE search over the pool choices and instance counts (seeded; sequential ask/tell)."""
    try:
        import optuna
    except ImportError:
        raise ValueError("this search space is too large to enumerate and needs optuna: "
                         "pip install optuna (or set search.method: grid)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = cfg.search
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    objective = _objective_column(cfg)
    budget = ctx.budget_devices
    seen: dict[Layout, dict] = {}
    modes = [m for m in space.modes if (m == "colocated" and feasible.get("pool"))
             or (m == "disaggregated" and feasible.get("prefill") and feasible.get("decode"))]
    if not modes:
        return []
    for i in range(space.optuna_trials):
        if ticker is not None:
            ticker.tick(i, f"{len(seen)} layouts")
        trial = study.ask()
        mode = trial.suggest_categorical("mode", modes)
        if mode == "colocated":
            opts = feasible["pool"]
            c = opts[trial.suggest_int("pool", 0, len(opts) - 1)]
            n = trial.suggest_int("n", 1, max(1, min(space.max_instances, budget // c.devices_per_instance)))
            layout = Layout("colocated", ((c, n),))
        else:
            pre, dec = feasible["prefill"], feasible["decode"]
            p = pre[trial.suggest_int("prefill", 0, len(pre) - 1)]
            d = dec[trial.suggest_int("decode", 0, len(dec) - 1)]
            n_p = trial.suggest_int("n_prefill", 1, max(1, min(space.max_instances, budget // p.devices_per_instance)))
            n_d = trial.suggest_int("n_decode", 1, max(1, min(space.max_instances, budget // d.devices_per_instance)))
            layout = Layout("disaggregated", ((p, n_p), (d, n_d)))
        row = seen.get(layout)
        if row is None:
            row = ev.evaluate_layout(layout)
            seen[layout] = row
        value = row.get(objective, 0.0) if row.get("feasible") else 0.0
        value = (value if row.get("meets_load") else 0.5 * value) if value == value else 0.0
        if layout.devices > budget:
            value = 0.0
        study.tell(trial, value)
    return list(seen.items())


def engine_available() -> bool:
    """Whether the simulator's engine (``simulator.engine.simulate``) can be imported."""
    try:
        from simulator.engine import simulate  # noqa: F401
    except ImportError:
        return False
    return True


def layout_deployment(cfg, ctx: PlanContext, layout: Layout, rate_per_s: float | None = None, name: str | None = None,
                      seed: int | None = None):
    """The Deployment of a layout (the plan's workload and SLOs; arrival rate ``rate_per_s``)."""
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
    return Deployment(name=name or f"{cfg.name}-best", cluster=ctx.cluster.name, model=cfg.model,
                      weight_dtype=cfg.weight_dtype, kv_dtype=cfg.kv_dtype, activation_dtype=cfg.activation_dtype,
                      serving=serving, scheduler=cfg.scheduler, workload=wl, slo=cfg.slo,
                      seed=cfg.seed if seed is None else seed, profile=ctx.profile)


def _subsample(shape, keep: float):
    """The batch of an equivalent instance with ``keep`` x the DP ranks (same per-rank load)."""
    from planner.analytic import UniformBatch

    n = shape.num_seqs
    if keep >= 1.0 or n == 0:
        return shape
    if not isinstance(shape.new_tokens, tuple) and not isinstance(shape.context_tokens, tuple):
        return UniformBatch(phase=shape.phase, num_seqs=max(1, round(n * keep)), new_tokens=shape.new_tokens,
                            context_tokens=shape.context_tokens, logits_for=shape.logits_for)
    idx = [i for i in range(n) if math.floor((i + 1) * keep) > math.floor(i * keep)] or [0]
    new, ctxs = shape.new_list, shape.context_list
    return type(shape)(phase=shape.phase, num_seqs=len(idx), new_tokens=tuple(new[i] for i in idx),
                       context_tokens=tuple(ctxs[i] for i in idx), logits_for=shape.logits_for)


def simulation_hooks(ctx: PlanContext, layout: Layout) -> tuple[Any, dict]:
    """(step_cost, kv_capacity_tokens) that make ``simulator.simulate`` cost a layout exactly
    as the analytic ranking does (resolved cluster, equivalent EP, activation-aware KV)."""
    from planner.analytic import UniformBatch
    from planner.feasibility import pool_fit

    ev = Evaluator(ctx)
    names = {"pool": "colocated", "prefill": "prefill", "decode": "decode"}
    models: dict[str, tuple[PoolModel, float]] = {}
    kv: dict[str, float] = {}
    for choice, _n in layout.pools:
        m = ev.pool_model(choice)
        models[names[choice.role]] = (m, m.dp / choice.attn_dp)
        fit = pool_fit(ctx, choice, ev.model, ev.cluster)
        kv[choice.role] = fit.kv_capacity_tokens * choice.attn_dp * choice.attn_sp

    def step_cost(role: str, shape) -> float:
        m, keep = models[role]
        shape = _subsample(shape, keep)
        if not isinstance(shape.new_tokens, tuple) and not isinstance(shape.context_tokens, tuple) \
                and not isinstance(shape, UniformBatch):
            shape = UniformBatch(phase=shape.phase, num_seqs=shape.num_seqs, new_tokens=shape.new_tokens,
                                 context_tokens=shape.context_tokens, logits_for=shape.logits_for)
        return m.inst.step(shape).seconds

    return step_cost, kv


def verify_task(ctx: PlanContext, layout: Layout, deployment, point_id: int, analytic: dict) -> dict:
    """Simulate one candidate with the planner's step costs and KV capacities; compare."""
    from simulator.engine import simulate

    step_cost, kv = simulation_hooks(ctx, layout)
    t0 = time.perf_counter()
    try:
        res = simulate(deployment, step_cost=step_cost, kv_capacity_tokens=kv)
    except Exception as exc:  # a verification failure is a result to report, not a crash of the plan
        return {"id": point_id, "ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                "sim_wall_s": time.perf_counter() - t0}
    s = res.summary
    q = deployment.slo.percentile
    slo = s.get("slo", {})
    thr = s.get("throughput", {})
    out = {
        "id": point_id, "ok": True, "sim_wall_s": time.perf_counter() - t0,
        "sim_rate_per_s": deployment.workload.arrival.rate_per_s if hasattr(deployment.workload.arrival, "rate_per_s") else None,
        "sim_requests": s.get("counts", {}).get("requests"),
        "sim_finished": s.get("counts", {}).get("finished"),
        "sim_ttft_p_ms": slo.get(f"ttft_p{q:g}_ms"),
        "sim_tpot_p_ms": slo.get(f"tpot_p{q:g}_ms"),
        "sim_output_tokens_per_s_per_device": thr.get("output_tokens_per_s_per_device"),
        "sim_slo_attainment": slo.get("attainment"),
        "sim_slo_met": slo.get("slo_met_at_percentile"),
        "analytic_ttft_ms": analytic.get("ttft_ms_at_target") if analytic.get("meets_load") else analytic.get("ttft_ms"),
        "analytic_tpot_ms": analytic.get("tpot_ms_at_target") if analytic.get("meets_load") else analytic.get("tpot_ms"),
    }
    for k in ("ttft", "tpot"):
        a, b = out[f"analytic_{k}_ms"], out[f"sim_{k}_p_ms"]
        out[f"{k}_rel_error"] = (a - b) / b if a is not None and b and a == a else None
    return out


def _pool_phase(ctx, choices: list[PoolChoice], executor: Executor, ev: Evaluator,
                progress: ProgressFn | None = None) -> None:
    """Fill ``ev`` with every choice's capacity, costing pool keys in parallel when worth it."""
    by_key: dict[tuple, list[PoolChoice]] = defaultdict(list)
    for c in choices:
        by_key[c.cost_key].append(c)
    # choices whose rules or memory already fail need no step costs: settle them here
    from planner.feasibility import pool_fit

    costly: dict[tuple, list[PoolChoice]] = {}
    for key, cs in by_key.items():
        live = []
        for c in cs:
            why = ev.rules_reason(c) or pool_fit(ctx, c, ev.model, ev.cluster).reason
            if why:
                ev._perf[c] = PoolPerf(why)
            else:
                live.append(c)
        if live:
            costly[key] = live
    keys = sorted(costly)
    if executor.workers <= 1 or len(keys) < 4:
        ticker = Throttle(progress, "pool costs", len(keys))
        for i, k in enumerate(keys):
            ticker.tick(i)
            for c in costly[k]:
                ev.perf(c)
        ticker.finish()
        return
    # cost one key here first: it warms the profile's and cost model's lazy tables, which
    # forked workers then inherit instead of each rebuilding them (seconds per process)
    keys = sorted(keys, key=lambda k: (-k[0], k))
    for c in costly[keys[0]]:
        ev.perf(c)
    keys = keys[1:]
    n_tasks = min(len(keys), executor.workers * 4)
    # spread keys round-robin by instance size so tasks take similar time
    groups = [keys[i::n_tasks] for i in range(n_tasks)]
    tasks = [(ctx, [c for k in g for c in costly[k]]) for g in groups if g]
    first = {k: v[0] for k, v in costly.items()}
    for perfs, tables in executor.map(pool_task, tasks, desc="pool costs"):
        _seed_evaluator(ev, perfs, tables, first)


def plan(plan_config, *, executor: Executor | None = None, seed: int | None = None,
         verify_top: int | None = None, context: PlanContext | None = None,
         progress: ProgressFn | None = None) -> PlanResult:
    """Search the plan's layout space; return the ranked table, Pareto front, best deployment
    and simulator verification of the top ``verify_top`` candidates (default: the plan's
    ``verify.top``; ``seed`` defaults to the plan's). ``context`` replaces the context derived
    from the plan (what-if variants: scaled fabric or HBM). ``progress`` (``simulator.progress``)
    is told each phase's progress: ``pool costs``, ``rank layouts``; the executor's own callback
    reports the tasks it runs (``pool costs``, ``verify``)."""
    from workloads.models import get_model

    cfg = plan_config
    seed = cfg.seed if seed is None else seed
    verify_top = cfg.verify.top if verify_top is None else verify_top
    t0 = time.perf_counter()
    ctx = context or context_from_plan(cfg)
    model = get_model(cfg.model)
    space = cfg.search
    executor = executor or default_executor(progress=progress)
    notes: list[str] = []
    if not ctx.cluster.in_catalog:
        ref = ctx.cluster
        what = []
        if ref.device:
            what.append(f"{ref.device} devices (no catalog cluster of that device has {ctx.budget_devices})")
        if ref.bandwidth_scale != 1.0:
            what.append(f"fabric bandwidth x{ref.bandwidth_scale:g}")
        if ref.hbm_scale != 1.0:
            what.append(f"HBM x{ref.hbm_scale:g}")
        notes.append(f"cluster {ref.name!r} is used with {' and '.join(what)}; the YAML names {ref.name}, so "
                     f"`clustersim simulate` would run it on the catalog's {ref.name} as it is")
    ev = Evaluator(ctx)
    from calibration.resolve import profile_info, profile_line

    notes.append(profile_line(profile_info(ev.profile, ev.cluster.device.name)))
    sizes = instance_sizes(ctx, space)
    roles = (["pool"] if "colocated" in space.modes else []) + (
        ["prefill", "decode"] if "disaggregated" in space.modes else [])
    choices = {r: pool_choices(r, space, model, sizes) for r in roles}
    all_choices = [c for r in roles for c in choices[r]]

    t_pool = time.perf_counter()
    _pool_phase(ctx, all_choices, executor, ev, progress)
    t_pool = time.perf_counter() - t_pool

    feasible = {r: [c for c in choices[r] if ev.perf(c).reason is None] for r in roles}
    rejected = [c for r in roles for c in choices[r] if ev.perf(c).reason is not None]

    t_rank = time.perf_counter()
    layouts = _layouts(ctx, space, feasible)
    method = space.method
    if method == "auto":
        method = "optuna" if len(layouts) > space.max_grid_layouts else "grid"
    rows: list[dict] = []
    pid = 0
    ticker = Throttle(progress, "rank layouts", len(layouts) if method == "grid" else space.optuna_trials)
    for c in rejected:
        mode = "colocated" if c.role == "pool" else "disaggregated"
        row = ev.evaluate_layout(Layout(mode, ((c, 1),)))
        row["id"] = pid
        rows.append(row)
        pid += 1
    if method == "grid":
        for i, lay in enumerate(layouts):
            ticker.tick(i)
            row = ev.evaluate_layout(lay)
            row["id"] = pid
            rows.append(row)
            pid += 1
        searched = len(layouts)
    else:
        found = _optuna_search(ctx, cfg, feasible, ev, seed, ticker)
        index = {lay: i for i, lay in enumerate(layouts)} if len(layouts) < 5_000_000 else {}
        for lay, row in found:
            row = dict(row)
            i = index.get(lay, len(index) + len(rows))
            row["id"] = len(rejected) + i
            rows.append(row)
        searched = len(found)
        notes.append(f"space of {len(layouts)} layouts searched with optuna TPE ({space.optuna_trials} trials, seed {seed})")
    layout_of = {}
    for row, lay in zip(rows[len(rejected):], layouts if method == "grid" else [lay for lay, _ in found]):
        layout_of[row["id"]] = lay
    ticker.finish(f"{len(rows):,} rows")
    objective = _objective_column(cfg)
    table = _rank(pd.DataFrame(rows), objective)
    t_rank = time.perf_counter() - t_rank

    # verification -----------------------------------------------------------------------
    t_ver = time.perf_counter()
    top = table[table["feasible"]].head(verify_top) if len(table) else table
    deployments = {}
    ver_rows: list[dict] = []
    if verify_top and len(top):
        for r in top.itertuples(index=False):
            row = r._asdict()
            lay = layout_of[row["id"]]
            rate = ctx.arrival_rate_per_s if (row["meets_load"] or cfg.verify.load == "target") else row["capacity_rps"]
            if cfg.verify.load == "capacity" or not row["meets_load"]:
                rate = row["capacity_rps"]
            dep = layout_deployment(cfg, ctx, lay, rate, name=f"{cfg.name}-rank{row['rank']}",
                                    seed=point_seed(seed, row["id"]))
            wl = dep.workload
            if wl.duration_s is None and wl.arrival.kind != "trace":
                dep = dep.model_copy(update={"workload": wl.model_copy(update={"num_requests": cfg.verify.num_requests})})
            deployments[row["id"]] = dep
        if engine_available():
            tasks = [(ctx, layout_of[i], deployments[i], i, table.loc[table["id"] == i].iloc[0].to_dict())
                     for i in deployments]
            ver_rows = executor.map(verify_task, tasks, desc="verify")
            ver_rows = sorted(ver_rows, key=lambda d: list(deployments).index(d["id"]))
        else:
            notes.append("simulator.engine.simulate is not available: top candidates were not verified")
    verification = pd.DataFrame(ver_rows)
    t_ver = time.perf_counter() - t_ver

    best = None
    if len(table) and bool(table.iloc[0]["feasible"]):
        bid = int(table.iloc[0]["id"])
        best = layout_deployment(cfg, ctx, layout_of[bid], name=f"{cfg.name}-best")
        if best is not None and not table.iloc[0]["meets_load"]:
            notes.append(f"no layout within the budget serves the target {ctx.arrival_rate_per_s:g} req/s; the best "
                         f"serves {table.iloc[0]['capacity_rps']:.3g} req/s")
    wall = time.perf_counter() - t0
    stats = {
        "method": method, "pool_choices": len(all_choices), "pool_choices_rejected": len(rejected),
        "pool_cost_keys": len({c.cost_key for c in all_choices}), "layouts": len(layouts),
        "layouts_searched": searched, "rows": len(table), "step_cost_calls": ev.step_calls(),
        "pool_phase_s": t_pool, "rank_phase_s": t_rank, "verify_phase_s": t_ver, "wall_s": wall,
        "workers": executor.workers, "seed": seed, "cluster": ctx.cluster.name,
        "device": ctx.cluster.resolve().device.name, "budget_devices": ctx.budget_devices,
    }
    return PlanResult(plan=cfg, table=table, pareto=pareto_front(table), best=best, verification=verification,
                      stats=stats, notes=tuple(notes), deployments=deployments,
                      layouts={i: layout_of[i] for i in deployments})
