"""``plan()``: enumerate (or optuna-search) layouts, rank them analytically, verify the top ones.

Flow (planner/README.md has the why):

1. Pool choices per role from the plan's ``SearchSpace``.
2. Pool capacities, grouped by pool cost key, in the executor (``pool_task``): each task
   returns the capacities (and the decode capacities after the KV handoff gaps its layouts
   will have) and its memoised step-cost tables, which seed the ranking process so no step
   is costed twice. Forked local workers take the groups from the front of one queue while
   this process takes them from the back (``_steal_pools``).
3. Layouts: a rejected pool choice gives one row with its reason (it rejects every layout it
   appears in); feasible choices are crossed with instance counts within the budget. Up to
   ``max_grid_layouts`` layouts are evaluated exhaustively (layouts with identical results
   merged into one row, ``planner.merge``; large grids in shares, the rest in workers:
   ``rank_task``), beyond that optuna's TPE sampler (seeded) searches the same space through
   the same evaluation (``planner.rows``).
4. Rank (``planner.ranking``): feasible, serves the target load, Pareto layer of the
   objective (tokens/s per device or per $1000) against tokens/s per user, then the
   objective, tokens/s per user, cost, devices, point id.
5. Verify the top candidates in the simulator (``planner.rounds``, ``planner.verify``: the
   emitted YAML, the claimed capacity, the sustainable rate when the claim fails; the first
   round begins while the table is built), re-rank by the verified
   figure, and name as best only a layout the simulator verified; ``PlanResult.status`` says
   why there is none (nothing feasible: the closest layout and its rule; nothing verified:
   each check's reason).

``evaluate(point, seed)`` is the pure per-point function (what Ray tasks or a process pool
run for a sweep); ``evaluate_chunk`` amortises the caches over many points.
"""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from typing import Iterable

import numpy as np

from planner.analytic import Evaluator, PoolPerf, share_with_workers, worker_evaluator
from planner.executors import Executor, collector_off, default_executor, frozen_heap, imports_frozen, start
from planner.merge import COUNT, VARIANTS, LayoutIndex, MergedBlock, choice_classes, merge_groups, merged_blocks
from planner.ranking import RANK_COLUMNS, rank_positions, ranked
from planner.result import PlanResult, pareto_front
from planner.rounds import begin_verify, objective_column, point_seed, verify
from planner.rows import Block, Columns, layout_rows
from planner.verify import engine_available, layout_deployment, simulation_hooks, verify_task
from planner.space import (
    PlanContext,
    Point,
    PoolChoice,
    ServingLayout,
    count_pairs,
    context_from_plan,
    all_pool_choices,
    count_layouts_of,
    layouts_of,
)
from simulator.progress import ProgressFn, Throttle
from workloads.limits import MAX_PLAN_LAYOUTS

__all__ = ["plan", "evaluate", "evaluate_chunk", "point_seed", "pool_task", "rank_task", "layout_deployment",
           "verify_task", "simulation_hooks", "engine_available"]


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


def pool_task(ctx: PlanContext, choices: list[PoolChoice], gaps: dict | None = None) -> tuple:
    """Capacities of pool choices (sharing few cost keys), the decode capacities after the KV
    handoff gaps ``gaps`` lists per decode choice (``Evaluator.decode_perf_after_handoff``: a
    search per gap, done here in parallel), and the step tables they filled
    (``Evaluator.export_state``)."""
    ev = worker_evaluator(ctx)
    _cost_pools(ev, choices, gaps or {})
    return ev.export_state(choices)


def _cost_pools(ev: Evaluator, choices: list[PoolChoice], gaps: dict) -> None:
    """``ev`` holds the capacities of ``choices`` and, per decode choice, after each KV handoff gap of ``gaps``."""
    for c in choices:
        ev.perf(c)
    for c, gs in gaps.items():
        if ev.perf(c).reason is None:
            for g in gs:
                ev.decode_perf_after_handoff(c, g)


