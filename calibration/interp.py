"""Interpolation primitives and fitted shape parameters behind ``calibration.profile`` lookups.

* ``Curve`` / ``Surface``: log-log interpolation of measured times over one or two axes;
* ``tile_spill_factor``: the extra row tiles of uniformly routed groups over balanced ones (a
  ragged grouped GEMM is read at the mean tokens per group, times this factor);
* ``fit_kv_tile``: the key tile of the decode attention kernel, fitted from its probe table;
* ``KindEfficiency`` / ``EfficiencyFit``: achieved fractions of the roofline per op kind, the
  transfer of measured efficiency to other hardware.

No torch; pure functions of tables.
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Mapping, Sequence

import numpy as np

from calibration.table import Table, as_table

_REL_TOL = 1e-9

#: M tile of the sm90 CUTLASS grouped GEMM behind torch._grouped_mm (its 128-row steps show in
#: grouped_mm_bf16.csv: time jumps between 128 and 192 and between 256 and 384 tokens per group).
GROUPED_M_TILE = 128


def tile_spill_factor(mean_tokens_per_group: float, tile: int = GROUPED_M_TILE) -> float:
    """Row tiles of uniformly routed groups over those of balanced groups at the same mean:
    ``E[ceil(X / tile)] / ceil(mean / tile)`` with X ~ Poisson(mean), X >= 1 (active groups).

    ``torch._grouped_mm`` picks its tile configuration from the mean tokens per group (the
    balanced table ``grouped_mm_bf16`` measures it at that mean), and a ragged group runs
    ceil(X / tile) row tiles, each streaming its expert's weights once: groups that spill over
    a tile boundary cost extra tiles that a balanced group of the mean size does not. The
    cost model multiplies the balanced time at the mean by this factor (>= 1)."""
    mu = float(mean_tokens_per_group)
    if mu <= 0:
        return 1.0
    from workloads.moe_routing import poisson_pmf

    hi = int(mu + 10 * math.sqrt(mu) + tile)
    x = np.arange(1, hi + 1)
    p = poisson_pmf(x, mu)
    tiles = float(np.sum(p * np.ceil(x / tile)) / max(np.sum(p), 1e-300))
    return max(tiles / math.ceil(mu / tile), 1.0)


# ----------------------------------------------------------------------------- helpers

KV_TILE_CANDIDATES = (1, 16, 32, 64, 128, 256)


def fit_kv_tile(df: Table | None) -> int:
    """Key-tile size of the decode attention kernel, fitted from ``attn_decode_tiles.csv``.

    The table times decode attention at contexts just above and below round lengths. For each
    candidate tile, every (batch, round length) group is fitted by least squares with
    ``t = a + b * ceil(C / tile) * tile``; the tile with the smallest summed squared relative
    residual wins (1 = no tiling). Without the table the answer is 1.
    """
    df = as_table(df)
    if df is None or df.empty:
        return 1
    # the probe's contexts sit at most 256 keys above multiples of 1024: group them by that base
    d = df.with_columns(base=(df["context"] // 1024).astype(int))
    groups = [g for _, g in d.groupby(["batch", "heads_q", "heads_kv", "head_dim_qk", "base"]) if len(g) >= 3]
    best, best_err = 1, math.inf
    for tile in KV_TILE_CANDIDATES:
        err = 0.0
        for g in groups:
            x = np.ceil(g.floats("context") / tile) * tile
            y = g.floats("seconds")
            a = np.vstack([np.ones_like(x), x]).T
            coef, *_ = np.linalg.lstsq(a, y, rcond=None)
            err += float(np.sum(((a @ coef - y) / y) ** 2))
        if err < best_err * (1 - 1e-6):
            best, best_err = tile, err
    return best


def interp1(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """``float(np.interp(x, xs, ys))`` for one point, the same double, without numpy's per-call
    overhead: ``xs`` strictly ascending (lists of floats, as the tables hold them). numpy's
    ``arr_interp``: the interval ``xs[j] <= x < xs[j + 1]`` by binary search, ``ys[j]`` at an
    exact knot or the last one, the end values outside, else ``slope * (x - xs[j]) + ys[j]``
    with ``slope = (ys[j+1] - ys[j]) / (xs[j+1] - xs[j])`` (and its NaN fallbacks);
    ``tests/test_step_cost_exactness.py`` compares it with ``np.interp`` bit for bit."""
    x = float(x)
    n = len(xs)
    if n == 1:  # numpy's one-knot branch: its value everywhere (NaN included)
        return ys[0]
    if x != x:
        return x
    if x > xs[-1]:
        return ys[-1]
    if x < xs[0]:
        return ys[0]
    j = bisect_right(xs, x) - 1
    if j == n - 1 or xs[j] == x:
        return ys[j]
    slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
    res = slope * (x - xs[j]) + ys[j]
    if res != res:
        res = slope * (x - xs[j + 1]) + ys[j + 1]
        if res != res and ys[j] == ys[j + 1]:
            res = ys[j]
    return res


def _interp_loglog(xs: np.ndarray, ys: np.ndarray, x: float) -> float | None:
    """Linear interpolation of log y over log x; None outside [xs[0], xs[-1]]."""
    if len(xs) == 0 or x <= 0 or x < xs[0] * (1 - _REL_TOL) or x > xs[-1] * (1 + _REL_TOL):
        return None
    if len(xs) == 1:
        return float(ys[0])
    return float(np.exp(np.interp(math.log(x), np.log(xs), np.log(ys))))


@dataclass(frozen=True)
class Curve:
    """Time over one size variable: log-log interpolation inside the measured sizes (None outside)."""

    xs: np.ndarray
    ys: np.ndarray

    @classmethod
    def of(cls, df: Table, x: str, y: str = "seconds") -> "Curve":
        """The fastest ``y`` per distinct ``x`` of the rows of ``df``, in ascending ``x``."""
        d = as_table(df).min_by(x, y)
        return cls(d.floats(x), d.floats(y))

    @cached_property
    def _knots(self) -> tuple[float, float, list[float], list[float]]:
        """The bounds ``_interp_loglog`` tests and the log knots it interpolates, computed once."""
        xs = self.xs
        lo, hi = (float(xs[0]) * (1 - _REL_TOL), float(xs[-1]) * (1 + _REL_TOL)) if len(xs) else (0.0, 0.0)
        return lo, hi, np.log(xs).tolist(), np.log(self.ys).tolist()

    def __call__(self, x: float) -> float | None:
        """``_interp_loglog(self.xs, self.ys, x)``, the same float, with the knots' logs kept."""
        n = len(self.xs)
        lo, hi, lx, ly = self._knots
        if n == 0 or x <= 0 or x < lo or x > hi:
            return None
        if n == 1:
            return float(self.ys[0])
        return float(np.exp(interp1(math.log(x), lx, ly)))


