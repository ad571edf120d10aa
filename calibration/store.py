"""The one writer of calibration profile directories (and of the atomic-write rule the facade shares).

``clustersim.outputs`` writes every result file of the commands; ``calibrate`` measures into a
profile directory from inside ``calibration`` (``calibration.run``, ``calibration.groundtruth``),
which sits below the facade and may not import it. Everything calibration writes goes
through this module:

* ``ensure_dir(path)``: the profile directory (and parents);
* ``CsvTable``: a measurement table, one row appended (and fsynced) per point, so an
  interrupted run keeps what it measured and a rerun resumes;
* ``write_json(path, doc)``: a metadata sidecar, replaced atomically.

``write_atomic(path, write)`` is the atomic-write rule itself (a temporary file in the same
directory, flushed to disk, then ``os.replace``): a reader never sees a cut-off file.
``clustersim.outputs.OutputDir`` writes through it too.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["ensure_dir", "write_atomic", "write_json", "CsvTable"]


def ensure_dir(path: str | Path) -> Path:
    """Create ``path`` and its parents if missing; returns it as a Path."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` makes the file at a temporary path beside ``path`` (same suffix); it is then
    flushed to disk and renamed over ``path``. On any error the temporary file is removed and
    the error raised; ``path`` is then as it was."""
    import secrets  # here: it imports hashlib (OpenSSL), which a command that writes nothing never needs

    final = Path(path)
    tmp = final.parent / f".{final.stem}.tmp-{secrets.token_hex(4)}{final.suffix}"
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:  # on disk before the rename, so a crash cannot leave it empty
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, doc: Any) -> None:
    """``doc`` as indented JSON with sorted keys and a final newline, replaced atomically."""
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))


class CsvTable:
    """An append-only CSV table that skips rows already present (resume).

    ``key`` names the columns that identify a point; a row whose key is already in the
    file is not measured again. Every appended row is flushed at once, so an interrupted
    run keeps what it measured.
    """

    def __init__(self, path: Path, columns: Sequence[str], key: Sequence[str]):
        self.path = Path(path)
        self.columns = list(columns)
        self.key = list(key)
        self._done: set[tuple[str, ...]] = set()
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames != self.columns:
                    raise ValueError(
                        f"{self.path}: existing columns {reader.fieldnames} differ from {self.columns}"
                    )
                for row in reader:
                    self._done.add(self._key_of(row))
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", newline="") as fh:
                csv.writer(fh).writerow(self.columns)

    def _key_of(self, row: dict) -> tuple[str, ...]:
        return tuple(_cell(row[c]) for c in self.key)

    def has(self, **point) -> bool:
        return self._key_of(point) in self._done

    def append(self, row: dict) -> None:
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise KeyError(f"{self.path.name}: row lacks {missing}")
        with self.path.open("a", newline="") as fh:
            csv.writer(fh).writerow([_cell(row[c]) for c in self.columns])
            fh.flush()
            os.fsync(fh.fileno())
        self._done.add(self._key_of(row))

    def __len__(self) -> int:
        return len(self._done)


def _cell(value) -> str:
    """A table cell as written: booleans as 0/1, whole floats as integers, others to 6 digits."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    return str(value)
