"""The progress callback: how long work says how far it is, without printing anything.

The serving engine, the training search, the planner and its executors take an optional
``progress`` callable and call it as ``progress(task, done, total, note)``:

* ``task``: the phase, which is also the bar's label (``simulate``, ``pool costs``, ``rank
  layouts``, ``verify``, ``training layouts``, ``what-if sweep``, ...); a task whose ``done``
  goes back down has started again (the next what-if variant's plan);
* ``done`` / ``total``: units finished and expected (``total`` None when unknown);
* ``note``: a few words (``"12.5 s simulated"``).

These layers never import rich and never print: ``clustersim.progress`` (the facade) turns the
calls into bars on stderr, or passes None when nothing is shown, and then the work runs exactly
as without progress. ``Throttle`` bounds what a loop pays: one clock read per item, and a
forwarded call at most every ``interval_s`` of wall time (the first and the last always);
``run_events`` does the same for a simpy event loop.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: ``progress(task, done, total, note)``
ProgressFn = Callable[[str, float, float | None, str], None]

#: wall seconds between two forwarded updates of one task (a bar refreshes at about 10 Hz)
PROGRESS_INTERVAL_S = 0.1
#: simpy events processed between two reads of the wall clock in ``run_events``
EVENTS_PER_CHECK = 512


class Throttle:
    """One task's reporter: ``tick(done, note)`` per item, forwarded at most every ``interval_s``;
    ``finish(note)`` reports the end. A no-op when ``progress`` is None."""

    __slots__ = ("_last_s", "done", "interval_s", "progress", "task", "total")

    def __init__(self, progress: ProgressFn | None, task: str, total: float | None,
                 interval_s: float = PROGRESS_INTERVAL_S):
        self.progress = progress if callable(progress) else None  # a bool from older callers: none
        self.task, self.total, self.interval_s = task, total, interval_s
        self.done = 0.0
        self._last_s = time.monotonic()
        if self.progress is not None:
            self.progress(task, 0, total, "")

    def tick(self, done: float, note: str = "") -> None:
        self.done = done
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self._last_s >= self.interval_s:
            self._last_s = now
            self.progress(self.task, done, self.total, note)

    def finish(self, note: str = "") -> None:
        if self.progress is not None:
            self.progress(self.task, self.total if self.total is not None else self.done, self.total, note)


@contextmanager
def collector_off() -> Iterator[None]:
    """The garbage collector off in the block (and in processes forked within it), its state
    restored after: for blocks that allocate many containers freed by their reference counts and
    no cycles (a training DAG's ~10^5 tuples, a plan's pool costs and layout rows)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextmanager
def collector_paused() -> Iterator[None]:
    """The event loop's block: the garbage collector leaves alone what the process holds when it
    starts (``gc.freeze``: modules, profile tables, the run's arrays and memos) and does not run
    inside it (``gc.disable``). A run frees its short-lived objects (events, plans, op lists) by
    their reference counts and makes no reference cycles per step; its collections (a few full
    ones over a growing heap of cost-model memos, ~0.3 s of a 100k-request Llama run) found
    nothing to free. Both are undone at the end (a caller that had disabled it keeps it so; a
    caller that had frozen objects, as the planner's ``frozen_heap`` does, finds them, and what the
    run allocated, still frozen: its own block unfreezes them)."""
    was, outer = gc.isenabled(), gc.get_freeze_count() > 0
    gc.disable()
    gc.freeze()
    try:
        yield
    finally:
        gc.freeze()  # what the block allocated too (else the next young collection scans all of it)
        if not outer:
            gc.unfreeze()  # all of it to the oldest generation
        if was:
            gc.enable()


def run_events(env, report: Callable[[], None] | None) -> None:
    """``env.run()`` of a simpy Environment (``step()`` until ``EmptySchedule``, as simpy runs it),
    calling ``report()`` first, at most every ``PROGRESS_INTERVAL_S`` of wall time (the clock is
    read once per ``EVENTS_PER_CHECK`` events) and last. Plain ``env.run()`` when ``report`` is
    None. The events and their order are the same either way."""
    if report is None:
        env.run()
        return
    from simpy.core import EmptySchedule

    step = env.step
    report()
    last = time.monotonic()
    try:
        while True:
            for _ in range(EVENTS_PER_CHECK):
                step()
            now = time.monotonic()
            if now - last >= PROGRESS_INTERVAL_S:
                last = now
                report()
    except EmptySchedule:
        pass
    report()
