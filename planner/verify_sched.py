"""A verification round on forked local workers, one simulation per task, with speculation.

``planner.rounds`` hands each candidate's check to the workers as two parts (the emitted
deployment; the claimed capacity and the search for the sustainable rate). The claim part is a
chain of runs, each rate chosen from the answers before it (``planner.verify.claim_search``):
as one task, a candidate whose claim fails keeps one worker for 5-6 runs in a row while the
other has finished (h200x32: ~0.3 s of a core idle at the end of the plan). Here every run is a
task of its own: the emitted parts and the claims' first runs (largest first), then each
chain's next rate as soon as its answer is known, ahead of the other waiting tasks; once a
claim has failed, a worker with nothing needed to do runs the rate its search will ask next if
the pending run passes, or if it fails (both known in advance: ``next_rates``). A run is a
pure function of (layout, rate, seed), so the answers, and the rows built from them, are those
of the parts run whole; a speculative run that is not asked for is dropped (a worker still
running one when the round is complete is ended).

The round is steered by a thread of the planning process (it waits on the workers and submits;
the process meanwhile builds the table), begun after the workers are forked (``start_round``).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from planner.verify import claim_figures, claim_search, rate_runner, simulation_hooks, verify_part

__all__ = ["start_round", "run_task", "next_rates"]

#: a round's (cfg, ctx, items) by key while workers forked from this process run its tasks
_ROUNDS: dict[int, tuple] = {}
#: the figures a speculative lookahead assumes for the run it waits on (only ``met`` is read)
_PASS = {"ttft_ms": 0.0, "tpot_ms": 0.0, "met": True, "measured": 0}
_FAIL = {**_PASS, "met": False}


class _Need(Exception):
    """``claim_search`` asked for a rate whose figures are not known yet."""

    def __init__(self, rate: float):
        super().__init__(rate)
        self.rate = rate


def _asked(claimed: float, known: dict[float, dict], asked: list | None = None) -> tuple[float | None, dict | None]:
    """(the next rate the claim's search asks for, None) or (None, its result) when every rate
    it asks is in ``known`` (``asked``: gets the rates it asked for, in order)."""
    def run(rate: float) -> dict:
        if rate not in known:
            raise _Need(rate)
        if asked is not None:
            asked.append(rate)
        return known[rate]

    try:
        return None, claim_search(claimed, run)
    except _Need as need:
        return need.rate, None


def next_rates(claimed: float, known: dict[float, dict], pending: float) -> list[float]:
    """The rates a search under way asks for after ``pending`` (asked, not yet known): if it
    passes (below a failed claim a rate more often holds; a bisection's two answers are as
    likely), then if it fails; each at most once, none already known. None while the claim
    itself is pending: most claims hold, and a run bet on their failing is mostly CPU lost."""
    if pending == claimed:
        return []
    out = []
    for guess in (_PASS, _FAIL):
        rate, _ = _asked(claimed, {**known, pending: guess})
        if rate is not None and rate not in known and rate not in out and rate != pending:
            out.append(rate)
    return out


def run_task(key: int, kind: str, cand: int, arg: Any) -> tuple[dict, float]:
    """In a worker forked from the planning process: one task of round ``key`` (``_ROUNDS``):
    ``kind`` "part": ``verify_part`` of part ``arg`` of candidate ``cand``; "rate": one claim
    run at rate ``arg``. Returns (figures, wall seconds)."""
    from planner.analytic import worker_evaluator
    from planner.executors import worker_heap

    cfg, ctx, items = _ROUNDS[key]
    layout, pid, row, seed = items[cand]
    ev = worker_evaluator(ctx)
    t0 = time.perf_counter()
    with worker_heap():
        if kind == "part":
            got = verify_part(cfg, ctx, arg, layout, pid, row, seed, evaluator=ev)
        else:
            _c, _t, _p, lifetime = claim_figures(row, ctx)
            step_cost, kv = simulation_hooks(ctx, layout, ev)
            got = rate_runner(cfg, ctx, layout, lifetime, seed, step_cost, kv)(arg)
    return got, time.perf_counter() - t0


class _Round:
    """The round's state: what is known, asked, running; steered by ``steer`` (a thread)."""

    def __init__(self, ctx, items: list[tuple], parts: list[tuple], key: int, pool: ProcessPoolExecutor,
                 workers: int):
        self.key, self.pool, self.workers = key, pool, workers
        self.parts = parts  # (part, layout, pid, row, seed) in verify_batches' order
        cand = {item[1]: i for i, item in enumerate(items)}
        self.results: dict[int, dict] = {}  # part index -> its dict
        self.known: dict[int, dict[float, dict]] = {}  # candidate -> rate -> figures
        self.walls: dict[int, dict[float, float]] = {}  # candidate -> rate -> seconds of its run
        self.running: dict[Any, tuple] = {}  # future -> (kind, cand, arg, part index)
        self.waiting = []  # part tasks not yet submitted: (kind, cand, arg, part index)
        self.claims: dict[int, tuple[int, float]] = {}  # part index of a claim -> (candidate, claimed rate)
        for j, (part, _layout, pid, row, _seed) in enumerate(parts):
            c = cand[pid]
            claimed, _t, _p, lifetime = claim_figures(row, ctx)
            if part != "claim":
                self.waiting.append(("part", c, part, j))
            elif not (math.isfinite(lifetime) and math.isfinite(claimed)):
                self.results[j] = {"part": "claim", "runs": 0}  # as ``verify_part`` answers it
            else:
                self.claims[j] = (c, claimed)
                self.known[c] = {}
                self.walls[c] = {}
                self.waiting.append(("rate", c, claimed, j))
        self.done: "queue.Queue[int | BaseException | None]" = queue.Queue()
        self.stop = False

    def _submit(self, kind: str, c: int, arg: Any, j: int) -> None:
        fut = self.pool.submit(run_task, self.key, kind, c, arg)
        self.running[fut] = (kind, c, arg, j)

    def _in_flight(self, c: int, rate: float) -> bool:
        return any(k == "rate" and cc == c and a == rate for k, cc, a, _j in self.running.values())

    def fill(self) -> None:
        """Submit needed tasks (waiting ones in order), then speculative runs, while a worker is free."""
        while self.waiting and len(self.running) < self.workers:
            self._submit(*self.waiting.pop(0))
        if self.waiting or len(self.running) >= self.workers:
            return
        for j, (c, claimed) in self.claims.items():
            if j in self.results:
                continue
            rate, _ = _asked(claimed, self.known[c])
            if rate is None or not self._in_flight(c, rate):
                continue
            for nxt in next_rates(claimed, self.known[c], rate):
                if len(self.running) >= self.workers:
                    return
                if not self._in_flight(c, nxt):
                    self._submit("rate", c, nxt, j)

    def _answer(self, fut) -> None:
        kind, c, arg, j = self.running.pop(fut)
        got, wall_s = fut.result()
        if kind == "part":
            self.results[j] = got
            self.done.put(j)
            return
        self.known[c][arg] = got
        self.walls[c][arg] = wall_s
        claimed, asked = self.claims[j][1], []
        rate, res = _asked(claimed, self.known[c], asked)
        if res is not None and j not in self.results:
            out = {"part": "claim", "runs": 0, **res}
            out["runs"] += out.pop("claim_runs")
            out["wall_s"] = sum(self.walls[c][r] for r in asked)  # the runs the search asked for
            self.results[j] = out
            self.done.put(j)
        elif rate is not None and not self._in_flight(c, rate) \
                and all(not (k == "rate" and cc == c and a == rate) for k, cc, a, _j in self.waiting):
            self.waiting.insert(0, ("rate", c, rate, j))  # a chain's next run goes first

    def steer(self) -> None:
        """Run the round to its end (in a thread); ``done`` gets each finished part's index,
        then None (or the exception that stopped it)."""
        try:
            while not self.stop and len(self.results) < len(self.parts):
                self.fill()
                if not self.running:
                    raise RuntimeError("verification round: nothing running and parts unanswered")
                finished, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    self._answer(fut)
            self.done.put(None)
        except BaseException as exc:  # handed to the waiting caller
            self.done.put(exc)


def start_round(cfg, ctx, items: list[tuple], parts: list[tuple], workers: int, progress=None):
    """Begin verifying ``parts`` ((part, layout, point id, row, seed), as ``verify_batches``
    orders them) of ``items`` on ``workers`` forked workers; returns a ``Pending`` whose
    answer is ``[[part's dict]]`` per part, in order (``planner.rounds.verify``)."""
    from planner.executors import Pending, forking, local_pool, stop_now, task_progress

    key = id(parts)
    _ROUNDS[key] = (cfg, ctx, items)
    n_workers = max(1, min(workers, len(parts)))
    pool = local_pool(n_workers)
    rnd = _Round(ctx, items, parts, key, pool, n_workers)
    try:
        with forking(pool):
            rnd.fill()  # here, in this thread: the workers fork before the steering thread exists
    except BaseException:
        _ROUNDS.pop(key, None)
        raise
    thread = threading.Thread(target=rnd.steer, name="clustersim-verify-round", daemon=True)
    thread.start()

    def finish() -> list:
        try:
            with task_progress(len(parts), "verify", progress) as tick:
                while (got := rnd.done.get()) is not None:
                    if isinstance(got, BaseException):
                        raise got
                    tick(1)
        except BaseException:
            stop()
            raise
        thread.join()
        if rnd.running:  # speculative runs no search asked for: ended, not waited for
            stop_now(pool)
        pool.shutdown()  # (after ``stop_now``: its thread joined before the next fork)
        _ROUNDS.pop(key, None)
        return [[rnd.results[j]] for j in range(len(parts))]

    def stop() -> None:
        rnd.stop = True
        stop_now(pool)
        _ROUNDS.pop(key, None)

    return Pending(finish, stop)

