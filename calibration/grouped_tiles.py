"""The kernel configuration ``torch._scaled_grouped_mm`` runs on sm90, and the rows it pads to.

PyTorch's FP8 grouped GEMM (``aten/src/ATen/native/cuda/ScaledGroupMM.cu``,
``dispatch_fp8_grouped_gemm_on_tile_size``) picks one CUTLASS configuration per call from the mean
rows per group ``M`` (total rows // groups) and the expert's ``N`` and ``K``:

* ``small`` (``M <= 128`` or ``N <= 128``): 64 x 128 x 128 tiles, ping-pong schedule;
* ``large`` (two of ``M``, ``N``, ``K`` at least 2048): 128 x 128 x 128 tiles, cooperative
  (256 x 128 x 128 with fast accumulation, which the profile's benchmark does not ask for);
* otherwise ``default``: 128 x 256 x 64 tiles, cooperative.

Every configuration runs on 2 x 2 thread-block clusters, and CUTLASS's grouped tile scheduler
rounds each group's row tiles up to whole clusters, so a group's rows are padded to
``tile_m * cluster_m``: 128 rows in ``small``, 256 in ``large`` and ``default``. The shipped
H200 table shows both: 192 tokens per group cost what 256 cost and 384 what 512 cost (within
4%), times below 128 tokens are flat, and DeepSeek-V2-Lite's 2048 x 1408 experts (K < 2048) run
``default`` from 192 to 1,536 tokens and turn faster at 2,048, where ``large`` starts.

``TiledCurve`` reads the measured curve of one (n, k, groups) at the padded rows, from the
measured points of the same configuration only (a curve does not interpolate across a switch).
Balanced groups (the table's own rows) pad exactly; routed groups of the same mean are read at
their mean rows and padded in expectation by ``calibration.interp.tile_spill_factor`` (128-row
steps), because padding the mean as well moved DeepSeek-V3's measured FP8 MoE layers further off
(``check --only measured``, family ``moe fp8``: worst hold-out point 12.0% -> 14.2%, medians
unchanged); a ragged group's partial tile seems to cost less than a full one (the table's own
192-token rows run 1-13% under the 256-token ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibration.interp import Curve

#: thread-block cluster rows of every configuration (``cute::Shape<_2, _2, _1>``)
CLUSTER_M = 2
#: two of M, N, K at least this: the ``large`` configuration
LARGE_DIM = 2048
#: M or N at most this: the ``small`` configuration
SMALL_DIM = 128
#: relative slack for float rows on a tile or table boundary (as ``calibration.interp.Curve``'s bounds)
_REL_TOL = 1e-9


@dataclass(frozen=True)
class GroupedConfig:
    """One CUTLASS configuration of the FP8 grouped GEMM: its name and tile rows (its tile columns
    do not enter the lookup: N is fixed per curve)."""

    name: str
    tile_m: int

    @property
    def m_step(self) -> int:
        """Rows a group is padded to a multiple of: its tile rows times the cluster's."""
        return self.tile_m * CLUSTER_M


def scaled_grouped_mm_config(m_per_group: float, n: int, k: int, fast_accum: bool = False) -> GroupedConfig:
    """The configuration ``torch._scaled_grouped_mm`` runs for a mean of ``m_per_group`` rows per
    group of ``[m, k] x [k, n]`` (the module docstring gives the rule and its source)."""
    m = math.floor(m_per_group)
    large = (m >= LARGE_DIM and k >= LARGE_DIM) or (m >= LARGE_DIM and n >= LARGE_DIM) or (
        k >= LARGE_DIM and n >= LARGE_DIM)
    if m <= SMALL_DIM or n <= SMALL_DIM:
        return GroupedConfig("small", 64)
    if large:
        return GroupedConfig("large", 256 if fast_accum else 128)
    return GroupedConfig("default", 128)


def padded_rows(m_per_group: float, config: GroupedConfig) -> float:
    """Rows per group the kernel's tiles cover: ``m_per_group`` rounded up to ``config.m_step``;
    in ``small`` the rows themselves (every group runs one cluster of row tiles there, so padding
    would merge all its measured points, and the table's curve keeps what still varies with M
    there, up to 15% slower at 1-2 rows than at 8-128 on 7168 x 2048)."""
    if m_per_group <= 0:
        return 0.0
    if config.name == "small":
        return float(m_per_group)
    return float(math.ceil(m_per_group / config.m_step - _REL_TOL) * config.m_step)


def _curve(points: list[tuple[float, float, float]]) -> Curve:
    """A curve over ``x`` of (x, rows measured, seconds) points: where several points share an
    ``x`` (rows padded alike) the one measured at the most rows, i.e. at ``x`` itself where the
    table has it (the fastest among equals)."""
    best: dict[float, tuple[float, float]] = {}
    for x, m, t in points:
        old = best.get(x)
        if old is None or m > old[0] or (m == old[0] and t < old[1]):
            best[x] = (m, t)
    keys = sorted(best)
    return Curve(np.array(keys, dtype=float), np.array([best[x][1] for x in keys], dtype=float))


class TiledCurve:
    """Time over tokens per group of one measured (n, k, groups) of ``grouped_mm_fp8``.

    A query is read at its padded rows on the curve of the measured points that ran its
    configuration (each point at its own padded rows; where several pad alike, the one measured at
    the padded rows); beyond that configuration's largest measured rows, up to the table's largest,
    the time grows in proportion to the padded rows (whole tiles of a compute-bound kernel); where
    its configuration has no answer, the curve of every point answers (None outside the table, as
    ``Curve``)."""

    def __init__(self, m_per_group: list[float], seconds: list[float], n: int, k: int, pad: bool = True):
        """``pad`` False: queries are read at their own rows (routed groups: their mean, which the
        caller's tile spill factor pads in expectation), still from their configuration's points."""
        self.n, self.k, self.pad = int(n), int(k), pad
        by_name: dict[str, list[tuple[float, float, float]]] = {}
        points = []
        for m, t in zip(m_per_group, seconds):
            cfg = scaled_grouped_mm_config(m, self.n, self.k)
            point = (padded_rows(m, cfg) if pad else float(m), float(m), float(t))
            by_name.setdefault(cfg.name, []).append(point)
            points.append(point)
        self.by_config = {name: _curve(v) for name, v in by_name.items()}
        self.all = _curve(points)

    def __call__(self, m_per_group: float) -> float | None:
        cfg = scaled_grouped_mm_config(m_per_group, self.n, self.k)
        x = padded_rows(m_per_group, cfg) if self.pad else float(m_per_group)
        curve = self.by_config.get(cfg.name)
        if curve is not None:
            t = curve(x)
            if t is not None:
                return t
            top = float(curve.xs[-1])
            if top < x <= float(self.all.xs[-1]) * (1 + _REL_TOL):  # past its last point, short of another's
                return float(curve.ys[-1]) * x / top
        return self.all(x)