def single_threaded_scipy_blas() -> bool:
    """Run scipy's own OpenBLAS (not numpy's) on one thread, once per process; True when set.

    ``Surface``'s triangulation computes its barycentric transforms with it on the first lookup,
    tiny LAPACK calls (2x2) whose answers do not depend on the thread count; but OpenBLAS's thread
    pool spins on start, and on a loaded 2-core machine the first lookups of a process stalled
    for 0.1-1 s each (measured: 0.1 ms on one thread). ``planner.queueing`` keeps its solves
    small for the same reason."""
    return _set_scipy_blas_threads(1)


@lru_cache(maxsize=1)
def _set_scipy_blas_threads(n: int) -> bool:
    import ctypes

    try:
        # loaded alone (``workloads.scipy_parts``): ``scipy.linalg``'s package import costs ~0.2 s of CPU
        _fblas = sys.modules.get("scipy.linalg._fblas") or _extension_alone("scipy.linalg._fblas")
        if _fblas is None:
            from scipy.linalg import _fblas

        lib = ctypes.CDLL(_fblas.__file__)  # its symbols and those of the OpenBLAS it links
    except (ImportError, OSError):
        return False
    for name in ("scipy_openblas_set_num_threads", "openblas_set_num_threads"):
        setter = getattr(lib, name, None)
        if setter is not None:
            setter(n)
            return True
    return False


_QHULL = "scipy.spatial._qhull"


@lru_cache(maxsize=1)
def _delaunay_class() -> type:
    """``scipy.spatial.Delaunay``, the same class, loaded from its extension module alone.

    ``import scipy.spatial`` also imports its k-d trees, ``scipy.sparse`` and ``scipy.special``,
    none of which a triangulation uses (about 50 ms of CPU of a simulate process's start, bytecode
    cached, on this project's 2-core machine). The module is registered under its own name, so a
    later ``import scipy.spatial`` (``scipy.interpolate``, the fallback below) reuses it: the same
    ``Delaunay`` class either way (``tests/test_step_cost_exactness.py``). Where scipy's layout
    differs (no such file, a failed load), the package is imported as usual."""
    module = sys.modules.get(_QHULL) or _extension_alone(_QHULL)
    if module is not None:
        return module.Delaunay
    from scipy.spatial import Delaunay

    return Delaunay


def _extension_alone(name: str):
    """``workloads.scipy_parts.extension_alone`` (one home; a test replaces this name to force the fallback)."""
    from workloads.scipy_parts import extension_alone

    return extension_alone(name)