def _count_layouts(ctx: PlanContext, space, feasible: dict[str, list[PoolChoice]]) -> int:
    """How many serving layouts the feasible choices give (``planner.space.layouts_of``), within the limit."""
    n = count_layouts_of(ctx, space, feasible)
    if n > MAX_PLAN_LAYOUTS:
        raise ValueError(f"search: {n:,} feasible layouts within the budget, more than the planner holds in memory "
                         f"(at most {MAX_PLAN_LAYOUTS:,}; lower search.max_instances or hardware.devices, or shorten "
                         f"the search lists)")
    return n


def _optuna_search(ctx, cfg, feasible, ev: Evaluator, seed: int,
                   ticker: Throttle | None = None) -> list[tuple[ServingLayout, dict]]:
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
    objective = objective_column(cfg)
    budget = ctx.budget_devices
    seen: dict[ServingLayout, dict] = {}
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
            layout = ServingLayout("colocated", ((c, n),))
        else:
            pre, dec = feasible["prefill"], feasible["decode"]
            p = pre[trial.suggest_int("prefill", 0, len(pre) - 1)]
            d = dec[trial.suggest_int("decode", 0, len(dec) - 1)]
            n_p = trial.suggest_int("n_prefill", 1, max(1, min(space.max_instances, budget // p.devices_per_instance)))
            n_d = trial.suggest_int("n_decode", 1, max(1, min(space.max_instances, budget // d.devices_per_instance)))
            layout = ServingLayout("disaggregated", ((p, n_p), (d, n_d)))
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


def _handoff_gaps(ctx, space, ev: Evaluator, live: dict[tuple, list[PoolChoice]]) -> dict:
    """decode choice -> the KV handoff gaps its layouts will have (``Evaluator.handoff_gap_s``)
    with every prefill instance size whose choices pass the rules and fit in memory."""
    sizes = {c.devices_per_instance for cs in live.values() for c in cs if c.role == "prefill"}
    by_size: dict[int, tuple] = {}
    out = {}
    for cs in live.values():
        for c in cs:
            if c.role != "decode":
                continue
            d = c.devices_per_instance
            if d not in by_size:
                gs = {ev.handoff_gap_s_sizes(p, n_p, d, n_d) for p in sizes
                      for n_p, n_d in count_pairs(p, d, ctx.budget_devices, space.max_instances)}
                by_size[d] = tuple(sorted(g for g in gs if g > 0.0))
            out[c] = by_size[d]
    return out


def _pool_phase(ctx, space, choices: list[PoolChoice], executor: Executor, ev: Evaluator,
                progress: ProgressFn | None = None) -> None:
    """Fill ``ev`` with every choice's capacity, costing pool keys in parallel when worth it."""
    by_key: dict[tuple, list[PoolChoice]] = defaultdict(list)
    for c in choices:
        by_key[c.cost_key].append(c)
    # choices whose rules or memory already fail need no step costs: settle them here
    costly: dict[tuple, list[PoolChoice]] = {}
    for key, cs in by_key.items():
        live = []
        for c in cs:
            why = ev.rules_reason(c)
            if why:
                ev._perf[c] = PoolPerf(why)
                continue
            fit = ev.fit(c)
            if fit.reason:
                ev._perf[c] = PoolPerf(fit.reason, shortfall=fit.shortfall)
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
    # a decode and a prefill step costed here first warm the profile's and the cost model's
    # lazy tables (most of a process's first second), which forked workers then inherit
    # (``planner.analytic.worker_evaluator``) instead of each building them again
    keys = sorted(keys, key=lambda k: (-k[0], k))
    warm = ev.pool_model(costly[keys[0]][0])
    warm.decode_step_s(1.0)
    warm.prefill_step_s(float(warm.prompt))
    # keys that cost as the same instance (``planner.feasibility.instance_spec``) go to one task,
    # which costs their steps once; such units spread round-robin by instance size so tasks
    # take similar time
    units = _same_instance(ctx, ev, keys, costly)
    gaps = _handoff_gaps(ctx, space, ev, costly) if "disaggregated" in space.modes else {}
    if getattr(executor, "forks", False):
        _steal_pools(ctx, ev, executor, [[k for u in g for k in u] for g in _family_tasks(units)], costly, gaps,
                     progress)
        return
    n_tasks = min(len(units), executor.workers * 4 + 1)
    # this process costs every n_tasks-th unit; the workers take the others in smaller tasks
    # (twice as many), so that the last ones running leave a core idle for less time
    rest = [u for i, u in enumerate(units) if i % n_tasks]
    n_rest = min(len(rest), 2 * (n_tasks - 1))
    groups = [[k for u in units[::n_tasks] for k in u]] + [[k for u in rest[i::n_rest] for k in u]
                                                           for i in range(n_rest)]
    tasks = [(ctx, [c for k in g for c in costly[k]], {c: gaps[c] for k in g for c in costly[k] if c in gaps})
             for g in groups]
    # the workers take all groups but the first, which this process costs meanwhile
    pending = start(executor, pool_task, tasks[1:], desc="pool costs")
    try:
        _cost_pools(ev, tasks[0][1], tasks[0][2])
        _import_later()  # while the workers cost the rest, not before the plan began
        for state in pending():
            ev.import_state(state)
    finally:
        pending.cancel()


def _import_later() -> None:
    """Import what this process needs only after the pool phase (pandas, for the table;
    the simulator's engine, which verification workers forked later inherit): done in the
    pool phase's wait, while the workers cost pools, instead of before the plan begins.
    The collector is off meanwhile and what the imports made is frozen after
    (``executors.imports_frozen``)."""
    with imports_frozen():
        import pandas  # noqa: F401

        engine_available()


def _family_tasks(units: list[list[tuple]]) -> list[list[list[tuple]]]:
    """``units`` (in order) as tasks: the units of one family (cost keys equal but for redundant
    experts, micro-batches and MTP: ``PoolChoice.cost_key[:7]``, which share most of their op
    lists and op costs) in two halves, so a process costs a family's shared ops once."""
    fams: dict[tuple, list[list[tuple]]] = {}
    for u in units:
        fams.setdefault(u[0][:7], []).append(u)
    out = []
    for f in fams.values():
        half = (len(f) + 1) // 2
        out += [f[:half], f[half:]] if len(f) > 1 else [f]
    return out


def _steal_pools(ctx, ev: Evaluator, executor: Executor, groups: list[list[tuple]], costly: dict, gaps: dict,
                 progress: ProgressFn | None = None) -> None:
    """Pool costs on a local pool of forked workers: one worker fewer than the executor has
    (this process is the other), the workers taking ``groups`` from the front and this process
    from the back (after its imports, ``_import_later``) until they meet: a counter pair in
    shared memory (``pool_queue_task``), so no task waits queued for a busy worker while a core
    idles, and every process costs the op lists and op costs its groups share once."""
    import multiprocessing as mp

    tasks = [([c for k in g for c in costly[k]], {c: gaps[c] for k in g for c in costly[k] if c in gaps})
             for g in groups]
    ends = mp.Array("i", [0, len(tasks)])  # (next from the front, one past the next from the back)
    key = id(tasks)
    _FORKED_POOL_TASKS[key] = (tasks, ends)
    ticker = Throttle(progress, "pool costs", len(tasks))  # groups taken from either end
    try:
        pending = start(executor, pool_queue_task, [(ctx, key)] * max(1, min(executor.workers - 1, len(tasks))),
                        desc=None)
        try:
            _import_later()
            while (i := _take(ends, back=True)) is not None:
                ticker.tick(ends[0] + len(tasks) - ends[1])
                _cost_pools(ev, *tasks[i])
            for states in pending():
                for state in states:
                    ev.import_state(state)
            ticker.finish()
        finally:
            pending.cancel()
    finally:
        _FORKED_POOL_TASKS.pop(key, None)


#: pool-cost groups and their shared (front, back) counters while workers forked from this
#: process take them (``pool_queue_task``)
_FORKED_POOL_TASKS: dict[int, tuple] = {}


def _take(ends, back: bool) -> int | None:
    """The next group's index from the front or the back of ``ends`` (None: they met)."""
    with ends.get_lock():
        lo, hi = ends[0], ends[1]
        if lo >= hi:
            return None
        if back:
            ends[1] = hi - 1
            return hi - 1
        ends[0] = lo + 1
        return lo


def pool_queue_task(ctx: PlanContext, key: int) -> list[tuple]:
    """In a worker forked from the planning process: ``pool_task`` over the groups it takes
    from the front of ``_FORKED_POOL_TASKS[key]`` until the other end is reached."""
    tasks, ends = _FORKED_POOL_TASKS[key]
    out = []
    while (i := _take(ends, back=False)) is not None:
        out.append(pool_task(ctx, *tasks[i]))
    return out


def _same_instance(ctx, ev: Evaluator, keys: list[tuple], costly: dict) -> list[list[tuple]]:
    """``keys`` (in order) as runs of those whose pool models cost the same instance."""
    from planner.analytic import spec_key
    from planner.feasibility import instance_spec

    units: dict = {}
    for k in keys:
        try:
            same = spec_key(instance_spec(ctx, costly[k][0], ev.model, ev.cluster))
        except (ValueError, LookupError):
            same = k
        units.setdefault(same, []).append(k)
    return list(units.values())


def _rows(ctx, cfg, ev: Evaluator, rejected: list, feasible: dict, n_layouts: int, method: str, seed: int,
          notes: list[str], executor: Executor, ticker: Throttle | None = None) -> tuple[Columns, LayoutIndex, int]:
    """(rows, point id -> layout, layouts evaluated): one row per rejected pool choice (its
    reason rejects every layout it is in), then every layout (grid: equivalent layouts merged
    into one row, ``planner.merge``) or those optuna tried. ``merge_identical`` makes the table."""
    cols = Columns()
    for role in ("pool", "prefill", "decode"):  # one block per rejected choice, one call per role
        blocks = [Block((c,), [(1,)], {"id": pid, COUNT: 1, "_variants": {}}) for pid, c in enumerate(rejected)
                  if c.role == role]
        if blocks:
            layout_rows(ev, "colocated" if role == "pool" else "disaggregated", blocks, cols)
    index = LayoutIndex()
    base = len(rejected)
    if method == "grid":
        classes = {r: choice_classes(cs, ev.result_key) for r, cs in feasible.items()}
        blocks = list(merged_blocks(ctx, cfg.search, classes, feasible, base))
        for b in blocks:
            index.add_block(b)
        shares = _shares(blocks, executor.workers)
        # the other shares in worker processes (``rank_task``) while this one is evaluated here; a
        # forked worker starts from this process's evaluator, which holds every memo already, and
        # finds its share where this process left it (``_FORKED_SHARES``): nothing to send
        key = id(shares)
        if getattr(executor, "forks", False):
            _FORKED_SHARES[key] = shares
            tasks = [(ctx, None, (key, i)) for i in range(1, len(shares))]
        else:
            tasks = [(ctx, ev.export_state(), share) for share in shares[1:]]
        try:
            pending = start(executor, rank_task, tasks, desc="rank layouts")
            try:
                _evaluate_blocks(ev, shares[0] if shares else [], cols, ticker)
                for part in pending():
                    cols.extend(part, ev)
            finally:
                pending.cancel()
        finally:
            _FORKED_SHARES.pop(key, None)
        return cols, index, n_layouts
    layouts = list(layouts_of(ctx, cfg.search, feasible))
    found = _optuna_search(ctx, cfg, feasible, ev, seed, ticker)
    pos = {lay: i for i, lay in enumerate(layouts)} if len(layouts) < 5_000_000 else {}
    notes.append(f"space of {len(layouts)} layouts searched with optuna TPE ({cfg.search.optuna_trials} trials, "
                 f"seed {seed})")
    for k, (lay, row) in enumerate(found):
        pid = base + pos.get(lay, len(pos) + base + k)
        index.add(pid, lay)
        cols.add(1, {**row, "id": pid, COUNT: 1, "_variants": {}})
    return cols, index, len(found)


#: the ranking's shares (by a key per plan) while workers forked from this process evaluate
#: them (``rank_task`` with (key, index)): a forked worker reads its share here instead of
#: receiving it
_FORKED_SHARES: dict[int, list] = {}
#: rows evaluated together (``planner.rows.layout_rows``: numpy over the rows of many blocks)
_BATCH_ROWS = 20_000
#: fewer merged rows than this are ranked in this process alone (a worker's start and its
#: answer's trip back cost more than it saves)
_PARALLEL_ROWS = 10_000


def _shares(blocks: list[MergedBlock], workers: int) -> list[list[MergedBlock]]:
    """``blocks`` cut into up to ``workers`` consecutive shares of about equal rows (the first
    is ranked here, the rest in workers: ``rank_task``)."""
    rows = sum(len(b.counts) for b in blocks)
    n = max(1, min(workers, 8, rows // (_PARALLEL_ROWS // 2))) if rows >= _PARALLEL_ROWS else 1
    out: list[list[MergedBlock]] = [[] for _ in range(n)]
    done = 0
    for b in blocks:
        out[min(n - 1, done * n // max(rows, 1))].append(b)
        done += len(b.counts)
    return [s for s in out if s]


def _evaluate_blocks(ev: Evaluator, blocks: list[MergedBlock], cols: Columns, ticker: Throttle | None = None) -> None:
    """Rows of merged ``blocks`` (ids from their ``first``) appended to ``cols``, a batch at a time."""
    batch: dict[str, list[Block]] = {"colocated": [], "disaggregated": []}
    done = size = 0
    for block in blocks:
        n = len(block.counts)
        batch[block.mode].append(Block(block.choices, block.counts, {"id": np.arange(block.first, block.first + n),
                                                                      COUNT: block.count,
                                                                      "_variants": block.variants}))
        done += n * block.count
        size += n
        if size >= _BATCH_ROWS:
            _flush(ev, batch, cols)
            size = 0
            if ticker is not None:
                ticker.tick(done)
    _flush(ev, batch, cols)


def rank_task(ctx: PlanContext, state: tuple | None, blocks: list[MergedBlock] | tuple[int, int]) -> Columns:
    """Rows of merged ``blocks`` in a worker: an ``Evaluator`` that takes over the ranking
    process's memos (``Evaluator.import_state``), so nothing is costed twice. ``state`` None:
    the worker was forked from the ranking process and starts from its evaluator
    (``planner.analytic.worker_evaluator``), which holds them already (no state to send);
    ``blocks`` (key, index): its share in the ranking process's ``_FORKED_SHARES``."""
    if isinstance(blocks, tuple):
        key, i = blocks
        blocks = _FORKED_SHARES[key][i]
    if state is None:
        ev = worker_evaluator(ctx)
    else:
        ev = Evaluator(ctx)
        ev.import_state(state)
    cols = Columns()
    _evaluate_blocks(ev, blocks, cols)
    return cols


def _flush(ev: Evaluator, batch: dict[str, list], cols: Columns) -> None:
    for mode, blocks in batch.items():
        if blocks:
            layout_rows(ev, mode, blocks, cols)
            blocks.clear()


def _table_and_verify(cfg, ctx, cols: Columns, layout_of, executor: Executor, seed: int, verify_top: int,
                      notes: list[str], ticker: Throttle, t_rank: float) -> tuple[dict, float, float]:
    """The table (identical rows merged, ranked) and its verification (``planner.rounds``),
    whose first round runs in the workers while the table is built here; with the ranking's
    and the verification's wall times."""
    import pandas as pd

    objective = objective_column(cfg)
    groups = merge_groups(cols)
    kept, counts = groups.kept, groups.counts
    names = set(cols.names())
    light = pd.DataFrame({c: cols.column(c, kept) for c in RANK_COLUMNS if c in names})
    order = rank_positions(light, objective) if len(light) else np.arange(0)
    begun = begin_verify(cfg, ctx, light.iloc[order].reset_index(drop=True), layout_of, executor, seed, verify_top)
    del light
    try:
        texts = groups.texts(cols)  # what varies in each merged row: the table's, while the workers verify
        cols.drop("_variants")
        table = cols.frame(kept[order])  # built in rank order: the table is never copied to sort it
        table[COUNT] = counts[order]
        table[VARIANTS] = [texts[j] for j in order]
        table = ranked(table, objective)
        ticker.finish(f"{len(table):,} rows")
        t_rank = time.perf_counter() - t_rank
        t_ver = time.perf_counter()
        v = verify(cfg, ctx, table, layout_of, executor, seed, verify_top, notes, begun)
    finally:
        if begun is not None:
            begun[-1].cancel()
    return v, t_rank, time.perf_counter() - t_ver


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
    share_with_workers(ev)  # pool workers forked during the plan start from its memos
    try:
        with frozen_heap():
            return _plan(cfg, ctx, model, space, executor, ev, notes, seed, verify_top, t0, progress)
    finally:
        share_with_workers(None)


def _plan(cfg, ctx, model, space, executor, ev, notes, seed, verify_top, t0, progress) -> PlanResult:
    from calibration.resolve import profile_info, profile_line

    notes.append(profile_line(profile_info(ev.profile, ev.cluster.device.name)))
    choices = all_pool_choices(ctx, space, model)
    roles = list(choices)
    all_choices = [c for r in roles for c in choices[r]]

    t_pool = time.perf_counter()
    with collector_off():  # and in the workers it forks: ``collector_off`` says why
        _pool_phase(ctx, space, all_choices, executor, ev, progress)
        gc.freeze()  # and the pool phase's memos (op lists, costs, step tables): ``frozen_heap``
    t_pool = time.perf_counter() - t_pool

    feasible = {r: [c for c in choices[r] if ev.perf(c).reason is None] for r in roles}
    rejected = [c for r in roles for c in choices[r] if ev.perf(c).reason is not None]

    t_rank = time.perf_counter()
    n_layouts = _count_layouts(ctx, space, feasible)
    method = space.method
    if method == "auto":
        method = "optuna" if n_layouts > space.max_grid_layouts else "grid"
    ticker = Throttle(progress, "rank layouts", n_layouts if method == "grid" else space.optuna_trials)
    with collector_off():
        cols, layout_of, searched = _rows(ctx, cfg, ev, rejected, feasible, n_layouts, method, seed, notes,
                                          executor, ticker)
        gc.freeze()  # the rows, kept until the table is built (frozen before a collection could scan them)
    v, t_rank, t_ver = _table_and_verify(cfg, ctx, cols, layout_of, executor, seed, verify_top, notes, ticker, t_rank)
    table = v["table"]
    wall = time.perf_counter() - t0
    stats = {
        "method": method, "pool_choices": len(all_choices), "pool_choices_rejected": len(rejected),
        "pool_cost_keys": len({c.cost_key for c in all_choices}), "layouts": n_layouts,
        "layouts_searched": searched, "rows": len(table), "step_cost_calls": ev.step_calls(),
        "pool_phase_s": t_pool, "rank_phase_s": t_rank, "verify_phase_s": t_ver, "wall_s": wall,
        "workers": executor.workers, "seed": seed, "cluster": ctx.cluster.name,
        "device": ctx.cluster.resolve().device.name, "budget_devices": ctx.budget_devices,
    }
    return PlanResult(plan=cfg, table=table, pareto=pareto_front(table), best=v["best"],
                      verification=v["verification"], stats=stats, notes=tuple(notes), deployments=v["deployments"],
                      layouts=v["layouts"], status=v["status"], explanation=v["explanation"])
