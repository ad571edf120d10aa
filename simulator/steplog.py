"""Per-iteration records of one run, kept compact: the steps table of millions of rows without a
DataFrame of millions of rows.

A run of 100,000 requests takes millions of batch iterations, and most of a row repeats: an
instance's decode steps keep their batch (instance, sequences, tokens) for many steps, and their
step, compute and communication seconds stay within one cost-model bucket. So ``StepLog`` keeps,
per row, its time (8 bytes), the KV blocks in use (4), what the inter-token latency histogram
added when the step was applied (``itl_add_s``, 8), a flag (1) and a 4-byte code into the
distinct *shapes* (instance, batch_size, decode_seqs, prefill_tokens, new_tokens, step_s,
compute_s, comm_s): 25 bytes a row instead of 69 (typed columns of every field) or ~400 (a tuple
of boxed numbers). A float is coded by value and sign, so a code gives back the exact double
logged. The KV fraction is read as blocks / the instance's capacity in blocks: the one float
division ``simulator.kv.KVBlocks.used_fraction`` makes (0.0 at no capacity), so the same double.

``StepLog.table()`` sorts the rows by time into a ``StepTable`` (same codes), whose columns
are expanded one at a time when read (``table["step_s"]``); the summary and the end-of-run checks
read a few, ``StepTable.frame()`` builds the whole ``STEP_COLUMNS`` DataFrame only when asked
(``SimResult.steps``), and ``StepTable.column_chunks()`` hands ``timeseries.csv`` its rows a
chunk at a time. Sort orders are int32 (rows < 2**31, checked); ``itl_add_s`` stays in append
order (read through the time order), and ``end_order`` sorts by end time a chunk of rows at a
time: the end of a run holds no whole-column temporaries beside the table.

``itl_add_s`` is summed at the end in the order the steps ended (``ordered_itl_total_s``), the
order the stepping engine adds them in, so a fast-forwarded run of decode steps
(``simulator.fastforward``) appended later than its time sums the same floats in the same order.
"""

from __future__ import annotations

import math
from array import array
from typing import Iterator

import numpy as np

from simulator.result import STEP_COLUMNS

#: fields of a shape code, in key order: counts (int64 in the table), then seconds (float64)
_SHAPE_INTS = ("instance", "batch_size", "decode_seqs", "prefill_tokens", "new_tokens")
_SHAPE_FLOATS = ("step_s", "compute_s", "comm_s")
_SHAPE_FIELDS = _SHAPE_INTS + _SHAPE_FLOATS
#: table columns kept per row (not in the shape code): column name -> the log's array
_ROW_COLUMNS = {"time_s": "time_s", "flag": "flags"}
_ONE, _ZERO = b"\x01", b"\x00"
#: rows read at a time by ``end_order``, ``end_times`` users and ``ordered_itl_total_s`` (bounds temporaries)
CHUNK_ROWS = 1 << 16


def _code(table: dict, key) -> int:
    c = table.get(key)
    if c is None:
        c = table[key] = len(table)
    return c


def _signed(key: tuple, floats: tuple) -> tuple:
    """``key`` told apart from the same key with a zero of the other sign (0.0 == -0.0)."""
    return key + tuple(math.copysign(1.0, x) for x in floats)


def _raw(v: np.ndarray) -> bytes:
    """An array's bytes, what ``array.frombytes`` takes (``tobytes``: for the short arrays of a run,
    quicker than a ``uint8`` view)."""
    return v.tobytes()