#: the tolerance of scipy's ``LinearNDInterpolator`` in its point-in-triangle tests (``100 * DBL_EPSILON``)
_IN_TRIANGLE_EPS = 100 * sys.float_info.epsilon


class LinearTriangles:
    """``scipy.interpolate.LinearNDInterpolator`` over 2-D points, the same floats, without
    importing ``scipy.interpolate`` (0.1-0.2 s of a process's start, most of it
    ``scipy.optimize``): the same Delaunay triangulation (``scipy.spatial``), the triangle
    its point location finds, and its barycentric sums in its order
    (``scipy/interpolate/_interpnd.pyx``, ``_do_evaluate``). Where the triangle found lies
    outside ``100 * DBL_EPSILON`` of the point (a point just outside the hull, which
    ``Delaunay.find_simplex`` accepts under a wider tolerance than the interpolator), the answer
    is scipy's own (imported then). ``tests/test_step_cost_exactness.py`` compares both bit for
    bit on every surface of the shipped profiles."""

    def __init__(self, points: np.ndarray, values: np.ndarray):
        self.tri = _delaunay_class()(np.ascontiguousarray(points, dtype=np.float64))
        self.values = np.ascontiguousarray(values, dtype=np.float64)
        # per triangle: its inverse transform (row-major) and offset, and its corners' values
        self._transforms = [tuple(t) for t in self.tri.transform.reshape(len(self.tri.simplices), 6).tolist()]
        vals = self.values.tolist()
        self._corner_values = [tuple(vals[m] for m in tri) for tri in self.tri.simplices.tolist()]
        self._scipy = None

    def __call__(self, x0: float, x1: float) -> float:
        """The interpolated value at (x0, x1); NaN outside the triangulation."""
        s = int(self.tri.find_simplex(np.array((x0, x1), dtype=np.float64)))
        if s < 0:
            return math.nan  # outside under the wider tolerance: outside under the interpolator's too
        t00, t01, t10, t11, r0, r1 = self._transforms[s]
        c0 = 0.0
        c0 += t00 * (x0 - r0)
        c0 += t01 * (x1 - r1)
        c1 = 0.0
        c1 += t10 * (x0 - r0)
        c1 += t11 * (x1 - r1)
        c2 = 1.0
        c2 -= c0
        c2 -= c1
        lo, hi = -_IN_TRIANGLE_EPS, 1 + _IN_TRIANGLE_EPS
        if not (lo <= c0 <= hi and lo <= c1 <= hi and lo <= c2 <= hi):
            return self._scipy_at(x0, x1)
        v0, v1, v2 = self._corner_values[s]
        out = 0.0
        out = out + c0 * v0
        out = out + c1 * v1
        out = out + c2 * v2
        return out

    def _scipy_at(self, x0: float, x1: float) -> float:
        if self._scipy is None:
            from scipy.interpolate import LinearNDInterpolator

            self._scipy = LinearNDInterpolator(self.tri, self.values)
        return float(self._scipy(x0, x1))


class Surface:
    """log t over (log a, log b) for scattered points; batch scaling outside the hull."""

    def __init__(self, df: Table, a: str, b: str):
        d = as_table(df).min_by([a, b], "seconds")
        self.by_a = {int(av): Curve.of(g, b) for av, g in d.groupby(a)}
        self.a_values = np.array(sorted(self.by_a), dtype=float)
        # column-major, as DataFrame.to_numpy gave it (the mean below sums in that order)
        pts = np.log(np.array([d.floats(a), d.floats(b)]).T)
        self._tri_input: tuple | None = None  # (points, log seconds): triangulated on first use (``_lin``)
        self._tri: LinearTriangles | None = None
        if len(d) >= 3 and np.linalg.matrix_rank(pts - pts.mean(0)) == 2:
            self._tri_input = (pts, np.log(d.floats("seconds")))

    @property
    def _lin(self) -> LinearTriangles | None:
        """The interpolator over the triangulation (None: fewer than 3 points, or collinear), built
        on first use: a profile holds many surfaces (16 MLA decode ones on H200), a run reads few,
        and each triangulation is ~1 ms of a process's first step."""
        if self._tri is None and self._tri_input is not None:
            single_threaded_scipy_blas()
            self._tri = LinearTriangles(*self._tri_input)
            self._tri_input = None
        return self._tri

    def __call__(self, av: float, bv: float) -> tuple[float, str] | None:
        if self._lin is not None:
            v = self._lin(math.log(av), math.log(bv))
            if math.isfinite(v):
                return math.exp(v), "interpolated"
        # outside the hull: nearest measured a (prefer the largest <= av) with bv in range
        below = [x for x in self.a_values if x <= av]
        order = sorted(below, reverse=True) + [x for x in self.a_values if x > av]
        for ref in order:
            t = self.by_a[int(ref)](bv)
            if t is not None:
                return float(t * av / ref), f"scaled linearly from batch {int(ref)}"
        return None


