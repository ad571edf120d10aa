"""What one reference check is (``Check``), how it is judged, and where the reference data lives.

A check compares one figure the product predicts with one figure from outside: a published
number (``clustersim/data/reference/*.yaml``, each with its source, setting, status and
tolerance) or a point of our own GPU ground truth (``clustersim/data/measured``). Its status:

* ``ok``: the prediction is within the stated tolerance;
* ``known gap``: it is not, and the reference data names the mechanism the model lacks
  (``known_gap``); a gap may carry a hard ``bound`` beyond which it fails all the same;
* ``fail``: it is not, and nothing explains why.

The data ships inside the package (``importlib.resources``), so ``clustersim check`` works from
an installed wheel; ``tests/data/reference`` and ``tests/data/measured`` are links to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Check", "Tolerance", "reference_dir", "measured_dir", "load_reference", "load_yaml", "relative_error",
           "STATUSES", "role_of"]

#: the three outcomes, in the order the report sorts them (worst first)
STATUSES = ("fail", "known gap", "ok")


def data_dir() -> Path:
    """``clustersim/data`` of the installed package (a real directory: the package is not zipped)."""
    return Path(str(resources.files("clustersim").joinpath("data")))


def reference_dir() -> Path:
    """The published reference figures (one YAML per family, each figure with its source)."""
    return data_dir() / "reference"


def measured_dir() -> Path:
    """Our own ground truth measured on GPUs (``calibration.groundtruth`` tables)."""
    return data_dir() / "measured"


@lru_cache(maxsize=None)
def load_yaml(path: str) -> Any:
    """The parsed YAML file at ``path`` (cached; treat it as read-only)."""
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def load_reference(name: str) -> Any:
    """The parsed YAML ``name`` of the reference folder (cached; treat it as read-only)."""
    return load_yaml(str(reference_dir() / name))


def relative_error(predicted: float | None, published: float) -> float | None:
    """``predicted / published - 1`` (None without a prediction; the absolute difference is used
    by ``Tolerance`` when the published value is 0)."""
    if predicted is None or not math.isfinite(predicted):
        return None
    if published == 0:
        return None if predicted != 0 else 0.0
    return predicted / published - 1.0


def role_of(role: str | None) -> str:
    """The reference files' ``fit`` / ``validate`` (or ``calibration`` / ``validation``) rows as
    ``fit`` / ``holdout``; ``-`` where a figure played no part in fitting the model."""
    if role in ("fit", "calibration"):
        return "fit"
    if role in ("validate", "validation", "holdout"):
        return "holdout"
    return "-"


@dataclass(frozen=True)
class Tolerance:
    """How close is close enough: ``exact``, a relative ``rel``, an absolute ``abs`` (in the
    check's unit) or a relative ``band`` (lo, hi) that need not be symmetric."""

    rel: float | None = None
    abs: float | None = None
    band: tuple[float, float] | None = None
    exact: bool = False

    @classmethod
    def parse(cls, spec: Any, scale: float = 1.0) -> "Tolerance":
        """From a reference file's ``tolerance:`` (``exact``, ``{rel: x}``, ``{abs: x}``); an
        ``abs`` in SI units is divided by ``scale`` to land in the check's unit."""
        if spec == "exact":
            return cls(exact=True)
        if isinstance(spec, dict) and "rel" in spec:
            return cls(rel=float(spec["rel"]))
        if isinstance(spec, dict) and "abs" in spec:
            return cls(abs=float(spec["abs"]) / scale)
        raise ValueError(f"unknown tolerance {spec!r} (valid: exact, {{rel: x}}, {{abs: x}})")

    def within(self, predicted: float | None, published: float) -> bool:
        if predicted is None or not math.isfinite(predicted):
            return False
        if self.exact:  # equal up to the last bits of a unit conversion (GB/s from bytes/s)
            return math.isclose(predicted, published, rel_tol=1e-12, abs_tol=0.0)
        if self.abs is not None:
            return abs(predicted - published) <= self.abs * (1 + 1e-12)
        err = relative_error(predicted, published)
        if err is None:
            return False
        if self.band is not None:
            return self.band[0] <= err <= self.band[1]
        return abs(err) <= self.rel * (1 + 1e-12)

    def text(self) -> str:
        if self.exact:
            return "exact"
        if self.abs is not None:
            return f"±{self.abs:g}"
        if self.band is not None:
            return f"{self.band[0] * 100:+.3g}%..{self.band[1] * 100:+.3g}%"
        return f"±{self.rel * 100:.3g}%"


@dataclass(frozen=True)
class Check:
    """One predicted figure against one reference figure.

    ``family``: the group it belongs to (``accounting``, ``comm.deepep``, ``measured.mla decode``...).
    ``role``: ``fit`` (the figure was used to fit a parameter), ``holdout`` or ``-``.
    ``source_status``: how the source was read (P original, T full-text transcript, S secondary,
    D derived by arithmetic; ``measured`` for our own ground truth).
    ``known_gap``: the mechanism the model lacks, from the reference data (empty when none);
    ``gap_bound``: outside this the check fails even with a known gap.
    """

    family: str
    id: str
    source: str
    setting: str
    quantity: str
    unit: str
    published: float
    predicted: float | None
    tolerance: Tolerance
    role: str = "-"
    source_status: str = ""
    known_gap: str = ""
    gap_bound: Tolerance | None = None
    note: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def error(self) -> float | None:
        return relative_error(self.predicted, self.published)

    @property
    def within(self) -> bool:
        return self.tolerance.within(self.predicted, self.published)

    @property
    def status(self) -> str:
        if self.within:
            return "ok"
        if self.known_gap and (self.gap_bound is None or self.gap_bound.within(self.predicted, self.published)):
            return "known gap"
        return "fail"

    def to_dict(self) -> dict:
        """JSON-ready record (what ``clustersim check --json`` prints per check)."""
        return {"family": self.family, "id": self.id, "source": self.source, "setting": self.setting,
                "quantity": self.quantity, "unit": self.unit, "published": self.published,
                "predicted": self.predicted, "error": self.error, "tolerance": self.tolerance.text(),
                "status": self.status, "role": self.role, "source_status": self.source_status,
                "known_gap": self.known_gap, "note": self.note}


def setting_text(setting: Any) -> str:
    """A reference's ``setting:`` as one line (``key=value, ...``)."""
    if isinstance(setting, dict):
        return ", ".join(f"{k}={v}" for k, v in setting.items())
    return "" if setting is None else str(setting)
