"""A small columnar table for profile CSVs, read without pandas (start-up time and memory).

``Table.read_csv(path)`` parses a profile table (``calibration.store`` writes them) with the csv
module into one numpy array per column, typed as ``pandas.read_csv`` (default options) types them,
so that every lookup built on a ``Table`` sees bit-identical values:

* a column whose fields are all integers is ``int64``; integers with missing fields, or any
  floats, ``float64`` (missing = NaN; Python's ``float``, correctly rounded, which is what the
  pandas parser gives on every shipped table: tests/test_calibration_table.py checks them all);
* ``True``/``False`` (any case pandas accepts) is ``bool``; anything else an ``object`` array of
  ``str`` with NaN for missing fields; pandas' default missing markers (``""``, ``NA``, ``nan``,
  ``NULL``, ...) are missing in every column; blank lines are skipped, short rows padded.

The operations are the ones the lookups need, with pandas' semantics: ``where`` (a boolean
mask), ``groupby`` (groups in sorted key order, rows in table order inside a group, rows with a
missing key dropped), ``min_by`` (``groupby(keys, as_index=False)[col].min()``: NaN skipped),
``sorted_by`` (stable), ``with_columns`` (``assign``), ``renamed``. ``as_table`` accepts a
DataFrame too (tests and callers that build one); ``to_pandas`` goes the other way for code
that wants a DataFrame (checks, reports). No pandas import here.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

#: pandas.read_csv's default missing-value markers (``pandas._libs.parsers.STR_NA_VALUES``)
NA_STRINGS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                        "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
_INT_TEXT = r"[+-]?\d+"
#: a float's spelling (``inf``/``infinity`` in any mix of ASCII cases, spelled out: quicker than
#: ``re.IGNORECASE``, which also lets the non-ASCII ``İ``/``ı`` pass for ``i``, which ``float`` rejects)
_FLOAT_TEXT = r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)"
_INT = re.compile(rf"{_INT_TEXT}\Z")
_FLOAT = re.compile(rf"{_FLOAT_TEXT}\Z")
_BOOL = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}
_INT64_MAX = 2 ** 63 - 1
#: a column's present fields joined by this, for one match per column (``_all_match``)
_SEP = "\n"
# ``_INT`` / ``_FLOAT`` on every field at once; each field with its separator an atomic group
# (the field's text is settled where its separator is reached), so a column that fails is
# rejected in time linear in its length, not by trying every split of every field
_INTS = re.compile(rf"(?>{_INT_TEXT}\n)*{_INT_TEXT}\Z")
_FLOATS = re.compile(rf"(?>{_FLOAT_TEXT}\n)*{_FLOAT_TEXT}\Z")


def _all_match(whole: re.Pattern, one: re.Pattern, present: Sequence[str]) -> bool:
    """Whether every field of ``present`` matches ``one``: the fields joined by ``_SEP`` matched by
    ``whole`` (``one`` repeated, ``_SEP`` between) in one call, where no field holds ``_SEP``
    (the separators counted); otherwise field by field."""
    joined = _SEP.join(present)
    if joined.count(_SEP) == len(present) - 1:
        return whole.match(joined) is not None
    return all(one.match(f) for f in present)


def parse_column(fields: Sequence[str]) -> np.ndarray:
    """One CSV column's fields as the array ``pandas.read_csv`` makes of them (see the module
    docstring). The fields are tested against each pattern in one regular-expression call per
    column (``_all_match``) and converted by ``int``/``float`` (the same values as field by field)."""
    na = NA_STRINGS
    present = fields if na.isdisjoint(fields) else [f for f in fields if f not in na]
    if not present:
        return np.full(len(fields), np.nan)
    complete = len(present) == len(fields)
    if _all_match(_INTS, _INT, present):
        ints = list(map(int, present))
        if complete and -_INT64_MAX - 1 <= min(ints) and max(ints) <= _INT64_MAX:
            return np.array(ints, dtype=np.int64)
        # pandas reads the integers, then casts them (so "-0" is 0.0, not -0.0)
        return np.array([math.nan if f in na else float(int(f)) for f in fields])
    if _all_match(_FLOATS, _FLOAT, present):
        if complete:
            return np.array(list(map(float, fields)))
        return np.array([math.nan if f in na else float(f) for f in fields])
    if complete and all(f in _BOOL for f in present):
        return np.array([_BOOL[f] for f in fields], dtype=bool)
    out = np.empty(len(fields), dtype=object)
    out[:] = [math.nan if f in na else f for f in fields]
    return out


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _unique_names(header: Sequence[str]) -> list[str]:
    """pandas' renaming of repeated column names: ``x``, ``x.1``, ``x.2``."""
    seen: dict[str, int] = {}
    out = []
    for name in header:
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append(name if n == 0 else f"{name}.{n}")
    return out


