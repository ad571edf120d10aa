"""What ``calibration.run`` shows: a progress bar per suite (stderr) and the closing summary.

The bar of a suite advances with its elapsed time against the suite's ETA
(``calibration.bench.Suite.eta``; the bar holds at 99% until the suite ends) and shows the rows
its tables hold so far, read from the CSV files as they grow. No bar when stderr is not a
terminal (``--progress always`` draws them anyway, as ``CLUSTERSIM_PROGRESS=always`` asks) or with
``--quiet``; then suite messages go to stderr as plain lines (none with
``--quiet``). The summary goes to stdout: per suite its status, rows and time, then the tables
written and what was skipped and why.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable


def count_rows(path: Path) -> int:
    """Data rows of a CSV table (0 when absent)."""
    try:
        with path.open("rb") as fh:
            return max(0, sum(1 for line in fh if line.strip()) - 1)
    except OSError:
        return 0


def table_rows(out_dir: Path, stems: Iterable[str] | None = None) -> dict[str, int]:
    """Rows per table in ``out_dir`` (all CSVs, or the given stems)."""
    if stems is None:
        return {p.stem: count_rows(p) for p in sorted(Path(out_dir).glob("*.csv"))}
    return {s: count_rows(Path(out_dir) / f"{s}.csv") for s in stems}


@dataclass
class SuiteResult:
    """How one suite ended: ``ok``, ``skipped``, ``stopped`` (time budget) or ``failed``."""

    name: str
    status: str
    seconds: float = 0.0
    rows_new: int = 0
    rows_total: int = 0
    note: str = ""
    notes: list[str] = field(default_factory=list)  # messages the suite logged about skipped parts


class Display:
    """Progress bars on stderr (when ``live``) and the log sink for suite messages."""

    def __init__(self, live: bool, quiet: bool, force_terminal: bool = False):
        self.live, self.quiet = live, quiet
        self._progress = None
        self._console = None
        if live:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._console = Console(stderr=True, force_terminal=force_terminal or None)
            self._progress = Progress(TextColumn("{task.description:<20}"), BarColumn(),
                                      TextColumn("{task.fields[rows]:>6} rows"), TimeElapsedColumn(),
                                      TextColumn("{task.fields[eta]}"), console=self._console, transient=False)

    def __enter__(self) -> "Display":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def log(self, msg: str) -> None:
        if self.quiet:
            return
        if self._console is not None:
            self._console.print(msg, style="dim", markup=False, highlight=False)
        else:
            print(msg, file=sys.stderr, flush=True)

    def track(self, name: str, eta_s: float | None, rows: Callable[[], int]) -> Callable[[str], None]:
        """Show a bar for a running suite; returns ``finish(status)``."""
        if self._progress is None:
            return lambda status: None
        p = self._progress
        total = eta_s if eta_s else 1.0
        eta_txt = f"eta ~{eta_s:.0f}s" if eta_s else "eta ?"
        task = p.add_task(name, total=total, rows=rows(), eta=eta_txt)
        t0, stop = time.monotonic(), threading.Event()

        def tick() -> None:
            while not stop.wait(0.5):
                done = time.monotonic() - t0
                p.update(task, completed=min(done, 0.99 * total) if eta_s else 0.0, rows=rows(),
                         eta=f"eta ~{max(eta_s - done, 0):.0f}s" if eta_s else eta_txt)

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()

        def finish(status: str) -> None:
            stop.set()
            thread.join()
            p.update(task, completed=total, rows=rows(), eta=status)

        return finish


def summary_lines(out_dir: Path, results: list[SuiteResult], before: dict[str, int], after: dict[str, int],
                  seconds: float, device: str, quick: bool) -> list[str]:
    """The closing summary (stdout)."""
    lines = [f"calibrate: {out_dir} in {seconds:.1f} s (device {device}{', quick grids' if quick else ''})"]
    for r in results:
        rows = f"{r.rows_total} rows ({r.rows_new} new)" if r.status in ("ok", "stopped") else ""
        note = r.note if r.status in ("ok", "failed") else "(below)"
        lines.append(f"  {r.name:<20} {r.status:<8} {rows:<22} {r.seconds:7.1f} s  {note}".rstrip())
    written = {k: v for k, v in after.items() if v != before.get(k, 0)}
    new = sum(v - before.get(k, 0) for k, v in written.items())
    lines.append(f"tables written: {len(written)} ({new} new rows; {sum(after.values())} rows in "
                 f"{len(after)} tables)" + (": " + ", ".join(sorted(written)) if written else ""))
    skipped = [r for r in results if r.status in ("skipped", "stopped")]
    for r in skipped:
        lines.append(f"skipped: {r.name}: {r.note}")
    for r in results:
        for n in r.notes:
            lines.append(f"note: {r.name}: {n}")
    return lines
