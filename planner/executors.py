"""Where sweep tasks run: in-process, a local process pool (default), or Ray tasks.

Every executor has ``map(fn, arg_tuples, desc=...) -> list`` returning ``fn(*args)`` in input
order, whatever order the workers finish in; callers sort by point id on top of that, so
results are deterministic. ``default_executor`` picks Ray when ``ray_address`` or the
``RAY_ADDRESS`` environment variable is set (needs the ``ray`` extra), else a local
``concurrent.futures.ProcessPoolExecutor``. A rich progress bar (on stderr, only when it is a
terminal unless ``progress=True``) shows tasks done either way.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Protocol, Sequence

__all__ = ["Executor", "SerialExecutor", "LocalExecutor", "RayExecutor", "default_executor"]


class Executor(Protocol):
    """Runs ``fn(*args)`` for each args tuple; returns results in input order."""

    workers: int

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple], desc: str = "") -> list: ...


@contextmanager
def _progress(total: int, desc: str, enabled: bool | None) -> Iterator[Callable[[int], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    show = console.is_terminal if enabled is None else enabled
    if not show or total <= 1:
        yield lambda n=1: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(desc or "tasks", total=total)
        yield lambda n=1: bar.advance(task, n)


class SerialExecutor:
    """Runs tasks one after another in this process (tests, tiny sweeps)."""

    workers = 1

    def __init__(self, progress: bool | None = None):
        self.progress = progress

    def map(self, fn, tasks, desc: str = "") -> list:
        out = []
        with _progress(len(tasks), desc, self.progress) as tick:
            for args in tasks:
                out.append(fn(*args))
                tick(1)
        return out


class LocalExecutor:
    """A local ``ProcessPoolExecutor`` (default: one worker per CPU); one task runs inline."""

    def __init__(self, workers: int | None = None, progress: bool | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.progress = progress

    def map(self, fn, tasks, desc: str = "") -> list:
        if len(tasks) <= 1 or self.workers == 1:
            return SerialExecutor(self.progress).map(fn, tasks, desc)
        out: list = [None] * len(tasks)
        with ProcessPoolExecutor(max_workers=min(self.workers, len(tasks))) as pool, \
                _progress(len(tasks), desc, self.progress) as tick:
            futures = {pool.submit(fn, *args): i for i, args in enumerate(tasks)}
            for fut in as_completed(futures):
                out[futures[fut]] = fut.result()
                tick(1)
        return out


class RayExecutor:
    """Ray tasks on an existing cluster (``address``, e.g. ``ray://head:10001`` or ``auto``), or a
    local Ray instance when ``address`` is None and Ray is already initialised."""

    def __init__(self, address: str | None = None, progress: bool | None = None, **init_kwargs: Any):
        try:
            import ray
        except ImportError:
            raise ValueError("Ray execution needs the ray extra: pip install 'clustersim[ray]'") from None
        self._ray = ray
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, **init_kwargs)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.progress = progress

    def map(self, fn, tasks, desc: str = "") -> list:
        ray = self._ray
        remote = ray.remote(fn)
        refs = [remote.remote(*args) for args in tasks]
        pending = list(refs)
        with _progress(len(refs), desc, self.progress) as tick:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                tick(len(done))
        return ray.get(refs)


def default_executor(ray_address: str | None = None, workers: int | None = None,
                     progress: bool | None = None) -> Executor:
    """Ray when ``ray_address`` or ``RAY_ADDRESS`` is set, else a local process pool."""
    address = ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        return RayExecutor(address, progress=progress)
    return LocalExecutor(workers, progress=progress)
