"""Every file the CLI writes, and the one way it writes them.

``OutputDir.prepare(path)`` checks an ``--out`` directory before any work is done: it must be a
directory (created with its parents if missing) in which a file can be created; otherwise a
one-line ``ValueError``. Once the results exist, a writer below clears the files its command
owns (a fixed set of names per command, ``SIMULATE_FILES``, ``PLAN_FILES``, ``WHATIF_FILES``),
so no stale file of an earlier run sits beside fresh ones (``best_deployment.yaml`` after a plan
that found nothing), and writes each new file atomically: a temporary file in the same
directory, flushed to disk, then ``os.replace``. An interrupted or failed write leaves complete
files or none, never a cut-off one. Files a command does not own are never touched.

This module is the only code that writes files, apart from the profile directory that
``calibrate`` measures into: calibration sits below the facade and may not import it, so it
writes through ``calibration.store`` (the atomic-write rule used here too, resumable
measurement tables, metadata sidecars). ``clustersim.api`` (the jobs) and the layers below
return data; the plots come as PNG bytes (``planner.plot``). ``tests/test_code_health.py``
holds the rule: no other module creates, replaces or removes a file.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from calibration.store import write_atomic


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, +-inf) replaced by None and numpy scalars as Python."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "item") and not hasattr(obj, "__len__"):  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(data: Any, indent: int | None = 2) -> str:
    """Strict JSON (RFC 8259): NaN and infinities become null, never ``NaN``/``Infinity``."""
    return json.dumps(finite(data), indent=indent, default=str, allow_nan=False)


__all__ = ["finite", "to_json", "SIMULATE_FILES", "PLAN_FILES", "PLAN_CSV_ROWS", "WHATIF_FILES", "CHECK_FILES",
           "PROFILE_CHECK_FILES", "REPORT", "OutputDir", "write_table_csv", "write_simulation", "write_plan", "write_training_plan",
           "write_whatif", "write_check", "write_profile_check"]

#: ``--report``: one self-contained HTML page (``clustersim.report``), owned by every command that
#: writes one, so a run without ``--report`` leaves no stale report beside fresh results
REPORT = "report.html"
#: ``clustersim simulate --out``: serving (summary, requests, time series, trace) and training
#: (summary, per-device, per-stage and memory tables) share one set, so switching kinds in one
#: directory leaves nothing of the other behind.
SIMULATE_FILES = ("summary.json", "requests.csv", "timeseries.csv", "trace.json", "per_device.csv", "stages.csv",
                  "memory.csv", "report.html", "cache.csv")
#: ``clustersim plan --out`` (serving plans write all of them, training plans ``ranked.csv``).
PLAN_FILES = ("ranked.csv", "ranked.parquet", "pareto.csv", "pareto.png", "plan.json", "best_deployment.yaml",
              "report.html")
#: rows of a serving plan's ``ranked.csv`` by default (the top of the ranking; ``ranked.parquet``
#: holds every row: a large plan's table is 10^4-10^5 rows, tens of MB as CSV)
PLAN_CSV_ROWS = 1000
#: ``clustersim what-if --out``, per mode: a capacity run keeps an earlier sweep's files.
WHATIF_FILES = {kind: (f"whatif_{kind}.csv", f"whatif_{kind}.png", REPORT) for kind in ("capacity", "sweep", "compare")}
#: ``clustersim check --out``: every check as CSV and JSON, and the report when asked
CHECK_FILES = ("check.csv", "check.json", REPORT)
#: ``clustersim calibrate --check``: predicted vs measured steps, in the profile directory
PROFILE_CHECK_FILES = ("check.csv", "check.json")


class OutputDir:
    """A checked output directory; records which files this run removed and wrote."""

    def __init__(self, path: str | Path, created: bool = False):
        self.path = Path(path)
        self.created = created  # ``prepare`` made the directory (``discard`` may remove it)
        self.planned: tuple[str, ...] = ()
        self.written: list[str] = []
        self.removed: list[str] = []

    @classmethod
    def prepare(cls, path: str | Path) -> "OutputDir":
        """Create ``path`` (and parents) and prove a file can be created there, before any work."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise ValueError(f"--out {p}: exists and is not a directory (give a directory path)")
        created = not p.exists()
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"--out {p}: cannot create the directory ({exc.strerror or exc})") from None
        import secrets  # here: it imports hashlib (OpenSSL), which a command without --out never needs

        probe = p / f".clustersim-probe-{secrets.token_hex(4)}"
        try:
            fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ValueError(f"--out {p}: cannot write there ({exc.strerror or exc})") from None
        return cls(p, created)

    def discard(self) -> None:
        """Remove the directory if ``prepare`` created it and nothing was put in it (a command
        that failed before its work, e.g. ``calibrate`` without a GPU, leaves nothing behind)."""
        if self.created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    def begin(self, owned: Iterable[str], planned: Iterable[str]) -> None:
        """Remove the command's own files left by an earlier run; ``planned`` is what follows."""
        planned = tuple(planned)
        for name in owned:
            f = self.path / name
            if f.is_dir() and not f.is_symlink():
                raise ValueError(f"--out {self.path}: {name} is a directory; it is an output file of this command")
        for name in owned:
            f = self.path / name
            if f.is_symlink() or f.exists():
                try:
                    f.unlink()
                except OSError as exc:
                    raise ValueError(f"--out {self.path}: cannot remove the earlier {name} "
                                     f"({exc.strerror or exc})") from None
                self.removed.append(name)
        self.planned = planned

    def write_text(self, name: str, text: str) -> None:
        self.write_with(name, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def write_csv(self, name: str, df: Any) -> None:
        self.write_with(name, lambda tmp: write_table_csv(df, tmp))

    def write_bytes(self, name: str, data: bytes) -> None:
        self.write_with(name, lambda tmp: tmp.write_bytes(data))

    def write_with(self, name: str, write: Callable[[Path], Any]) -> None:
        """``write(tmp_path)`` makes the file (same suffix as ``name``); it then replaces ``name``
        (``calibration.store.write_atomic``: flushed to disk first, no partial file)."""
        try:
            write_atomic(self.path / name, write)
        except OSError as exc:
            raise ValueError(f"--out {self.path}: could not write {name} ({exc.strerror or exc})") from None
        self.written.append(name)

    def report(self) -> str:
        """One line: what this run wrote and did not write (used when it is interrupted)."""
        where = f"{self.path}/"
        if not self.planned:
            return f"nothing written to {where}"
        missing = [n for n in self.planned if n not in self.written]
        gone = [n for n in self.removed if n not in self.written]
        msg = f"complete in {where}: {', '.join(self.written) or 'none'}; not written: {', '.join(missing) or 'none'}"
        if gone:
            msg += f"; removed from an earlier run: {', '.join(gone)}"
        return msg + " (no partial files)"


def write_table_csv(table: Any, path: Path) -> None:
    """``table.to_csv(path, index=False)``'s bytes, streamed: a table with ``column_chunks()`` (the
    serving simulator's steps, ``simulator.steplog.StepTable``) hands its columns over a chunk at a time, a DataFrame
    is formatted a chunk of rows at a time (``clustersim.csvtext``); pandas writes what that
    module leaves to it."""
    from clustersim.csvtext import Unsupported, frame_chunks, table_chunks

    chunks = table_chunks(table) if hasattr(table, "column_chunks") else frame_chunks(table)
    if chunks is not None:
        try:
            with open(path, "wb") as fh:
                for text in chunks:
                    fh.write(text)
            return
        except Unsupported:  # a value left to pandas further down: write the file again
            pass
    (table.frame() if hasattr(table, "column_chunks") else table).to_csv(path, index=False)


def can_plot() -> bool:
    """Whether the what-if sweep and comparison PNGs can be drawn (matplotlib)."""
    return importlib.util.find_spec("matplotlib") is not None


def can_draw_pareto() -> bool:
    """Whether a plan's ``pareto.png`` can be drawn (Pillow: ``planner.chart``)."""
    return importlib.util.find_spec("PIL") is not None


def write_simulation(out: OutputDir, kind: str, result: Any, summary: dict, trace: bool = False,
                     report: str | None = None) -> list[str]:
    """``summary.json``; serving: per-request and time-series CSVs (with a prefix cache, also
    ``cache.csv``: one row per prefix lookup, ``simulator.prefix_cache``); training: per-device,
    per-stage and memory CSVs; asked, a Chrome trace (serving: iterations and request events;
    training: the pipeline timeline) and ``report.html`` (``report``: its text)."""
    frames: list[tuple[str, Any]] = []
    if kind == "serving":
        frames = [("requests.csv", result.requests), ("timeseries.csv", result.step_table)]
        if "prefix_cache" in result.summary:
            frames.append(("cache.csv", result.cache))
    else:
        for name in ("per_device", "stages", "memory"):
            df = getattr(result, name, None)
            if df is not None and hasattr(df, "to_csv"):
                frames.append((f"{name}.csv", df))
    with_trace = bool(trace)
    out.begin(SIMULATE_FILES, ["summary.json"] + [n for n, _ in frames] + (["trace.json"] if with_trace else [])
              + ([REPORT] if report else []))
    out.write_text("summary.json", to_json(summary) + "\n")
    for name, df in frames:
        out.write_csv(name, df)
    if with_trace and kind == "serving":
        from simulator import to_chrome_trace

        out.write_text("trace.json", json.dumps(to_chrome_trace(result)))
    elif with_trace:
        from simulator.training.result import to_chrome_trace as training_trace

        out.write_text("trace.json", json.dumps(training_trace(result)))
    if report:
        out.write_text(REPORT, report)
    return list(out.written)


def write_plan(out: OutputDir, result: Any, plot: bool = True, report: str | None = None,
               csv_rows: int = PLAN_CSV_ROWS, plotter: Any = None) -> list[str]:
    """The whole ranked table (``ranked.parquet``), its first ``csv_rows`` rows as
    ``ranked.csv`` (0: every row), the Pareto front (CSV + PNG when matplotlib is there), plan
    JSON, best deployment YAML, and ``report.html`` when ``report`` (its text) is given.
    ``plotter``: a ``clustersim.plotproc.PlotProcess`` that draws the PNG while the rest is
    written (else, or when it fails, it is drawn here)."""
    best = result.best_yaml()
    plot = plot and len(result.pareto) > 0 and can_draw_pareto()  # no feasible layout: nothing to plot (the CLI says why)
    planned = ["ranked.parquet", "ranked.csv", "pareto.csv", "plan.json"] + \
        (["best_deployment.yaml"] if best else []) + (["pareto.png"] if plot else []) + ([REPORT] if report else [])
    out.begin(PLAN_FILES, planned)
    if plot and plotter is not None:
        from planner.plot import pareto_data

        plotter.draw(pareto_data(result))
    out.write_with("ranked.parquet", lambda tmp: write_parquet(result.table, tmp))
    out.write_csv("ranked.csv", result.table.head(csv_rows) if csv_rows else result.table)
    out.write_csv("pareto.csv", result.pareto)
    out.write_text("plan.json", to_json(result.to_dict()) + "\n")
    if best:
        out.write_text("best_deployment.yaml", best)
    if plot:
        png = plotter.png() if plotter is not None else None
        if png is None:
            from planner.plot import plot_pareto

            png = plot_pareto(result)
        out.write_bytes("pareto.png", png)
    if report:
        out.write_text(REPORT, report)
    return list(out.written)


def write_parquet(df: Any, path: Path, rows_per_group: int = 16384) -> None:
    """``df`` as a Parquet file (pyarrow; zstd), without its index, converted a row group at a
    time (a large table is never held twice in memory)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("writing ranked.parquet needs pyarrow (a clustersim dependency): "
                         "pip install pyarrow") from None
    schema = pa.Schema.from_pandas(df, preserve_index=False)
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, max(len(df), 1), rows_per_group):
            part = df.iloc[start:start + rows_per_group]
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))


def write_training_plan(out: OutputDir, table: Any, report: str | None = None) -> list[str]:
    """The ranked training layouts (``ranked.csv``) and, asked, ``report.html``."""
    out.begin(PLAN_FILES, ["ranked.csv"] + ([REPORT] if report else []))
    out.write_csv("ranked.csv", table)
    if report:
        out.write_text(REPORT, report)
    return list(out.written)


def write_whatif(out: OutputDir, kind: str, df: Any, plot: bool = True, report: str | None = None) -> list[str]:
    """``whatif_<kind>.csv``, for sweeps and comparisons ``whatif_<kind>.png``, and ``report.html``
    when ``report`` (its text) is given."""
    csv_name, png_name, _ = WHATIF_FILES[kind]
    plot = plot and kind in ("sweep", "compare") and can_plot()
    out.begin(WHATIF_FILES[kind], [csv_name] + ([png_name] if plot else []) + ([REPORT] if report else []))
    out.write_csv(csv_name, df)
    if plot:
        from planner import plot as plots

        draw = plots.plot_sweep if kind == "sweep" else plots.plot_compare
        out.write_bytes(png_name, draw(df))
    if report:
        out.write_text(REPORT, report)
    return list(out.written)


def write_check(out: OutputDir, run: Any, report: str | None = None) -> list[str]:
    """``clustersim check``: ``check.csv`` (one row per check), ``check.json`` (counts, summary
    per family, every check) and, asked, ``report.html``."""
    out.begin(CHECK_FILES, ["check.csv", "check.json"] + ([REPORT] if report else []))
    out.write_csv("check.csv", run.table())
    out.write_text("check.json", to_json(run.to_dict()) + "\n")
    if report:
        out.write_text(REPORT, report)
    return list(out.written)


def write_profile_check(profile_dir: str | Path, df: Any, summary: dict) -> list[str]:
    """``calibrate --check``: ``check.csv`` (one row per step) and ``check.json`` (summary and
    rows) in the profile directory (``clustersim.validation.predict_check`` made them)."""
    out = OutputDir(profile_dir)
    cols = ["family", "case", "point", "measured_s", "predicted_s", "error"]
    out.begin((), PROFILE_CHECK_FILES)
    out.write_with("check.csv", lambda tmp: df[cols].to_csv(tmp, index=False, float_format="%.6g"))
    doc = {**summary, "rows": json.loads(df[cols].to_json(orient="records"))}
    out.write_text("check.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return list(out.written)
