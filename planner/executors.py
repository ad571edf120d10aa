"""Where sweep tasks run: in-process, a local process pool (default), or Ray tasks.

Every executor has ``map(fn, arg_tuples, desc=...) -> list`` returning ``fn(*args)`` in input
order, whatever order the workers finish in; callers sort by point id on top of that, so
results are deterministic. ``default_executor`` picks Ray when ``ray_address`` or the
``RAY_ADDRESS`` environment variable is set (needs the ``ray`` extra), else a local
``concurrent.futures.ProcessPoolExecutor``. ``progress`` (a ``simulator.progress.ProgressFn``,
which the facade turns into a bar on stderr) is told the tasks done either way, under the task
name ``desc``; None (or a bool, from older callers) reports nothing. Executors are context managers
(``with default_executor(...) as ex:``); leaving the block releases a Ray connection the
executor opened. ``RayExecutor`` documents how it bounds the connection and survives lost tasks.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager, redirect_stdout
from typing import Any, Callable, Iterator, Protocol, Sequence

# the collector off through a plan's pool phase and layout rows (and the workers forked within it):
# their collections (~10 ms each, ~0.1 s of CPU over the processes) found no cyclic garbage, on
# h200x32 and h800, in the planning process and its pool and ranking workers alike
from simulator.progress import ProgressFn, collector_off  # noqa: F401  (planner.executors.collector_off)

__all__ = ["Executor", "SerialExecutor", "LocalExecutor", "RayExecutor", "default_executor", "ray_connect_timeout_s",
           "RAY_CONNECT_TIMEOUT_ENV", "start", "Pending", "frozen_heap", "worker_heap", "collector_off",
           "imports_frozen", "forking", "local_pool", "stop_now", "task_progress"]

#: Environment variable bounding the wait for an existing Ray cluster (seconds).
RAY_CONNECT_TIMEOUT_ENV = "CLUSTERSIM_RAY_CONNECT_TIMEOUT_S"
DEFAULT_RAY_CONNECT_TIMEOUT_S = 20.0


class Executor(Protocol):
    """Runs ``fn(*args)`` for each args tuple; returns results in input order."""

    workers: int

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple], desc: str = "") -> list: ...


def start(executor: Executor, fn: Callable[..., Any], tasks: Sequence[tuple], desc: str | None = "") -> "Pending":
    """``executor.map(fn, tasks)`` begun now where the executor can run tasks while its caller
    works on (``LocalExecutor.start``: worker processes); call the result (a ``Pending``) to
    wait for the results, in input order. Elsewhere the tasks run when it is called. ``desc``
    None: a ``LocalExecutor`` reports no progress (the caller reports the work itself)."""
    begin = getattr(executor, "start", None)
    if begin is not None:
        return begin(fn, tasks, desc)
    return Pending(lambda: executor.map(fn, tasks, desc))


#: open ``frozen_heap`` blocks (the garbage collector's permanent generation is per process)
_FROZEN = [0]
#: the youngest generation's collection threshold within ``frozen_heap`` (CPython's default: 700)
_GEN0_THRESHOLD = 10_000


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Within the block the garbage collector leaves alone what this process holds now
    (``gc.freeze``: modules, profile tables, a plan's memos), and every worker a
    ``LocalExecutor`` forks inside it leaves alone what it inherited: a full collection
    otherwise scans all of it (a plan's process spent ~0.5 s in a few of them, and a forked
    worker's scan copies the pages it touches). Objects are still freed by their reference
    counts; only reference cycles among the frozen ones wait for the block's end. The youngest
    generation is collected every ``_GEN0_THRESHOLD`` allocations rather than 700 (a plan
    allocates millions of short-lived containers, freed by their counts; the collections
    halved: ~0.27 -> 0.13 s of the h200x32 plan's CPU), the thresholds restored at the end."""
    if not _FROZEN[0]:
        before = gc.get_threshold()
        gc.set_threshold(max(before[0], _GEN0_THRESHOLD), *before[1:])
    _FROZEN[0] += 1
    gc.freeze()
    try:
        yield
    finally:
        _FROZEN[0] -= 1
        if not _FROZEN[0]:
            gc.unfreeze()
            gc.set_threshold(*before)