class StepLog:
    """Append-only rows, one per batch iteration (``append``/``extend_coded``); ``itl_add_s[row]`` is
    set when the step is applied."""

    __slots__ = ("time_s", "itl_add_s", "flags", "shape", "kv", "_shapes", "_decode_codes", "out_of_order")

    def __init__(self):
        self.time_s = array("d")
        self.itl_add_s = array("d")
        #: 1: a step of an extended fast-forwarded run (``simulator.fastforward``), else 0
        self.flags = array("b")
        self.shape = array("i")  # code into ``_shapes``
        self.kv = array("i")  # the KV blocks in use
        self._shapes: dict = {}
        self._decode_codes: dict = {}  # (instance, streams, cost key) -> code (``decode_code``)
        #: rows were appended after rows of later times (fast-forwarded runs): sort by time at the end
        self.out_of_order = False

    def __len__(self) -> int:
        return len(self.time_s)

    def append(self, time_s: float, instance: int, batch_size: int, decode_seqs: int, prefill_tokens: int,
               new_tokens: int, step_s: float, kv_used_blocks: int, compute_s: float, comm_s: float) -> int:
        """Add one row; returns its index (for ``itl_add_s`` when the step is applied)."""
        i = len(self.time_s)
        self.time_s.append(time_s)
        self.shape.append(self.code(int(instance), int(batch_size), int(decode_seqs), int(prefill_tokens),
                                    int(new_tokens), step_s, compute_s, comm_s))
        self.kv.append(kv_used_blocks)
        self.itl_add_s.append(0.0)
        self.flags.append(0)
        return i

    def append_coded(self, time_s: float, code: int, kv_used_blocks: int) -> int:
        """``append`` of a row whose shape code is known (``decode_code``); returns its index."""
        i = len(self.time_s)
        self.time_s.append(time_s)
        self.shape.append(code)
        self.kv.append(kv_used_blocks)
        self.itl_add_s.append(0.0)
        self.flags.append(0)
        return i

    def flag(self, row: int) -> None:
        """Mark a row as a step of an extended fast-forwarded run (whose later steps are appended
        late: the rows are sorted by time at the end)."""
        self.flags[row] = 1
        self.out_of_order = True

    def code(self, instance: int, batch_size: int, decode_seqs: int, prefill_tokens: int, new_tokens: int,
             step_s: float, compute_s: float, comm_s: float) -> int:
        """The shape code of a row with these fields (what ``append`` logs for them)."""
        key = (instance, batch_size, decode_seqs, prefill_tokens, new_tokens, step_s, compute_s, comm_s)
        if not (step_s and compute_s and comm_s):
            key = _signed(key, key[5:])
        return _code(self._shapes, key)

    def decode_code(self, instance: int, n: int, k: int, key: tuple, cost: tuple) -> int:
        """``code`` of a decode-only step of ``n`` streams of ``k`` tokens on ``instance`` costed
        at cost-cache ``key`` (``cost``: its seconds, compute and communication seconds), memoised."""
        memo = (instance, n, key)
        c = self._decode_codes.get(memo)
        if c is None:
            c = self._decode_codes[memo] = self.code(instance, n, n, 0, n * k, *cost)
        return c

    def extend_coded(self, time_s: np.ndarray, kv_used_blocks, itl_add_s: np.ndarray, codes: list[tuple[int, int]],
                     flagged: bool) -> int:
        """Add ``len(time_s)`` rows of known shape codes (``codes``: (code, rows) in row order;
        ``code``) whose ``itl_add_s`` are ``itl_add_s`` and then one 0.0 (``len(time_s) - 1``
        values), KV blocks in use one int for every row or an integer array; returns the first
        row's index. ``time_s`` and ``itl_add_s``: contiguous float64 (a run of decode steps:
        ``fastforward``)."""
        first = len(self.time_s)
        n = len(time_s)
        if flagged:
            self.out_of_order = True
        self.flags.frombytes((_ONE if flagged else _ZERO) * n)
        self.time_s.frombytes(_raw(time_s))
        self.itl_add_s.frombytes(_raw(itl_add_s))
        self.itl_add_s.append(0.0)
        if type(kv_used_blocks) is int or isinstance(kv_used_blocks, np.integer):
            self.kv.extend(array("i", (int(kv_used_blocks),)) * n)
        else:
            # blocks in use never exceed the capacity, which ``table`` checks fits int32
            self.kv.frombytes(kv_used_blocks.astype(np.int32).tobytes())
        shape = self.shape
        for c, rows in codes:
            shape.extend(array("i", (c,)) * rows)
        return first

    def table(self, pool_names: list[str] | None = None, kv_capacity_blocks: list[int] | None = None) -> "StepTable":
        """The rows sorted by time (a stable sort: rows appended at the same time keep their order)
        as a ``StepTable``; ``pool_names[i]``: instance i's pool, ``kv_capacity_blocks[i]``: its
        KV capacity in blocks (None: the KV fraction column is not read). The log hands its
        buffers over (it is empty afterwards), one column at a time."""
        n = len(self)
        if n > _INT32_MAX:
            raise OverflowError(f"{n} steps: more than int32 row indices hold")
        if kv_capacity_blocks and max(kv_capacity_blocks) > _INT32_MAX:
            raise OverflowError("a KV capacity of more blocks than the log's int32 holds")
        shapes = list(self._shapes)  # keys in code order
        uniq = {f: np.array([k[j] for k in shapes], dtype=np.int64 if f in _SHAPE_INTS else np.float64)
                for j, f in enumerate(_SHAPE_FIELDS)}
        del shapes
        self._shapes, self._decode_codes = {}, {}  # before the sort: its int64 order is the peak
        order = None
        if self.out_of_order and n:
            # rows of fast-forwarded runs were appended late; no two sources share a time (checked by
            # the run), and a stable sort keeps the order of the rows appended at the same time
            order = np.argsort(np.frombuffer(self.time_s, dtype=np.float64), kind="stable").astype(np.int32)
        cols = {}
        for name, dtype in (("time_s", np.float64), ("flags", np.int8), ("shape", np.int32), ("kv", np.int32),
                            ("itl_add_s", np.float64)):
            buf = getattr(self, name)
            setattr(self, name, array(buf.typecode))
            v = np.frombuffer(buf, dtype=dtype)  # keeps ``buf`` (no copy)
            if order is not None and name != "itl_add_s":  # itl_add_s: read through ``order``
                v = v[order]
            cols[name] = v
            del v, buf
        return StepTable(cols, uniq, pool_names, kv_capacity_blocks, order)

    def arrays(self, kv_capacity_blocks: list[int] | None = None) -> dict[str, np.ndarray]:
        """The columns as numpy arrays (``STEP_COLUMNS`` but ``pool``, with ``itl_add_s`` and
        ``flag``), rows sorted by time; the log is empty afterwards."""
        t = self.table(None, kv_capacity_blocks)
        return {c: t[c] for c in ("flag", "time_s", "step_s", "kv_used_fraction", "compute_s", "comm_s",
                                  "itl_add_s") + _SHAPE_INTS}


