"""Per-iteration records of one run, kept as typed growable columns instead of a list of tuples.

A run of 100,000 requests takes millions of batch iterations; a tuple of eleven boxed numbers
per iteration cost ~400 bytes, a row here costs 69 (``array.array`` columns: 8-byte floats,
4-byte counts and a 1-byte flag, widened to the table's int64 one column at a time at the end). Besides the ``STEP_COLUMNS`` of ``simulator.result`` (the
``pool`` column is derived from the instance), each row keeps what the inter-token-latency
histogram added to its running total when the step was applied (``itl_add_s``): the total is
summed at the end in the order the steps ended (``ordered_itl_total_s``), which is the order
the stepping engine adds them in, so a fast-forwarded run of decode steps
(``simulator.fastforward``) appended later than its time sums the same floats in the same order.
"""

from __future__ import annotations

from array import array

import numpy as np

_FLOAT_COLUMNS = ("time_s", "step_s", "kv_used_fraction", "compute_s", "comm_s", "itl_add_s")
#: counts of one step (instance index, sequences, tokens): far below 2**31, kept in 4 bytes
#: (``array`` raises OverflowError past that)
_INT_COLUMNS = ("instance", "batch_size", "decode_seqs", "prefill_tokens", "new_tokens")


class StepLog:
    """Append-only columns, one row per batch iteration (``append``/``extend``)."""

    __slots__ = _FLOAT_COLUMNS + _INT_COLUMNS + ("out_of_order", "flags")

    def __init__(self):
        for c in _FLOAT_COLUMNS:
            setattr(self, c, array("d"))
        for c in _INT_COLUMNS:
            setattr(self, c, array("i"))
        #: rows were appended after rows of later times (fast-forwarded runs): sort by time at the end
        self.out_of_order = False
        #: 1: a step of an extended fast-forwarded run (``simulator.fastforward``), else 0
        self.flags = array("b")

    def __len__(self) -> int:
        return len(self.time_s)

    def append(self, time_s: float, instance: int, batch_size: int, decode_seqs: int, prefill_tokens: int,
               new_tokens: int, step_s: float, kv_used_fraction: float, compute_s: float, comm_s: float) -> int:
        """Add one row; returns its index (for ``itl_add_s`` when the step is applied)."""
        i = len(self.time_s)
        self.time_s.append(time_s)
        self.instance.append(instance)
        self.batch_size.append(batch_size)
        self.decode_seqs.append(decode_seqs)
        self.prefill_tokens.append(prefill_tokens)
        self.new_tokens.append(new_tokens)
        self.step_s.append(step_s)
        self.kv_used_fraction.append(kv_used_fraction)
        self.compute_s.append(compute_s)
        self.comm_s.append(comm_s)
        self.itl_add_s.append(0.0)
        self.flags.append(0)
        return i

    def flag(self, row: int) -> None:
        """Mark a row as a step of an extended fast-forwarded run (whose later steps are appended
        late: the rows are sorted by time at the end)."""
        self.flags[row] = 1
        self.out_of_order = True

    def extend(self, columns: dict, flagged: bool = False) -> int:
        """Add rows given as equal-length float64 numpy arrays (the float columns; ``itl_add_s``
        optional) and ints (the count columns: one value for every row); returns the index of
        the first."""
        first = len(self.time_s)
        n = len(columns["time_s"])
        if flagged:
            self.out_of_order = True
        self.flags.frombytes((b"\x01" if flagged else b"\x00") * n)
        for c in _FLOAT_COLUMNS:
            v = columns.get(c)
            getattr(self, c).frombytes(np.ascontiguousarray(np.zeros(n) if v is None else v, dtype=np.float64).tobytes())
        for c in _INT_COLUMNS:
            getattr(self, c).extend(array("i", (int(columns[c]),)) * n)  # OverflowError past 32 bits
        return first

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns as numpy arrays, rows in simulation order, plus ``flag`` (1: a step of an
        extended fast-forwarded run). The log hands its buffers over: it is empty afterwards (a
        column sorted by time replaces its buffer one at a time, so memory holds one extra column)."""
        n = len(self)
        order = None
        if self.out_of_order and n:
            # rows of fast-forwarded runs were appended late; no two sources share a time (checked by
            # the run), and a stable sort keeps the order of the rows appended at the same time
            order = np.argsort(np.frombuffer(self.time_s, dtype=np.float64), kind="stable")
        out = {}
        for c in ("flags",) + _FLOAT_COLUMNS + _INT_COLUMNS:
            buf = getattr(self, c)
            v = np.frombuffer(buf, dtype=np.int8 if c == "flags" else np.float64 if c in _FLOAT_COLUMNS else np.int32)
            if order is not None:
                v = v[order]  # a copy: the buffer is released below
            if c in _INT_COLUMNS:
                v = v.astype(np.int64)  # the table's dtype
            out["flag" if c == "flags" else c] = v  # a view keeps its buffer alive
            del buf
            setattr(self, c, array(getattr(self, c).typecode))
        return out


def end_order(cols: dict[str, np.ndarray]) -> np.ndarray:
    """Row indices by the time each step ended (``time_s + step_s``), ties in the order the steps
    began: the order simpy applies the steps in (same-time events run in the order they were
    scheduled, and a step's end is scheduled when it begins)."""
    return np.argsort(cols["time_s"] + cols["step_s"], kind="stable")


#: rows summed at a time by ``ordered_itl_total_s`` (bounds its temporary arrays)
_SUM_CHUNK_ROWS = 1 << 20


def ordered_itl_total_s(cols: dict[str, np.ndarray], order: np.ndarray) -> float:
    """The histogram's total gap seconds, summed in the order the steps were applied (``order``:
    ``end_order``): left to right, as the engine's running total did (``np.add.accumulate``),
    a chunk of rows at a time from the running value (the same additions in the same order)."""
    add = cols["itl_add_s"]
    total = 0.0
    for i in range(0, len(order), _SUM_CHUNK_ROWS):
        total = float(np.add.accumulate(np.concatenate(([total], add[order[i:i + _SUM_CHUNK_ROWS]])))[-1])
    return total