@contextmanager
def imports_frozen() -> Iterator[None]:
    """Imports in the block with the garbage collector off, and what they made frozen after
    (``gc.freeze``): a module's objects live as long as the process, and within ``frozen_heap``
    the youngest generation holds 10^4 of them at a collection, which an import fills many times
    (pandas: ~5 collections of ~10 ms and a middle-generation one of ~50-100 ms that scans them all
    again, in a plan's process while its workers cost pools). The collector's state is restored."""
    with _off_then_frozen(unfreeze_first=False):
        yield


@contextmanager
def _off_then_frozen(unfreeze_first: bool) -> Iterator[None]:
    """The collector off for the block (after emptying the permanent generation into the oldest
    one if ``unfreeze_first``), everything frozen at its end, the collector's state restored."""
    was = gc.isenabled()
    gc.disable()
    if unfreeze_first:
        gc.unfreeze()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


@contextmanager
def worker_heap() -> Iterator[None]:
    """A task's block in a worker forked from a frozen heap (``frozen_heap``; a ``LocalExecutor``
    freezes before it forks), or within ``frozen_heap`` itself: the garbage collector off, and
    the permanent generation emptied into the oldest one (``gc.unfreeze``, O(1)) for the block,
    then everything frozen again (``gc.freeze``, O(1)). Asking how much is frozen
    (``gc.get_freeze_count``, as the simulator's ``collector_paused`` does once a run) walks
    the whole permanent generation: ~18 ms in a plan's verification worker, ~0.2 s of CPU over
    a plan's 11 runs. Elsewhere (nothing known to be frozen) the block changes nothing."""
    import multiprocessing as mp

    forked = mp.parent_process() is not None and (mp.get_start_method(allow_none=True) or "fork") == "fork"
    if not (forked or _FROZEN[0]):
        yield
        return
    with _off_then_frozen(unfreeze_first=True):
        yield


@contextmanager
def task_progress(total: int, desc: str | None, progress: Any) -> Iterator[Callable[[int], None]]:
    """``tick(n)`` after n more tasks are done, reported to ``progress`` (a ProgressFn, or None;
    ``desc`` None: the caller reports the work itself)."""
    if not callable(progress) or total < 1 or desc is None:
        yield lambda n=1: None
        return
    task = desc or "tasks"
    done = [0]
    progress(task, 0, total, "")

    def tick(n: int = 1) -> None:
        done[0] += n
        progress(task, done[0], total, "")

    yield tick


