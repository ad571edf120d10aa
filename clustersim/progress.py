"""Progress bars for the long commands: rich bars on stderr, fed by the layers' progress callback.

``progress_bars(quiet)`` is a context manager giving a ``simulator.progress.ProgressFn`` that
draws one bar per task (``simulate``, ``pool costs``, ``rank layouts``, ``verify``, ``training
layouts``, ``what-if sweep``, ...), or None when nothing is to be shown; the layers then run
exactly as without progress. The one rule, for every command (``calibrate`` included, through
``progress_mode``):

* bars go to stderr only, so stdout (and ``--json`` output) never holds one;
* they are shown when stderr is a terminal, never with ``--quiet``;
* ``CLUSTERSIM_PROGRESS=always`` shows them even when stderr is not a terminal (logs, tests),
  ``never`` hides them; ``auto`` (the default) is the terminal rule.

Bars are transient: they vanish when the work ends, leaving the command's output. A task whose
count goes back down (the next what-if variant's plan) restarts its bar. Use it around the work
only, inside the CLI's error guard, so that an error line is printed after the bars are gone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from clustersim.texttable import console_is_terminal

#: environment variable: auto (bars when stderr is a terminal), always, never
PROGRESS_ENV = "CLUSTERSIM_PROGRESS"
PROGRESS_MODES = ("auto", "always", "never")


def progress_mode() -> str:
    """``$CLUSTERSIM_PROGRESS`` (auto when unset); a ValueError naming the valid values otherwise."""
    raw = os.environ.get(PROGRESS_ENV, "").strip().lower() or "auto"
    if raw not in PROGRESS_MODES:
        raise ValueError(f"{PROGRESS_ENV}={os.environ.get(PROGRESS_ENV)!r}: not a progress mode "
                         f"(valid: {', '.join(PROGRESS_MODES)})")
    return raw


@contextmanager
def progress_bars(quiet: bool = False, console: Any = None) -> Iterator[Any]:
    """A ProgressFn drawing bars on stderr (``console``: a rich Console to draw on instead, e.g.
    one with ``force_terminal=True`` in tests), or None when bars are not shown."""
    mode = progress_mode()
    if quiet or mode == "never":
        yield None
        return
    if console is None and mode == "auto" and not console_is_terminal(sys.stderr):
        yield None  # what the check below answers, without importing rich (a command's start-up)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if console is None:
        console = Console(stderr=True, force_terminal=True if mode == "always" else None)
    if not console.is_terminal:
        yield None
        return
    # stdout is never redirected into the bars' console (it is stderr's): JSON stays on stdout
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console, transient=True,
                    redirect_stdout=False, redirect_stderr=False)
    with bars:
        yield _Bars(bars)


class _Bars:
    """The ProgressFn over one rich Progress: a bar per task name."""

    def __init__(self, bars: Any):
        self.bars = bars
        self.tasks: dict[str, Any] = {}
        self.done: dict[str, float] = {}

    def __call__(self, task: str, done: float, total: float | None, note: str = "") -> None:
        tid = self.tasks.get(task)
        if tid is None:
            tid = self.tasks[task] = self.bars.add_task(task, total=total, note=note)
        elif done < self.done[task]:
            self.bars.reset(tid, total=total, note=note)
        self.done[task] = done
        self.bars.update(tid, completed=done, total=total, note=note)
