"""Rows of a device probe (``deepgemm_probe.py``, ``flashmla_probe.py``) appended to a CSV as they
are measured: the header once, each row flushed and echoed, a failing point written with its error
(the run goes on), the points left when ``budget_s`` runs out skipped and named; and
``probe_context``, the command line and timing context of the probes that time through the
calibration suites' own calls (``grouped_fp8_tiles_probe.py``, ``gemm_oos_probe.py``,
``gemm_grid_extend.py``)."""

from __future__ import annotations

import argparse
import csv
import os
import sys
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


def probe_context(doc: str, argv: list[str] | None, out_required: bool = True,
                  more: Callable[[argparse.ArgumentParser], None] | None = None):
    """``(args, ctx)``: the probe's arguments (``--out``, ``--budget-s`` and what ``more`` adds)
    and a CUDA ``calibration.bench.common.BenchContext`` whose deadline is the budget; None where
    no GPU is visible (the caller exits 2, "no GPU" printed)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--out", required=out_required)
    ap.add_argument("--budget-s", type=float, default=300.0)
    if more is not None:
        more(ap)
    args = ap.parse_args(argv)
    import torch

    from calibration.bench.common import BenchContext

    if not torch.cuda.is_available():
        print("no GPU", file=sys.stderr)
        return None
    return args, BenchContext(out_dir=None, device="cuda", deadline_s=time.monotonic() + args.budget_s)