# ----------------------------------------------------------------------------- efficiency


@dataclass(frozen=True)
class KindEfficiency:
    """Achieved fraction of the roofline for one op kind, as a function of normalized intensity.

    ``log10_x`` are knots of ``x = (FLOPs / bytes) / (peak FLOP/s / peak bytes/s)`` (x < 1:
    memory-bound, x > 1: compute-bound); ``fraction`` the median of roofline time over measured
    time in each bin; ``latency_floor_s`` the shortest time measured for the kind.
    """

    log10_x: tuple[float, ...]
    fraction: tuple[float, ...]
    latency_floor_s: float
    points: int
    source: str = "fit"

    def at(self, x: float) -> float:
        if not self.log10_x:
            return 1.0
        return float(np.interp(math.log10(max(x, 1e-12)), self.log10_x, self.fraction))


@dataclass(frozen=True)
class EfficiencyFit:
    """Roofline efficiencies fitted to a profile, for out-of-grid points and other hardware.

    ``seconds(kind, flops, bytes, peak_flops_per_s, hbm_bytes_per_s)`` =
    ``max(roofline / fraction(x), latency floor)``, with the *target* device's peaks: the
    measured efficiency curve is carried over, the peaks come from the catalog.
    """

    reference_peak_flops_per_s: Mapping[str, float]
    reference_hbm_bytes_per_s: float
    hbm_fraction: float
    compute_fraction: Mapping[str, float]
    kinds: Mapping[str, KindEfficiency] = field(default_factory=dict)
    peaks_source: str = ""

    def seconds(self, kind: str, flops: float, bytes_moved: float, peak_flops_per_s: float,
                hbm_bytes_per_s: float) -> tuple[float, str]:
        ridge = peak_flops_per_s / hbm_bytes_per_s
        t_roof = max(flops / peak_flops_per_s, bytes_moved / hbm_bytes_per_s)
        x = (flops / bytes_moved) / ridge if bytes_moved > 0 else 1e6
        k = self.kinds.get(kind)
        if k is None:
            # a dtype without a measured GEMM has fraction 0: not a fraction of anything
            frac = self.hbm_fraction if x < 1 else min((v for v in self.compute_fraction.values() if v > 0),
                                                       default=1.0)
            return t_roof / frac, f"roofline x generic fraction {frac:.2f}"
        t = max(t_roof / k.at(x), k.latency_floor_s)
        return t, f"roofline x {kind} efficiency {k.at(x):.2f} ({k.source})"

    def with_override(self, kind: str, hbm_fraction: float, compute_fraction: float,
                      source: str) -> "EfficiencyFit":
        """Replace a kind's curve by a two-level one from published kernel figures."""
        k = KindEfficiency((-0.5, 0.5), (hbm_fraction, compute_fraction), 0.0, 0, source)
        return EfficiencyFit(self.reference_peak_flops_per_s, self.reference_hbm_bytes_per_s,
                             self.hbm_fraction, self.compute_fraction, {**self.kinds, kind: k},
                             self.peaks_source)


def call_latency_s(curves) -> float:
    """The fixed time of one call of a GEMM-shaped table: the intercept of its one-row (M = 1) times
    against the weight size n*k over its measured shapes (least squares on relative error), floored
    at 0; 0 with fewer than 3 shapes. ``curves`` maps (n, k) to a callable of M (None outside it)."""
    pts = [(n * k, t) for (n, k), f in curves.items() if (t := f(1.0)) is not None and t > 0]
    if len(pts) < 3:
        return 0.0
    x, y = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts])
    w = 1.0 / y
    a = np.linalg.lstsq(np.vstack([w, x * w]).T, np.ones_like(y), rcond=None)[0][0]
    return max(float(a), 0.0)


def scale_shape_s(t_ref_s: float, latency_s: float, size_ratio: float) -> float:
    """A measured shape's time carried to another of ``size_ratio`` times its n*k: the per-call
    latency stays, the rest scales (bytes of the weight, or FLOPs, at the same M)."""
    a = min(latency_s, t_ref_s)
    return a + (t_ref_s - a) * size_ratio


def nearest_shape(shapes, n: int, k: int) -> tuple[int, int] | None:
    """The measured ``(n, k)`` among ``shapes`` closest in log n + log k, within 8x in n*k (the
    rule every GEMM-shaped table uses to answer a shape it did not measure), or None."""
    best, best_d = None, math.inf
    for pn, pk in shapes:
        if not (1 / 8 <= (n * k) / (pn * pk) <= 8):
            continue
        d = abs(math.log(n / pn)) + abs(math.log(k / pk))
        if d < best_d:
            best, best_d = (pn, pk), d
    return best
