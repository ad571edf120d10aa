"""CSV text of a table, byte for byte what ``DataFrame.to_csv(path, index=False)`` writes, formatted
a chunk of rows at a time by Arrow's compute kernels instead of one Python string per cell.

pandas formats a float64 column with numpy's ``astype(str)`` (Python's ``repr``: the shortest
digits that read back as the same double), writes NaN as an empty field, integers in decimal and
strings as they are (quoted only when they hold a comma, a quote or a line break). Arrow's
float-to-string cast prints the same shortest digits but lays them out differently: integral
values without ``.0`` (``2`` for ``2.0``) and its own ranges for exponent notation (``1e+15``,
``0.00001``). So Arrow's text is taken only where the two layouts agree (finite, not integral,
1e-4 <= |x| < 1e9: both write plain decimals of the same digits, ``tests/test_csvtext.py``);
integral values below 1e15 are written as their integer and ``.0``; every other value (NaN, inf,
-0.0, tiny or huge) by ``repr``. Tables with columns of other kinds (bool, nullable integers,
categories, strings that need quoting) are left to pandas: ``frame_chunks`` returns None.

``clustersim.outputs`` writes these chunks (the one writer of files); the serving simulator's
per-step table hands its chunks over directly (``simulator.steplog.StepTable.csv_chunks``) without
a DataFrame of millions of rows.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

#: cells formatted at a time (bounds the text and the temporary columns held at once: ~10 MB)
CHUNK_CELLS = 1 << 19


def chunk_rows(columns: int) -> int:
    """Rows of a chunk of a table of ``columns`` columns."""
    return max(1024, CHUNK_CELLS // max(columns, 1))
#: magnitudes where Arrow's shortest text of a non-integral double is Python's ``repr``
_PLAIN_LOW, _PLAIN_HIGH = 1e-4, 1e9
_NEEDS_QUOTES = r'[,"\r\n]'


def header(names: Sequence[str]) -> bytes | None:
    """The header line, or None where a name would need quoting."""
    if any(not isinstance(n, str) or any(ch in n for ch in ',"\r\n') for n in names) or len(names) < 2:
        return None
    return (",".join(names) + "\n").encode()


def _float_text(a: np.ndarray):
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.cast(pa.array(a, type=pa.float64()), pa.string())
    with np.errstate(invalid="ignore"):
        mag = np.abs(a)
        whole = (a == np.floor(a)) & (mag < 1e15) & ~((a == 0) & np.signbit(a))  # -0.0 by repr
        plain = (mag >= _PLAIN_LOW) & (mag < _PLAIN_HIGH) & ~whole
    if whole.any():
        ints = pc.cast(pa.array(np.where(whole, a, 0.0).astype(np.int64)), pa.string())
        text = pc.if_else(pa.array(whole), pc.binary_join_element_wise(ints, "0", "."), text)
    other = ~(whole | plain)
    if other.any():
        fix = [repr(v) if v == v else "" for v in a[other].tolist()]  # NaN: an empty field
        text = pc.replace_with_mask(text, pa.array(other), pa.array(fix, type=pa.string()))
    return text


def _text(values):
    """One column's cells as an Arrow string array, or None for a kind left to pandas."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, np.ndarray):
        if values.dtype == np.float64:
            return _float_text(values)
        if values.dtype.kind in "iu":
            return pc.cast(pa.array(values), pa.string())
        if values.dtype == object:  # names (the simulator's pools): all str
            try:
                values = pa.array(values, type=pa.string())
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                return None
        else:
            return None
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):  # an Arrow string column
        values = pc.fill_null(values.cast(pa.string()), "")
        if pc.any(pc.match_substring_regex(values, _NEEDS_QUOTES)).as_py():
            return None
        return values
    return None


def rows_text(columns: Sequence) -> memoryview | None:
    """Lines of equal-length columns (numpy float64 or integer arrays, Arrow string arrays, object
    arrays of str), each ending in a newline (a view of Arrow's buffer); None if a column is of a
    kind left to pandas."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = []
    for c in columns:
        t = _text(c)
        if t is None:
            return None
        texts.append(t)
    if not len(texts[0]):
        return memoryview(b"")
    texts[-1] = pc.binary_join_element_wise(texts[-1], pa.scalar(""), "\n")  # the last cell + "\n"
    lines = pc.binary_join_element_wise(*texts, ",")
    del texts
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset:lines.offset + len(lines) + 1]
    return memoryview(lines.buffers()[2])[int(offsets[0]):int(offsets[-1])]


def frame_chunks(df, rows: int | None = None) -> Iterator[bytes] | None:
    """``df.to_csv(index=False)``'s bytes as chunks (header first), or None when ``df`` has a
    column kind (or name) this module leaves to pandas."""
    try:
        import pyarrow as pa
    except ImportError:
        return None
    head = header(list(df.columns))
    if head is None or df.columns.has_duplicates:
        return None
    cols = []
    for name in df.columns:
        s = df[name]
        if s.dtype == np.float64 or (s.dtype.kind in "iu" and isinstance(s.dtype, np.dtype)):
            cols.append(s.to_numpy())
        elif s.dtype == "str" or s.dtype == object:
            try:
                cols.append(pa.array(s, type=pa.large_string(), from_pandas=True))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                return None  # not all strings
        else:
            return None
    for c in cols:  # a kind that is left to pandas shows on a small slice
        if _text(c[:1]) is None:
            return None

    def chunks() -> Iterator[bytes]:
        yield head
        step = rows or chunk_rows(len(cols))
        for i in range(0, len(df), step):
            text = rows_text([c[i:i + step] for c in cols])
            if text is None:  # a string needing quotes further down: caller falls back
                raise Unsupported
            yield text

    return chunks()


def table_chunks(table, rows: int | None = None) -> Iterator[bytes]:
    """CSV chunks of an object with ``column_chunks(rows)`` yielding (names, columns) (the
    simulator's ``StepTable``: numpy columns, names as object arrays); raises ``Unsupported``
    where a column is left to pandas."""
    first = True
    for names, cols in table.column_chunks(rows or chunk_rows(len(table.columns))):
        if first:
            head = header(list(names))
            if head is None:
                raise Unsupported
            yield head
            first = False
        text = rows_text(cols)
        if text is None:
            raise Unsupported
        yield text
    if first:
        raise Unsupported  # no rows: pandas writes the header of the empty table


class Unsupported(Exception):
    """A chunk holds a value this module leaves to pandas (found after the first chunk)."""