_INT32_MAX = (1 << 31) - 1


class StepTable:
    """The steps of a run, sorted by time: times, KV blocks and codes into the distinct shapes.

    ``table[c]`` expands column ``c`` (a ``STEP_COLUMNS`` name but ``pool``, or ``flag``,
    ``itl_add_s``) to one value per row: counts int64, seconds and fractions float64, the values
    logged. ``frame()`` is the ``STEP_COLUMNS`` DataFrame, ``column_chunks()`` its columns a
    chunk of rows at a time (the pool as names). ``itl_add_s`` is kept in the log's append order
    and read through ``rows`` (int32: the append row of each time-sorted row; None: the same)."""

    def __init__(self, cols: dict, shapes: dict, pool_names: list[str] | None,
                 kv_capacity_blocks: list[int] | None = None, rows: np.ndarray | None = None):
        self._cols = cols
        self._shapes = shapes
        self._rows = rows
        self.pool_names = list(pool_names or [])
        self._kv_cap = None
        if kv_capacity_blocks is not None:
            cap = np.array(kv_capacity_blocks, dtype=np.float64)
            cap[cap == 0] = np.inf  # used / inf == 0.0: KVBlocks.used_fraction at no capacity
            self._kv_cap = cap[shapes["instance"]] if len(cap) else np.zeros(0)  # per shape code

    #: the table's columns
    columns = STEP_COLUMNS

    def __len__(self) -> int:
        return len(self._cols["time_s"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.take(name, slice(None))

    def take(self, name: str, rows: np.ndarray | slice) -> np.ndarray:
        """``self[name][rows]`` (``rows``: indices or a slice) without expanding the whole column."""
        cols = self._cols
        if name in _ROW_COLUMNS:
            return cols[_ROW_COLUMNS[name]][rows]
        if name == "kv_used_fraction":
            if self._kv_cap is None:
                raise ValueError("the KV fraction needs each instance's capacity (StepLog.table)")
            return np.divide(cols["kv"][rows], self._kv_cap[cols["shape"][rows]])
        if name == "itl_add_s":
            add = cols["itl_add_s"]
            return add[rows] if self._rows is None else add[self._rows[rows]]
        return self._shapes[name][cols["shape"][rows]]

    def drop_run_columns(self) -> None:
        """Free what only the end-of-run checks read (``flag``, ``itl_add_s``)."""
        self._cols.pop("flags", None)
        self._cols.pop("itl_add_s", None)
        self._rows = None

    def pool_rows(self) -> Iterator[tuple[str, np.ndarray | None]]:
        """(pool, its rows: None for every row) in pool-name order, as pandas' groupby gives them."""
        names = np.array(self.pool_names, dtype=object)
        pools = sorted(set(names[np.unique(self._shapes["instance"])].tolist()))
        if len(pools) == 1:
            yield pools[0], None
            return
        pool_of_shape = names[self._shapes["instance"]]
        for p in pools:
            yield p, np.flatnonzero((pool_of_shape == p)[self._cols["shape"]])

    def _pools(self, instance: np.ndarray) -> np.ndarray:
        return np.array(self.pool_names, dtype=object)[instance]

    def frame(self):
        """The ``STEP_COLUMNS`` DataFrame (counts int64, pool in pandas' ``str`` dtype)."""
        import pandas as pd

        if not len(self):
            return pd.DataFrame.from_records([], columns=list(STEP_COLUMNS))
        data = {c: self[c] for c in STEP_COLUMNS if c != "pool"}
        data["pool"] = _pool_column(np.array(self.pool_names, dtype=object), data["instance"])
        return pd.DataFrame(data, columns=list(STEP_COLUMNS), copy=False)

    def column_chunks(self, rows: int) -> Iterator[tuple[tuple[str, ...], list[np.ndarray]]]:
        """(``STEP_COLUMNS``, their values for ``rows`` rows) for consecutive chunks of rows: numpy
        columns, the pool as an object array of names."""
        shape = self._cols["shape"]
        for i in range(0, len(self), rows):
            c = slice(i, i + rows)
            s = shape[c]
            vals = {f: self._shapes[f][s] for f in _SHAPE_FIELDS}
            vals["time_s"] = self._cols["time_s"][c]
            vals["kv_used_fraction"] = self.take("kv_used_fraction", c)
            vals["pool"] = self._pools(vals["instance"])
            yield STEP_COLUMNS, [vals[f] for f in STEP_COLUMNS]


def _pool_column(names: np.ndarray, instance: np.ndarray):
    """Each step's pool name (``names[instance]``) in pandas' ``str`` dtype. With pyarrow (where
    pandas keeps such strings) the names are taken in Arrow: no Python string object per step
    (millions of them in a long run), same values and dtype."""
    import pandas as pd

    try:
        import pyarrow as pa
    except ImportError:
        return pd.array(names[instance], dtype="str")
    return pd.array(pa.array(names.tolist(), type=pa.large_string()).take(pa.array(instance)), dtype="str")


def _take(cols, name: str, rows) -> np.ndarray:
    """``cols[name][rows]`` of a ``StepTable`` (without expanding the column) or a dict of columns."""
    return cols.take(name, rows) if isinstance(cols, StepTable) else cols[name][rows]


def end_times(cols, rows) -> np.ndarray:
    """``time_s + step_s`` of ``rows`` (indices or a slice): when those steps ended. ``cols``: a
    ``StepTable`` or a dict of its columns."""
    return np.add(_take(cols, "time_s", rows), _take(cols, "step_s", rows))


def end_order(cols) -> np.ndarray:
    """Row indices (int32) by the time each step ended (``time_s + step_s``), ties in the order the
    steps began: the order simpy applies the steps in (same-time events run in the order they
    were scheduled, and a step's end is scheduled when it begins). ``cols``: a ``StepTable`` or a
    dict of its columns, rows by time.

    ``np.argsort(time_s + step_s, kind="stable")``, a chunk of rows at a time: no step ends before
    it began (``step_s >= 0``) and the rows are sorted by time, so every later row ends at or after
    the next chunk's first time; the rows of this chunk and those carried over that end before
    that time are final, in (end, row) order. Where the rows are not so (a negative or NaN time,
    a negative step), the whole columns are sorted instead."""
    time = cols["time_s"]
    n = len(time)
    if n > _INT32_MAX:
        raise OverflowError(f"{n} steps: more than int32 row indices hold")
    out = np.empty(n, dtype=np.int32)
    carry, carry_end = np.zeros(0, dtype=np.int64), np.zeros(0)
    done, prev = 0, -np.inf
    for lo in range(0, n, CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS, n)
        t = time[lo:hi]
        end = end_times(cols, slice(lo, hi))
        if not (t[0] >= prev and (t[1:] >= t[:-1]).all()) or (end < t).any():
            return np.argsort(end_times(cols, slice(None)), kind="stable").astype(np.int32)
        prev = t[-1]
        idx, e = np.concatenate((carry, np.arange(lo, hi))), np.concatenate((carry_end, end))
        if hi < n:
            final = e < time[hi]
            carry, carry_end = idx[~final], e[~final]
            idx, e = idx[final], e[final]
        o = np.argsort(e, kind="stable")
        out[done:done + len(o)] = idx[o]
        done += len(o)
    return out


def ordered_itl_total_s(cols, order: np.ndarray) -> float:
    """The histogram's total gap seconds, summed in the order the steps were applied (``order``:
    ``end_order``): left to right, as the engine's running total did (``np.add.accumulate``),
    a chunk of rows at a time from the running value (the same additions in the same order)."""
    total = 0.0
    for i in range(0, len(order), CHUNK_ROWS):
        add = _take(cols, "itl_add_s", order[i:i + CHUNK_ROWS])
        total = float(np.add.accumulate(np.concatenate(([total], add)))[-1])
    return total