class _Closing:
    """``with executor:`` support; only ``RayExecutor`` has something to release."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        pass


class SerialExecutor(_Closing):
    """Runs tasks one after another in this process (tests, tiny sweeps)."""

    workers = 1

    def __init__(self, progress: ProgressFn | None = None):
        self.progress = progress

    def map(self, fn, tasks, desc: str = "") -> list:
        out = []
        with task_progress(len(tasks), desc, self.progress) as tick:
            for args in tasks:
                out.append(fn(*args))
                tick(1)
        return out


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the parent, which cancels the queue (no traceback per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalExecutor(_Closing):
    """A local ``ProcessPoolExecutor`` (default: one worker per CPU); one task runs inline.

    On an exception or Ctrl-C in the parent, queued tasks are cancelled and the workers ended,
    instead of the pool draining its whole queue first."""

    def __init__(self, workers: int | None = None, progress: ProgressFn | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.progress = progress
        self._forks: bool | None = None

    @property
    def forks(self) -> bool:
        """Whether tasks run in workers forked from this process, which start from its memory
        (``planner.analytic.worker_evaluator``): the start method its pools will use (the one
        set, else the platform's default), without fixing it."""
        if self._forks is not None:
            return self._forks
        import multiprocessing as mp

        method = mp.get_start_method(allow_none=True) or mp.get_all_start_methods()[0]
        return self.workers > 1 and method == "fork"

    @forks.setter
    def forks(self, value: bool) -> None:
        self._forks = value

    def map(self, fn, tasks, desc: str = "") -> list:
        if len(tasks) <= 1 or self.workers == 1:
            return SerialExecutor(self.progress).map(fn, tasks, desc)
        return self.start(fn, tasks, desc)()

    def start(self, fn, tasks, desc: str | None = "") -> "Pending":
        """``map`` in worker processes begun now, even for one task (the caller works on
        meanwhile); call the result to wait for the results. One worker: run when waited for."""
        if not tasks or self.workers == 1:
            return Pending(lambda: SerialExecutor(self.progress).map(fn, tasks, desc))
        pool = local_pool(min(self.workers, len(tasks)))
        with forking(pool):
            futures = [pool.submit(fn, *args) for args in tasks]

        def wait() -> list:
            out: list = [None] * len(futures)
            where = {f: i for i, f in enumerate(futures)}
            try:
                with task_progress(len(futures), desc, self.progress) as tick:
                    for fut in as_completed(futures):
                        out[where[fut]] = fut.result()
                        tick(1)
            except BaseException:
                stop_now(pool)
                raise
            pool.shutdown()
            return out

        return Pending(wait, lambda: stop_now(pool))


def local_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool of ``workers`` whose workers leave Ctrl-C to this process (``stop_now``)."""
    return ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint)


@contextmanager
def forking(pool: ProcessPoolExecutor) -> Iterator[None]:
    """A block that submits ``pool``'s first tasks, when its workers fork: what this process
    holds frozen for them (they leave what they inherit to the GC: ``frozen_heap``), and the
    pool's workers ended if the block fails."""
    gc.freeze()
    try:
        yield
    except BaseException:
        stop_now(pool)
        raise
    finally:
        if not _FROZEN[0]:
            gc.unfreeze()


class Pending:
    """Tasks begun by ``start``: call it to wait for their results; ``cancel()`` ends them
    (the caller failed or was interrupted before waiting)."""

    def __init__(self, wait: Callable[[], list], cancel: Callable[[], None] | None = None):
        self._wait, self._cancel = wait, cancel

    def __call__(self) -> list:
        self._cancel = None
        return self._wait()

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None


def stop_now(pool: ProcessPoolExecutor) -> None:
    """Cancel the queue and end the workers now, so a Ctrl-C (or a second one) exits at once."""
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    workers = list((getattr(pool, "_processes", None) or {}).values())  # private, stable since 3.2
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        proc.terminate()


class RayExecutor(_Closing):
    """Ray tasks on an existing cluster (``address``: ``host:port`` of its head, ``ray://host:10001``
    or ``auto``), a new local Ray instance (``address="local"``), or the instance this process
    already initialised (``address=None``).

    Connecting to an existing cluster is bounded: ``host:port`` is probed first (refused or
    unreachable fails at once), then ``ray.init`` gets ``CLUSTERSIM_RAY_CONNECT_TIMEOUT_S``
    seconds (default 20); either failure is a one-line ``ValueError``. Tasks that Ray loses
    (worker or node death) after ``max_retries`` retries run on ``fallback`` (default: the local
    process pool), with a warning on stderr naming how many; an exception raised by the task
    itself is re-raised as is. Ray prints worker-death notices to ``sys.stdout``; while tasks run
    (or inside ``with executor:``) stdout is pointed at stderr, so machine-readable output stays
    clean, and worker output is not forwarded (``log_to_driver=False``). ``close()`` (or leaving
    the ``with`` block) shuts down a Ray connection this executor opened.
    """

    def __init__(self, address: str | None = None, progress: ProgressFn | None = None, max_retries: int = 3,
                 fallback: "Executor | None" = None, connect_timeout_s: float | None = None, **init_kwargs: Any):
        try:
            import ray
        except ImportError:
            raise ValueError("Ray execution needs the ray extra: pip install 'clustersim[ray]'") from None
        self._ray = ray
        self._owns = False
        self._redirect: Any = None
        if not ray.is_initialized():
            timeout_s = ray_connect_timeout_s() if connect_timeout_s is None else connect_timeout_s
            _connect(ray, address, timeout_s, {"log_to_driver": False, **init_kwargs})
            self._owns = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.progress = progress
        self.max_retries = max_retries
        self.fallback = fallback

    def __enter__(self) -> "RayExecutor":
        self._redirect = redirect_stdout(sys.stderr)
        self._redirect.__enter__()
        return self

    def close(self) -> None:
        """Shut down the Ray connection if this executor opened it; end the stdout redirect."""
        if self._owns and self._ray.is_initialized():
            with redirect_stdout(sys.stderr):
                self._ray.shutdown()
        self._owns = False
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None

    def map(self, fn, tasks, desc: str = "") -> list:
        with redirect_stdout(sys.stderr):
            out, lost, reason = self._run_remote(fn, tasks, desc)
        if lost:
            what = f" ({desc})" if desc else ""
            print(f"warning: Ray lost {len(lost)} of {len(tasks)} tasks{what} after {self.max_retries} retries "
                  f"({reason}); running them on the local pool", file=sys.stderr)
            fallback = self.fallback or LocalExecutor(progress=self.progress)
            for i, res in zip(lost, fallback.map(fn, [tasks[i] for i in lost], desc=f"{desc} (local)")):
                out[i] = res
        return out

    def _run_remote(self, fn, tasks, desc: str) -> tuple[list, list[int], str]:
        """Results in input order, the indices Ray lost, and why."""
        ray = self._ray
        remote = ray.remote(max_retries=self.max_retries)(fn)
        refs = [remote.remote(*args) for args in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        out: list = [None] * len(refs)
        lost: list[int] = []
        reason = ""
        pending = list(refs)
        with task_progress(len(refs), desc, self.progress) as tick:
            while pending:
                try:
                    done, pending = ray.wait(pending, num_returns=1)
                except Exception as exc:  # the connection itself failed: everything left is lost
                    lost += [index[r] for r in pending]
                    reason = _first_line(exc)
                    break
                for ref in done:
                    try:
                        out[index[ref]] = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, ImportError):  # the cluster lacks the code: run it here
                            lost.append(index[ref])
                            reason = _first_line(cause)
                        elif isinstance(cause, Exception):
                            raise cause from None
                        else:
                            raise
                    except ray.exceptions.RayError as exc:
                        lost.append(index[ref])
                        reason = type(exc).__name__
                    tick(1)
        return out, sorted(lost), reason


def ray_connect_timeout_s() -> float:
    """Seconds to wait for an existing Ray cluster: ``$CLUSTERSIM_RAY_CONNECT_TIMEOUT_S`` or 20."""
    raw = os.environ.get(RAY_CONNECT_TIMEOUT_ENV, "")
    if not raw.strip():
        return DEFAULT_RAY_CONNECT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise ValueError(f"{RAY_CONNECT_TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` or ``ray://host:port`` -> (host, port); other forms (``auto``) -> None."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _auth_hint() -> str:
    """Token auth is the usual reason a live cluster refuses us (README: Ray token authentication)."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is None:
        return ("RAY_AUTH_MODE is unset here: a cluster with token auth (Ray >= 2.59 turns it on by default) "
                "needs RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN or ~/.ray/auth_token")
    if mode.lower() == "token":
        return "token auth is on here: RAY_AUTH_TOKEN or ~/.ray/auth_token must hold the cluster's token"
    return f"RAY_AUTH_MODE={mode} here: a cluster with token auth needs RAY_AUTH_MODE=token and its token"


def _connect(ray: Any, address: str | None, timeout_s: float, init_kwargs: dict) -> None:
    """``ray.init`` bounded in time; every failure is one ``ValueError`` line."""
    if address in (None, "local"):  # start a new local instance: Ray's own errors are prompt
        try:
            ray.init(address=address, **init_kwargs)
        except Exception as exc:
            raise ValueError(f"could not start a local Ray instance ({_first_line(exc)})") from None
        return
    hp = _host_port(address)
    if hp is not None:
        try:
            socket.create_connection(hp, timeout=min(timeout_s, 5.0)).close()
        except OSError as exc:
            raise ValueError(f"Ray address {address}: no Ray cluster there ({exc.strerror or exc}); start one "
                             f"with `ray start --head` and pass its address, e.g. 10.0.0.1:6379") from None
    box: dict = {}

    def connect() -> None:
        try:
            box["ctx"] = ray.init(address=address, **init_kwargs)
        except BaseException as exc:  # reported to the waiting thread
            box["err"] = exc

    quiet = _DropMessage("current thread is not the main thread")
    logging.getLogger("ray._private.worker").addFilter(quiet)
    try:
        thread = threading.Thread(target=connect, name="clustersim-ray-connect", daemon=True)
        thread.start()
        thread.join(timeout_s)
    finally:
        logging.getLogger("ray._private.worker").removeFilter(quiet)
    if thread.is_alive():
        raise ValueError(f"Ray address {address}: no answer from Ray within {timeout_s:g} s "
                         f"(set {RAY_CONNECT_TIMEOUT_ENV} to wait longer; {_auth_hint()})")
    if "err" in box:
        raise ValueError(f"Ray address {address}: could not connect ({_first_line(box['err'])}; {_auth_hint()})")


class _DropMessage(logging.Filter):
    """Drops log records containing ``text`` (Ray's warning about connecting off the main thread)."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def default_executor(ray_address: str | None = None, workers: int | None = None,
                     progress: ProgressFn | None = None) -> Executor:
    """Ray when ``ray_address`` or ``RAY_ADDRESS`` is set, else a local process pool."""
    address = ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        return RayExecutor(address, progress=progress)
    return LocalExecutor(workers, progress=progress)
