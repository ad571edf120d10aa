"""Request traces in the formats people publish, read into arrays with one-line row errors.

``workload.arrival: {kind: trace, format: ..., path: ...}`` names the file and its format:

| format | file | trace clock (s) | prompt | output | also |
|---|---|---|---|---|---|
| ``csv`` (default) | CSV with a header, or JSON lines (``.jsonl``/``.json``/``.ndjson``) | ``arrival_s`` | ``prompt_tokens`` | ``output_tokens`` | ``cached_tokens`` (optional) |
| ``azure`` | Azure LLM inference traces 2023/2024 (AzurePublicDataset, CSV) | ``TIMESTAMP`` (a date-time; seconds since the earliest row) | ``ContextTokens`` | ``GeneratedTokens`` | |
| ``burstgpt`` | BurstGPT (CSV) | ``Timestamp`` (seconds) | ``Request tokens`` | ``Response tokens`` | rows with 0 response tokens (failed requests) are dropped |
| ``mooncake`` | Mooncake FAST'25 traces (JSON lines) | ``timestamp`` (ms) / 1000 | ``input_length`` | ``output_length`` | ``hash_ids``: one hash per ``block_tokens`` (512) prompt tokens, kept per request |

Other columns (BurstGPT's ``Model``, ``Log Type``; newer files' session columns) are ignored.
Column names were checked against the datasets' own READMEs and files (AzureLLMInferenceDataset2023.md
/ 2024.md, HPMLL/BurstGPT README, kvcache-ai/Mooncake FAST25-release/traces).

``load_trace(arrival)`` sorts the rows by time (stable), keeps those with
``start_s <= t < start_s + duration_s`` on the trace clock, and replays them at
``(t - start_s) / speedup`` simulated seconds. ``workload_trace(workload)`` then applies the
workload's own ``duration_s`` (simulated seconds) and ``num_requests`` (the first N), as the
simulator replays it. Token counts are whole numbers >= 0; a prompt or output of 0 tokens is
replayed as 1 (a request prefills and emits at least one token), ``cached_tokens`` is clipped
to ``[0, prompt - 1]``.

Every bad row is one ``ValueError`` line ``file:line: column: problem``; files are bounded by
``workloads.limits`` (``MAX_TRACE_BYTES``, ``MAX_TRACE_ROWS``, ``MAX_TRACE_BLOCK_HASHES``).
Reading a file is memoised by (path, size, mtime) so a plan, its what-if variants and their
verification runs parse it once; the cached arrays are read-only.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workloads import limits as L

TRACE_FORMATS = ("csv", "azure", "burstgpt", "mooncake")
#: tokens per ``hash_ids`` block in Mooncake's traces (FAST25-release README)
MOONCAKE_BLOCK_TOKENS = 512
_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")

#: CSV formats: (time column, prompt column, output column), and the columns that identify them
_CSV_COLUMNS = {
    "csv": ("arrival_s", "prompt_tokens", "output_tokens"),
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    "burstgpt": ("Timestamp", "Request tokens", "Response tokens"),
}
_MOONCAKE_KEYS = ("timestamp", "input_length", "output_length", "hash_ids")


@dataclass(frozen=True)
class BlockHashes:
    """Per-request prefix block hashes (Mooncake ``hash_ids``), stored flat: request r's hashes
    are ``ids[offsets[r]:offsets[r + 1]]``, one per ``block_tokens`` prompt tokens (the last
    block may be partial). Equal leading hashes mean a shared prompt prefix."""

    block_tokens: int
    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.offsets.size) - 1

    def of(self, r: int) -> tuple[int, ...]:
        """The block hashes of request ``r``, first block first."""
        return tuple(self.ids[self.offsets[r]:self.offsets[r + 1]].tolist())

    def as_tuples(self) -> tuple[tuple[int, ...], ...]:
        return tuple(self.of(r) for r in range(len(self)))

    def take(self, index: np.ndarray) -> BlockHashes:
        """The hashes of requests ``index`` (in that order)."""
        index = np.asarray(index, dtype=np.int64)
        starts, ends = self.offsets[index], self.offsets[index + 1]
        lengths = ends - starts
        offsets = np.zeros(index.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        pos = np.repeat(starts - offsets[:-1], lengths) + np.arange(int(offsets[-1]), dtype=np.int64)
        return BlockHashes(self.block_tokens, _frozen(self.ids[pos]), _frozen(offsets))


@dataclass(frozen=True)
class Trace:
    """The requests of a trace: arrival times (s), prompt, output and cached tokens (int64), and
    Mooncake's block hashes (None for the other formats). ``rows``: data rows the file holds;
    ``dropped``: rows not replayed (BurstGPT's failed requests)."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    cached_tokens: np.ndarray
    block_hashes: BlockHashes | None = None
    rows: int = 0
    dropped: int = 0

    @property
    def num_requests(self) -> int:
        return int(self.arrival_s.size)

    def take(self, index: np.ndarray, arrival_s: np.ndarray | None = None) -> Trace:
        """Requests ``index`` (in that order), with new arrival times if given."""
        index = np.asarray(index, dtype=np.int64)
        return Trace(_frozen(self.arrival_s[index] if arrival_s is None else np.asarray(arrival_s, dtype=float)),
                     _frozen(self.prompt_tokens[index]), _frozen(self.output_tokens[index]),
                     _frozen(self.cached_tokens[index]),
                     None if self.block_hashes is None else self.block_hashes.take(index), self.rows, self.dropped)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class TraceError(ValueError):
    """A trace file that cannot be replayed; its message is one line naming file and line."""


def _error(path: Path, line: int | None, column: str, problem: str) -> TraceError:
    where = f"{path}:{line}" if line is not None else str(path)
    return TraceError(f"{where}: {column}: {problem}" if column else f"{where}: {problem}")


# ------------------------------------------------------------------------------ public entry points
def load_trace(arrival) -> Trace:
    """The requests of a validated ``TraceArrival``, sorted, sliced and time-scaled (see the module
    docstring); a TraceError when the slice holds no request."""
    tr = read_trace_file(arrival.path, arrival.format, getattr(arrival, "block_tokens", MOONCAKE_BLOCK_TOKENS))
    order = np.argsort(tr.arrival_s, kind="stable")
    t = tr.arrival_s[order]
    start = float(arrival.start_s)
    keep = t >= start
    if arrival.duration_s is not None:
        keep &= t < start + float(arrival.duration_s)
    if not keep.any():
        span = f"its {tr.num_requests:,} requests arrive from {t[0]:g} to {t[-1]:g} s" if t.size else "it holds none"
        end = "" if arrival.duration_s is None else f" to {start + float(arrival.duration_s):g}"
        raise _error(Path(arrival.path), None, "", f"no request to replay from start_s {start:g}{end} s of the trace "
                                                  f"({span}; set workload.arrival.start_s / duration_s)")
    replay_s = (t[keep] - start) / float(arrival.speedup)
    if replay_s[-1] > L.MAX_DURATION_S:
        raise _error(Path(arrival.path), None, "", f"the slice replays over {replay_s[-1]:,.0f} s at speedup "
                                                  f"{arrival.speedup:g}, longer than a simulation keeps time precisely "
                                                  f"(at most {L.MAX_DURATION_S:,.0f} s; raise speedup or set duration_s)")
    return tr.take(order[keep], replay_s)


def workload_trace(workload) -> Trace:
    """What a simulation of ``workload`` (trace arrival) replays: ``load_trace``, then the
    workload's ``duration_s`` (simulated seconds) and ``num_requests``; bounded by
    ``MAX_REQUESTS`` and ``MAX_SIMULATED_SEQUENCES``."""
    tr = load_trace(workload.arrival)
    n = tr.num_requests
    if workload.duration_s is not None:
        n = int(np.searchsorted(tr.arrival_s, workload.duration_s, side="right"))
    if workload.num_requests is not None:
        n = min(n, workload.num_requests)
    if n < tr.num_requests:
        tr = tr.take(np.arange(n))
    path = Path(workload.arrival.path)
    if n > L.MAX_REQUESTS:
        raise _error(path, None, "", f"{n:,} requests to replay, more than one simulation may generate (at most "
                                     f"{L.MAX_REQUESTS:,}; set workload.num_requests or workload.arrival.duration_s)")
    if n * workload.samples_per_request > L.MAX_SIMULATED_SEQUENCES:
        raise _error(path, None, "", f"{n * workload.samples_per_request:,} sequences (requests x samples_per_request), "
                                     f"more than one simulation may decode (at most {L.MAX_SIMULATED_SEQUENCES:,})")
    return tr


def read_trace_file(path: str | Path, fmt: str = "csv", block_tokens: int = MOONCAKE_BLOCK_TOKENS) -> Trace:
    """All rows of a trace file in file order, times on the trace clock (seconds)."""
    if fmt not in TRACE_FORMATS:
        raise ValueError(f"unknown trace format {fmt!r} (valid: {', '.join(TRACE_FORMATS)})")
    p = Path(path)
    if not p.exists():
        raise TraceError(f"trace file {p} does not exist")
    if not p.is_file():
        raise TraceError(f"trace file {p} is not a file")
    st = p.stat()
    if st.st_size > L.MAX_TRACE_BYTES:
        raise _error(p, None, "", f"{st.st_size:,} bytes, larger than a trace may be (at most {L.MAX_TRACE_BYTES:,}; "
                                  f"cut the file, e.g. with head)")
    return _read_cached(str(p.resolve()), st.st_size, st.st_mtime_ns, fmt, int(block_tokens))


@functools.lru_cache(maxsize=2)
def _read_cached(path: str, size: int, mtime_ns: int, fmt: str, block_tokens: int) -> Trace:
    p = Path(path)
    try:
        if fmt == "mooncake":
            return _read_mooncake(p, block_tokens)
        if fmt == "csv" and p.suffix.lower() in _JSONL_SUFFIXES:
            return _read_jsonl(p)
        return _read_csv(p, fmt)
    except UnicodeDecodeError as exc:
        raise _error(p, None, "", f"not UTF-8 text (byte {exc.start}); a trace is a text file") from None


# ------------------------------------------------------------------------------ number checks
def _bad_number(raw: object, integer: bool, low: float, high: float, unit: str) -> str | None:
    """Why ``raw`` (a cell or a JSON value) is not a valid number, or None."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return "empty (a number is needed)"
    if isinstance(raw, bool):
        return f"{raw!r} is not a number"
    try:
        x = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError, OverflowError):
        return f"{raw!r} is not a number"
    if not math.isfinite(x):
        return f"{raw!r} is not a finite number"
    if integer and x != math.floor(x):
        return f"{raw!r} is not a whole number of {unit}"
    if x < low:
        return f"{raw!r} is negative" if low == 0 else f"{raw!r} is below {low:g}"
    if x > high:
        return f"{raw!r} is more than {high:,.0f} {unit} (workloads/limits.py)"
    return None


#: (integer, low, high, unit) per role of a column
_TOKENS = (True, 0, L.MAX_SEQUENCE_TOKENS, "tokens")
_SECONDS = (False, 0, L.MAX_DURATION_S, "s")
_MILLISECONDS = (False, 0, L.MAX_DURATION_S * 1e3, "ms")


def _column(path: Path, values, lines: np.ndarray, name: str, rule: tuple) -> np.ndarray:
    """A checked numeric column (float64) of CSV cells (strings); the first bad cell is an error."""
    import pandas as pd

    x = pd.to_numeric(values.str.strip(), errors="coerce").to_numpy(dtype=float)
    integer, low, high, _unit = rule
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(x) | (x < low) | (x > high)
        if integer:
            bad |= x != np.floor(x)
    if bad.any():
        i = int(np.argmax(bad))
        raise _error(path, int(lines[i]), name, _bad_number(values.iloc[i], *rule) or f"{values.iloc[i]!r} is not valid")
    return x


def _check_rows(path: Path, n: int) -> None:
    if n > L.MAX_TRACE_ROWS:
        raise _error(path, None, "", f"more than {L.MAX_TRACE_ROWS:,} rows, more than a trace may hold "
                                     f"(workloads/limits.py; cut the file, e.g. with head)")


# ------------------------------------------------------------------------------ CSV formats
def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        first = fh.readline()
    return [c.strip() for c in next(csv.reader([first]), [])]


def _guess_format(header: list[str]) -> str | None:
    for fmt, cols in _CSV_COLUMNS.items():
        if all(c in header for c in cols):
            return fmt
    return None


#: rows parsed per pandas chunk (bounds the memory of the text cells to about 100 MB)
_CHUNK_ROWS = 500_000


def _read_csv(path: Path, fmt: str) -> Trace:
    import pandas as pd

    time_col, prompt_col, output_col = _CSV_COLUMNS[fmt]
    header = _header(path)
    wanted = [time_col, prompt_col, output_col]
    missing = [c for c in wanted if c not in header]
    if missing:
        guess = _guess_format(header)
        hint = (f"; the header is that of the {guess} format (set workload.arrival.format: {guess})"
                if guess and guess != fmt else "")
        raise _error(path, 1, "header", f"missing column(s) {', '.join(repr(c) for c in missing)} "
                                        f"({fmt} traces have: {', '.join(wanted)}{hint})")
    cached_col = "cached_tokens" if fmt == "csv" and "cached_tokens" in header else None
    parts: list[tuple[np.ndarray, ...]] = []
    rows = 0
    # every column is read (no usecols), so that a row with more fields than the header is an error
    reader = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8-sig",
                         skipinitialspace=True, chunksize=_CHUNK_ROWS)
    try:
        for df in reader:
            lines = np.arange(len(df), dtype=np.int64) + 2 + rows  # line 1 is the header
            rows += len(df)
            _check_rows(path, rows)
            blank = (df[wanted] == "").all(axis=1).to_numpy()
            if blank.any():
                df, lines = df[~blank], lines[~blank]
            t = (_azure_ns(path, df[time_col], lines) if fmt == "azure"
                 else _column(path, df[time_col], lines, time_col, _SECONDS))
            parts.append((t, _column(path, df[prompt_col], lines, prompt_col, _TOKENS).astype(np.int64),
                          _column(path, df[output_col], lines, output_col, _TOKENS).astype(np.int64),
                          _column(path, df[cached_col], lines, cached_col, _TOKENS).astype(np.int64) if cached_col
                          else np.zeros(len(df), dtype=np.int64), lines))
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        detail = re.sub(r"^Error tokenizing data\. C error: ", "", str(exc)).strip().rstrip(".")
        raise _error(path, int(m.group(1)) if m else None, "", detail.splitlines()[0]) from None
    finally:
        reader.close()
    t, prompt, output, cached, lines = (np.concatenate([q[i] for q in parts]) if parts else np.zeros(0, dtype=np.int64)
                                        for i in range(5))
    if fmt == "azure":
        t = _azure_seconds(path, t, lines)
    n, dropped = t.size, 0
    if fmt == "burstgpt":  # BurstGPT README: failed requests are the rows whose response tokens are 0
        ok = output > 0
        dropped = int(n - ok.sum())
        t, prompt, output, cached = t[ok], prompt[ok], output[ok], cached[ok]
    return _trace(t, prompt, output, cached, None, n, dropped)


def _azure_ns(path: Path, values, lines: np.ndarray) -> np.ndarray:
    """TIMESTAMP cells as int64 ns since the epoch (2023: naive, 7 fractional digits; 2024: with
    a UTC offset; a naive time is read as UTC)."""
    import pandas as pd

    ts = pd.to_datetime(values.str.strip(), format="ISO8601", utc=True, errors="coerce")
    bad = ts.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise _error(path, int(lines[i]), "TIMESTAMP", f"{values.iloc[i]!r} is not a date and time "
                                                       f"(e.g. 2023-11-16 18:15:46.6805900)")
    return ts.dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)


def _azure_seconds(path: Path, ns: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Seconds since the earliest row."""
    if not ns.size:
        return np.zeros(0)
    secs = (ns - ns.min()) / 1e9
    if secs.max() > L.MAX_DURATION_S:
        i = int(np.argmax(secs))
        raise _error(path, int(lines[i]), "TIMESTAMP", f"{secs[i]:,.0f} s after the earliest row, more than a trace "
                                                       f"may span (at most {L.MAX_DURATION_S:,.0f} s; workloads/limits.py)")
    return secs


def _trace(t, prompt, output, cached, hashes, rows: int, dropped: int) -> Trace:
    prompt = np.maximum(prompt, 1)
    return Trace(_frozen(np.asarray(t, dtype=float)), _frozen(prompt), _frozen(np.maximum(output, 1)),
                 _frozen(np.clip(cached, 0, prompt - 1)), hashes, rows, dropped)


# ------------------------------------------------------------------------------ JSON lines
def _records(path: Path):
    """(line number, dict) of each non-blank line; bounded by MAX_TRACE_ROWS."""
    n = 0
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            n += 1
            _check_rows(path, n)
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _error(path, lineno, "", f"not a JSON object ({exc.msg} at column {exc.colno})") from None
            if not isinstance(rec, dict):
                raise _error(path, lineno, "", f"not a JSON object ({type(rec).__name__})")
            yield lineno, rec


def _value(path: Path, lineno: int, rec: dict, key: str, rule: tuple, default=None) -> float:
    raw = rec.get(key, default)
    if raw is None:
        raise _error(path, lineno, key, "missing")
    why = _bad_number(raw, *rule) if not isinstance(raw, str) else f"{raw!r} is a string, not a number"
    if why:
        raise _error(path, lineno, key, why)
    return float(raw)


def _read_jsonl(path: Path) -> Trace:
    cols: list[list[float]] = [[], [], [], []]
    for lineno, rec in _records(path):
        cols[0].append(_value(path, lineno, rec, "arrival_s", _SECONDS))
        cols[1].append(_value(path, lineno, rec, "prompt_tokens", _TOKENS))
        cols[2].append(_value(path, lineno, rec, "output_tokens", _TOKENS))
        cols[3].append(_value(path, lineno, rec, "cached_tokens", _TOKENS, default=0))
    t, p, o, c = (np.asarray(x, dtype=float) for x in cols)
    return _trace(t, p.astype(np.int64), o.astype(np.int64), c.astype(np.int64), None, t.size, 0)


def _read_mooncake(path: Path, block_tokens: int) -> Trace:
    t: list[float] = []
    p: list[int] = []
    o: list[int] = []
    ids: list[int] = []  # flushed into ``chunks`` as int64 arrays every million hashes
    chunks: list[np.ndarray] = []
    offsets = [0]
    total = 0
    for lineno, rec in _records(path):
        t.append(_value(path, lineno, rec, "timestamp", _MILLISECONDS) / 1e3)
        prompt = int(_value(path, lineno, rec, "input_length", _TOKENS))
        p.append(prompt)
        o.append(int(_value(path, lineno, rec, "output_length", _TOKENS)))
        hashes = _hash_ids(path, lineno, rec.get("hash_ids"), prompt, block_tokens)
        total += len(hashes)
        if total > L.MAX_TRACE_BLOCK_HASHES:
            raise _error(path, lineno, "hash_ids", f"more than {L.MAX_TRACE_BLOCK_HASHES:,} block hashes in the file "
                                                   f"(workloads/limits.py; cut the file, e.g. with head)")
        ids.extend(hashes)
        offsets.append(total)
        if len(ids) >= 1_000_000:
            chunks.append(np.asarray(ids, dtype=np.int64))
            ids.clear()
    chunks.append(np.asarray(ids, dtype=np.int64))
    hashes = BlockHashes(block_tokens, _frozen(np.concatenate(chunks)), _frozen(np.asarray(offsets, dtype=np.int64)))
    n = len(t)
    return _trace(np.asarray(t), np.asarray(p, dtype=np.int64), np.asarray(o, dtype=np.int64),
                  np.zeros(n, dtype=np.int64), hashes, n, 0)


def _hash_ids(path: Path, lineno: int, hashes, prompt: int, block_tokens: int) -> list:
    """A checked ``hash_ids`` list: one integer per ``block_tokens`` prompt tokens."""
    if not isinstance(hashes, list):
        raise _error(path, lineno, "hash_ids", "missing (a list of block hashes)" if hashes is None
                     else f"{type(hashes).__name__}, not a list of block hashes")
    want = -(-prompt // block_tokens)
    if len(hashes) != want:
        raise _error(path, lineno, "hash_ids", f"{len(hashes)} block hashes for input_length {prompt} (expected "
                                               f"ceil({prompt} / {block_tokens}) = {want}; set "
                                               f"workload.arrival.block_tokens if the trace uses other blocks)")
    for h in hashes:
        if type(h) is not int or not -(2**63) <= h < 2**63:
            raise _error(path, lineno, "hash_ids", f"{h!r} is not an integer hash")
    return hashes
