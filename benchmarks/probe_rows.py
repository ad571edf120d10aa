"""Rows of a device probe (``deepgemm_probe.py``, ``flashmla_probe.py``) appended to a CSV as they
are measured: the header once, each row flushed and echoed, a failing point written with its error
(the run goes on), the points left when ``budget_s`` runs out skipped and named."""

from __future__ import annotations

import csv
import os
import time
import traceback
from collections.abc import Callable, Iterable, Sequence


def append_rows(out: str, fields: Sequence[str], points: Iterable[tuple],
                row_of: Callable[[tuple], tuple | None], error_row: Callable[[tuple, str], tuple],
                budget_s: float = 1e9) -> None:
    """``row_of(point)``: the measured row (None: nothing to write, e.g. a warm-up);
    ``error_row(point, message)``: the row of a point that raised."""
    t_end = time.monotonic() + budget_s
    new = not os.path.exists(out)
    with open(out, "a", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        if new:
            w.writerow(fields)
        for p in points:
            if time.monotonic() > t_end:
                print(f"budget spent: stopped before {p}", flush=True)
                break
            t0 = time.monotonic()
            try:
                row = row_of(p)
            except Exception as e:  # noqa: BLE001 -- one failing point must not lose the rest
                traceback.print_exc()
                row = error_row(p, f"{type(e).__name__}: {e}"[:200])
            if row is None:
                print(f"{p}: {time.monotonic() - t0:.1f} s", flush=True)
                continue
            w.writerow(row)
            f.flush()
            print(",".join(str(v) for v in row), f"({time.monotonic() - t0:.1f} s)", flush=True)