class Table:
    """Named columns (numpy arrays of one length) of a profile table; read-only by convention:
    every operation returns a new table (columns may be shared)."""

    __slots__ = ("_cols", "_len")

    def __init__(self, columns: Mapping[str, Any]):
        self._cols = {str(k): np.asarray(v) for k, v in columns.items()}
        lens = {len(v) for v in self._cols.values()}
        if len(lens) > 1:
            raise ValueError(f"columns of unequal length: {sorted(lens)}")
        self._len = lens.pop() if lens else 0

    @classmethod
    def read_csv(cls, path: str | Path) -> "Table":
        """A CSV file (header row, then records) typed as ``pandas.read_csv`` types it."""
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r]  # pandas skips blank lines
        if not rows:
            raise ValueError(f"{path}: no header row")
        names = _unique_names(rows[0])
        body = rows[1:]
        width = len(names)
        for i, r in enumerate(body):
            if len(r) > width:
                raise ValueError(f"{path}:{i + 2}: {len(r)} fields, the header names {width}")
        if all(len(r) == width for r in body):
            fields: list = list(zip(*body)) if body else [()] * width  # the columns, as tuples
        else:
            fields = [[r[j] if j < len(r) else "" for r in body] for j in range(width)]
        return cls({n: parse_column(f) if body else np.empty(0, dtype=object) for n, f in zip(names, fields)})

    # -- shape and columns

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self._cols)

    def __len__(self) -> int:
        return self._len

    @property
    def empty(self) -> bool:
        return self._len == 0 or not self._cols

    def __contains__(self, name: object) -> bool:
        return name in self._cols

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name]

    def floats(self, name: str) -> np.ndarray:
        """Column ``name`` as float64 (``Series.to_numpy(float)``)."""
        return np.asarray(self._cols[name], dtype=float)

    def min(self, name: str) -> Any:
        """Smallest value of column ``name``, NaN skipped (``Series.min``); NaN when none."""
        col = self._cols[name]
        return np.fmin.reduce(col) if len(col) else math.nan

    def max(self, name: str) -> Any:
        """Largest value of column ``name``, NaN skipped (``Series.max``); NaN when none."""
        col = self._cols[name]
        return np.fmax.reduce(col) if len(col) else math.nan

    def __repr__(self) -> str:
        return f"Table({self._len} rows: {', '.join(self._cols)})"

    # -- new tables

    def take(self, rows: Sequence[int] | np.ndarray) -> "Table":
        idx = np.asarray(rows, dtype=np.intp)
        return Table({k: v[idx] for k, v in self._cols.items()})

    def where(self, mask: np.ndarray) -> "Table":
        """The rows where boolean ``mask`` is true, in order."""
        return Table({k: v[np.asarray(mask, dtype=bool)] for k, v in self._cols.items()})

    def with_columns(self, **cols: Any) -> "Table":
        """``DataFrame.assign``: these columns added or replaced (scalars broadcast)."""
        new = {k: (np.full(self._len, v) if np.ndim(v) == 0 else np.asarray(v)) for k, v in cols.items()}
        return Table({**self._cols, **new})

    def renamed(self, names: Mapping[str, str]) -> "Table":
        return Table({names.get(k, k): v for k, v in self._cols.items()})

    def sorted_by(self, *names: str) -> "Table":
        """Rows in ascending order of ``names`` (the first the primary key; no missing values),
        stable: equal keys keep their order."""
        keys = list(zip(*(self._cols[n].tolist() for n in names)))
        return self.take(sorted(range(self._len), key=keys.__getitem__))

    def _group_rows(self, keys: Sequence[str]) -> list[tuple[tuple, list[int]]]:
        """(key tuple, row indices) per distinct key, in sorted key order; rows with a missing key dropped."""
        groups: dict[tuple, list[int]] = {}
        cols = [self._cols[k] for k in keys]
        missing = np.zeros(self._len, dtype=bool)
        for c in cols:  # rows whose key has a missing value (``_missing``), left out
            if c.dtype.kind == "f":
                missing |= np.isnan(c)
            elif c.dtype.kind not in "iub":
                missing |= np.fromiter((_missing(v) for v in c.tolist()), dtype=bool, count=self._len)
        if missing.any():
            ok = np.flatnonzero(~missing)
            rows: Any = zip(ok.tolist(), zip(*(c[ok].tolist() for c in cols)))
        else:
            rows = enumerate(zip(*(c.tolist() for c in cols)))
        for i, key in rows:
            got = groups.get(key)
            if got is None:
                groups[key] = [i]
            else:
                got.append(i)
        return sorted(groups.items())

    def groupby(self, keys: str | Sequence[str]) -> Iterator[tuple[Any, "Table"]]:
        """``(key, rows)`` per distinct key in sorted order (``DataFrame.groupby``): ``key`` is a
        scalar for one column name, a tuple for a list of names."""
        names = [keys] if isinstance(keys, str) else list(keys)
        for key, rows in self._group_rows(names):
            yield (key[0] if isinstance(keys, str) else key), self.take(rows)

    def min_by(self, keys: str | Sequence[str], value: str) -> "Table":
        """``groupby(keys, as_index=False)[value].min()``: the key columns and the smallest
        ``value`` (NaN skipped) per distinct key, in sorted key order."""
        names = [keys] if isinstance(keys, str) else list(keys)
        groups = self._group_rows(names)
        col = self._cols[value]
        if groups and col.dtype.kind in "iuf":  # every group's minimum in one call, over the groups' rows in turn
            sizes = [len(rows) for _, rows in groups]
            starts = np.cumsum([0] + sizes[:-1])
            mins: Any = np.fmin.reduceat(col[[i for _, rows in groups for i in rows]], starts)
        else:
            mins = [np.fmin.reduce(col[rows]) for _, rows in groups]
        out = {n: np.array([k[j] for k, _ in groups], dtype=self._cols[n].dtype) for j, n in enumerate(names)}
        out[value] = np.array(mins, dtype=col.dtype)
        return Table(out)

    def to_pandas(self):
        """This table as a ``pandas.DataFrame`` (imports pandas: for checks and reports, not lookups)."""
        import pandas as pd

        return pd.DataFrame({k: v for k, v in self._cols.items()})


def as_table(data: Any) -> Table | None:
    """``data`` as a Table: a Table as is, None as None, a DataFrame (anything with ``columns``
    and per-column ``to_numpy``) converted column by column."""
    if data is None or isinstance(data, Table):
        return data
    return Table({c: data[c].to_numpy() for c in data.columns})
