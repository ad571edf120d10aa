"""Training layout search: maximise tokens/day on a device budget under a memory limit.

(The planner's training counterpart of ``planner.search``; it simulates each layout with
``simulator.training.simulate_trainings``, on the planner's executors.)

``training_search`` enumerates (tp, pp, schedule, ep, sp, zero stage, micro-batch size,
recompute) for a fixed device count, derives dp = devices / (tp x pp x sp x cp), drops
layouts the schema rejects (with the rule's message as ``reason``), simulates the rest with
``simulate_trainings`` (one longest-path pass per pipeline shape, chunks of whole shapes on
the executor's workers) and marks out-of-memory ones infeasible (with the memory reason). The
result is one row per layout, feasible rows first by tokens/day.
"""

from __future__ import annotations

from itertools import product
from typing import Iterable, Sequence

import pandas as pd
from pydantic import ValidationError

import simulator.training as training
from planner.executors import Executor, frozen_heap, start
from simulator.progress import ProgressFn, Throttle
from workloads.models import get_model
from workloads.training import TrainingJob

__all__ = ["training_search", "SEARCH_COLUMNS"]

SEARCH_COLUMNS = ("feasible", "reason", "dp", "tp", "pp", "pp_schedule", "ep", "sp", "sp_kind", "cp", "zero_stage",
                  "micro_batch_size", "recompute", "micro_batches", "step_time_s", "tokens_per_day", "mfu_causal",
                  "mfu_causal_bf16_peak", "bubble_s", "exposed_comm_s", "memory_peak_gb")


def _pow2_upto(n: int) -> list[int]:
    out, v = [], 1
    while v <= n:
        out.append(v)
        v *= 2
    return out


def _degree_options(m, tp_options, pp_options, ep_options) -> tuple[list[int], list[int], list[int]]:
    """tp, pp and ep values to try: the given ones, else powers of two (tp up to the 8-device
    scale-up domain, pp up to min(layers, 64), ep dividing the routed experts; 1 when dense)."""
    tps = list(tp_options) if tp_options is not None else _pow2_upto(8)
    pps = list(pp_options) if pp_options is not None else [p for p in _pow2_upto(64) if p <= m.num_layers]
    if ep_options is not None:
        eps = list(ep_options)
    elif m.moe is not None:
        eps = [e for e in _pow2_upto(m.moe.num_routed_experts) if m.moe.num_routed_experts % e == 0]
    else:
        eps = [1]
    return tps, pps, eps


def training_search(
    model: str,
    cluster: str,
    devices: int,
    seq_len: int,
    global_batch: int,
    memory_limit_gb: float | None = None,
    *,
    precision: str = "bf16",
    schedules: Sequence[str] = ("1f1b", "zb1p", "dualpipe"),
    tp_options: Iterable[int] | None = None,
    pp_options: Iterable[int] | None = None,
    ep_options: Iterable[int] | None = None,
    sp_options: Iterable[int] = (1,),
    sp_kind: str = "ulysses",
    zero_stages: Iterable[int] = (1,),
    micro_batch_sizes: Iterable[int] = (1,),
    recompute: Iterable[str] = ("selective",),
    comm_sms: int | None = None,
    max_layouts: int = 400,
    profile=None,
    progress: ProgressFn | None = None,
    executor: Executor | None = None,
    **job_fields,
) -> pd.DataFrame:
    """Rank training layouts of ``model`` on ``devices`` GPUs of ``cluster`` by tokens/day.

    Defaults: tp in powers of two up to the scale-up domain (8), pp in powers of two up to
    min(layers, 64), ep in powers of two dividing the routed experts (1 for dense models).
    ``memory_limit_gb`` caps usable memory per device (default: HBM minus the job's reserve).
    ``job_fields`` are passed to every ``TrainingJob`` (e.g. ``optimizer_moment_dtype``).
    At most ``max_layouts`` layouts are simulated (in enumeration order; the rest are reported
    infeasible with reason 'not evaluated: max_layouts'). ``progress``: told the layouts looked
    at (task ``training layouts``; ``simulator.progress``). ``executor`` (``planner.executors``):
    its workers simulate the layouts in chunks of whole pipeline shapes (None: this process).
    """
    tps, pps, eps = _degree_options(get_model(model), tp_options, pp_options, ep_options)
    rows = []
    pending: list[tuple[int, TrainingJob]] = []  # (row, job) of the layouts to simulate
    evaluated = 0
    combos = list(product(tps, pps, schedules, eps, list(sp_options), list(zero_stages), list(micro_batch_sizes),
                          list(recompute)))
    ticker = Throttle(progress, "training layouts", len(combos))
    for tp, pp, sched, ep, sp, zero, mbs, rc in combos:
        ticker.tick(len(rows), f"{evaluated} to simulate")
        row = {"dp": 0, "tp": tp, "pp": pp, "pp_schedule": sched, "ep": ep, "sp": sp, "sp_kind": sp_kind, "cp": 1,
               "zero_stage": zero, "micro_batch_size": mbs, "recompute": rc}
        per_replica = tp * pp * sp
        if devices % per_replica:
            rows.append({**row, "feasible": False, "reason": f"tp x pp x sp = {per_replica} does not divide {devices}"})
            continue
        dp = devices // per_replica
        row["dp"] = dp
        try:
            job = TrainingJob(model=model, cluster=cluster, global_batch=global_batch, seq_len=seq_len,
                              precision=precision, micro_batch_size=mbs, comm_sms=comm_sms, recompute=rc,
                              memory_limit_gb=memory_limit_gb,
                              parallelism={"dp": dp, "zero_stage": zero, "tp": tp, "pp": pp, "pp_schedule": sched,
                                           "ep": ep, "sp": sp, "sp_kind": sp_kind},
                              **job_fields)
        except (ValidationError, ValueError) as exc:
            msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            rows.append({**row, "feasible": False, "reason": msg.removeprefix("Value error, ")})
            continue
        if evaluated >= max_layouts:
            rows.append({**row, "feasible": False, "reason": "not evaluated: max_layouts"})
            continue
        evaluated += 1
        pending.append((len(rows), job))
        rows.append(row)
    with frozen_heap():
        _simulate(rows, pending, profile, executor, ticker)
    ticker.finish(f"{evaluated} simulated")
    df = pd.DataFrame(rows, columns=list(SEARCH_COLUMNS))
    df = df.sort_values(["feasible", "tokens_per_day"], ascending=[False, False], na_position="last",
                        kind="stable").reset_index(drop=True)
    return df


def _figures(res) -> dict:
    """The search columns of one simulated layout (or its reason when it could not run)."""
    if isinstance(res, ValueError):
        return {"feasible": False, "reason": str(res)}
    s = res.summary()
    return {"feasible": res.fits_memory, "reason": res.memory_reason,
            "micro_batches": res.micro_batches, "step_time_s": res.step_time_s,
            "tokens_per_day": res.tokens_per_day, "mfu_causal": res.mfu_causal,
            "mfu_causal_bf16_peak": res.mfu_causal_bf16, "bubble_s": s["bubble_s"],
            "exposed_comm_s": res.breakdown_s["exposed_comm"], "memory_peak_gb": res.memory_peak_gb}


def _simulate_chunk(jobs: list[TrainingJob], profile) -> list[dict]:
    """Worker task: the figures of a chunk of layouts (grouped by pipeline shape). Looked up on
    the module at call time, so a caller (the benchmark's old path, a test) can swap it."""
    return [_figures(r) for r in training.simulate_trainings(jobs, profile=profile)]


def _shape(job: TrainingJob) -> tuple:
    p = job.parallelism
    return p.pp_schedule, p.pp, job.micro_batches


def _order(job: TrainingJob) -> tuple:
    """Where a layout goes in the chunk order: whole pipeline shapes together (one DAG compile
    and one batched pass each), and around them the layouts with the same per-layer shape and
    pp, which share their layer templates, cost model and stages (``simulate_trainings``)."""
    p = job.parallelism
    return (job.micro_batch_size, p.tp, p.sp, p.cp, p.pp, *_shape(job))


def _chunks(jobs: list[TrainingJob], n: int, offset: int = 0) -> list[list[int]]:
    """Indices (plus ``offset``) of ``jobs`` in about ``n`` chunks of about equal size, each a run
    of whole pipeline shapes where it can be (a worker compiles each schedule DAG it meets once)."""
    order = sorted(range(len(jobs)), key=lambda i: (_order(jobs[i]), i))
    size = max(1, -(-len(order) // n))
    out: list[list[int]] = []
    for i in order:
        if out and (len(out[-1]) < size or _shape(jobs[out[-1][-1] - offset]) == _shape(jobs[i])):
            out[-1].append(i + offset)
        else:
            out.append([i + offset])
    return out


#: chunks of a search run in this process (progress is told after each)
SERIAL_CHUNKS = 8


def _simulate(rows: list[dict], pending: list[tuple[int, TrainingJob]], profile, executor: Executor | None,
              ticker: Throttle) -> None:
    """Fill in the figures of every pending layout (``rows[i]`` of each ``(i, job)``): in this
    process chunk by chunk, or on the executor's workers (their own progress task, ``simulate
    layouts``), in chunks of whole pipeline shapes either way. The figures are the same."""
    jobs = [job for _, job in pending]
    workers = executor.workers if executor is not None else 1
    done = len(rows) - len(pending)
    if workers > 1 and len(jobs) > 2:
        # one layout here first: it warms the profile's and cost model's lazy tables, which the
        # forked workers then
        # inherit instead of each rebuilding them; the workers take all chunks but one, which
        # this process simulates meanwhile
        chunks = [[0]] + _chunks(jobs[1:], 3 * workers + 1, offset=1)
        results = [_simulate_chunk([jobs[0]], profile)]
        ticker.tick(done + 1, f"simulating {len(jobs) - 1} on {workers} workers")
        pending_chunks = start(executor, _simulate_chunk, [([jobs[i] for i in c], profile) for c in chunks[2:]],
                               desc="simulate layouts")
        try:
            results += [_simulate_chunk([jobs[i] for i in chunks[1]], profile)] if len(chunks) > 1 else []
            results += pending_chunks()
        finally:
            pending_chunks.cancel()
    else:
        chunks, results = _chunks(jobs, SERIAL_CHUNKS), []
        for c in chunks:
            results.append(_simulate_chunk([jobs[i] for i in c], profile))
            done += len(c)
            ticker.tick(done, f"{done - len(rows) + len(pending)} simulated")
    for c, figures in zip(chunks, results):
        for i, f in zip(c, figures):
            row = pending[i][0]
            rows[row] = {**rows[row], **f}
