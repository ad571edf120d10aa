"""DeepGEMM's FP8 kernels timed from their own measurement (a profile's ``deepgemm_fp8`` table).

The ``fused`` kernel set (``workloads.kernel_sets``) runs DeepSeek's FP8 GEMMs: DeepGEMM's dense
``fp8_gemm_nt`` (1x128 activation and 128x128 weight scales) and its grouped MoE GEMM, whose masked
layout a CUDA-graph decode step runs (every expert group holds up to M tokens). Without this table
the profile times them with stand-ins: the dense ones by the ``torch._scaled_mm`` table, the grouped
one by the fitted grouped roofline. Measured on an H200 (``benchmarks/deepgemm_probe.py``), both
stand-ins miss in a shape-dependent way: small decode groups are weight-read bound at a bandwidth
that depends on how many SMs the groups' tiles fill (two groups of a 4096 x 7168 expert take 23 us,
the roofline says 14), and DeepGEMM's dense kernel is slower than ``_scaled_mm`` below M ~ 512 and
faster above it.

The ``fused`` set reads the grouped answer for its FP8 MoE GEMMs. The dense answer serves ops
that name ``impl: deepgemm`` (``clustersim check`` family ``kernels.deepgemm_fp8``); the set's dense
FP8 GEMMs keep the ``torch._scaled_mm`` stand-in, because this H200 table of DeepGEMM 2.6.1,
transferred to H800, misses DeepGEMM's own published H800 table (the 2025-03 version) by -27% to
+31% where the stand-in is within 10% on 12 of its 18 dense shapes (``workloads.kernel_sets``).

``DeepGemmTable`` answers:

* ``dense_seconds(m, n, k)``: linear interpolation in M over the measured M of that (N, K) (a
  kernel's time is flat in M while it reads its weights and affine in M once its tiles compute:
  linear follows both and the knee between; log-log overshoots the knee by up to 70% when every
  other M is held out); below
  the smallest M its time (the weights are read whatever M), above the largest M scaled linearly
  in M (compute bound); None for an (N, K) not measured (the stand-in answers);
* ``grouped_seconds(groups, m, n, k, sizes)``: one family of rows of that (N, K), one curve over M
  per group count measured at three or more M (linear in M, clamped below, scaled above as for
  dense), then log-log interpolation in the group count between the two nearest measured counts
  (linear in the count outside them: each group is its own weights and tiles). ``sizes``
  ``equal`` (the default) reads the masked rows, every group exactly M tokens; ``routed`` reads the
  routed rows, multinomial group sizes of mean M (the equal-size curves where none were measured).
  A ragged batch is read at its active groups and its mean tokens per active group. An (N, K) not
  measured is read from the measured shapes at the same groups and M: linear in N x K between the two
  that bracket it, in proportion to N x K outside them (a group's weight bytes and FLOPs both grow
  with N x K; the curves keep the latency floor and the tile fill). Leaving each of the six measured
  expert shapes (DeepSeek-V3, V2, V2-Lite) out in turn, the other five predict it within a median
  5.9% (worst 35%, the smallest shape, extrapolated); the fitted roofline that timed such shapes
  before missed V2 and V2-Lite by a median 21% (worst 153%).

Why two families, and why the ``fused`` set reads the equal one. The kernel picks its block M (64
or 128) and N for the expected M it is given; a group past the block M takes another row tile,
which adds a wave of tiles or reads the group's weights again. Measured on the H200 (DeepGEMM
2.6.1), routed sizes of a mean near a tile edge run up to 1.58x the equal-size time (2 groups of
a mean of 256 tokens), and at 4-48 or ~1,024 tokens within 2%. DeepGEMM's own published H800
table (an older version, masked sizes drawn in 0.7-1.3 M) runs such sizes near equal-size rates:
the equal-size curves meet 4 of its 6 masked rows within 10%, the routed ones 2 (they miss the two
rows of 4 groups of 256 tokens by -27% and -33%; ``clustersim check kernels.deepgemm``). The evidence disagrees by version and device, so
the set keeps the equal-size curves; ``sizes="routed"`` (op meta ``group_sizes``) reads the other.

The table's rows (``kind``: masked, routed, contiguous, dense; ``groups``, ``m_per_group``,
``valid_m``, ``n``, ``k``, ``seconds``; ``split`` fit or holdout) come as columns from the
profile's table reader; contiguous rows (DeepGEMM's generator draws each group's rows in 0.7-1.3 M)
are not read here: ``clustersim check`` compares them with the masked curves (the prefill layout
held out).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from calibration.table import Table, as_table

#: the profile table (``calibration/profiles/<gpu>/deepgemm_fp8.csv``)
DEEPGEMM_TABLE = "deepgemm_fp8"
#: a group count's curve is used when measured at this many M values or more
_MIN_CURVE_POINTS = 3
#: group sizes of a grouped curve: every group exactly M tokens (the table's ``masked`` rows), or
#: drawn as routing draws them, a multinomial of mean M (``routed`` rows)
EQUAL, ROUTED = "equal", "routed"


def _at(curve: tuple[np.ndarray, np.ndarray], m: float) -> float:
    """Time at ``m`` on one curve: clamped below its smallest M, linear in M above its largest."""
    ms, ts = curve
    if m <= ms[0]:
        return float(ts[0])
    if m >= ms[-1]:
        return float(ts[-1] * m / ms[-1])
    return float(np.interp(m, ms, ts))


class DeepGemmTable:
    """Dense and masked-grouped curves of one profile's ``deepgemm_fp8`` table (module docstring)."""

    def __init__(self, table: Any):
        """``table``: a profile's ``Table`` (or a DataFrame, or a mapping of columns)."""
        t = as_table(table) if hasattr(table, "columns") else Table(table)
        secs, m = t.floats("seconds"), t.floats("m_per_group")
        t = t.where(np.isfinite(secs) & (secs > 0) & (m > 0))
        self.dense: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        #: grouped curves by group sizes (``equal``: the masked rows; ``routed``: multinomial sizes)
        self.grouped: dict[str, dict[tuple[int, int], dict[int, tuple[np.ndarray, np.ndarray]]]] = {
            EQUAL: {}, ROUTED: {}}
        for (kind, g, n, k), rows in t.groupby(["kind", "groups", "n", "k"]):
            if kind not in ("dense", "masked", "routed"):
                continue
            best = rows.min_by("m_per_group", "seconds")  # the fastest time at each distinct M, M sorted
            curve = (best.floats("m_per_group"), best.floats("seconds"))
            if kind == "dense":
                self.dense[(int(n), int(k))] = curve
            elif len(curve[0]) >= _MIN_CURVE_POINTS:
                self.grouped[EQUAL if kind == "masked" else ROUTED].setdefault((int(n), int(k)), {})[int(g)] = curve

    def dense_seconds(self, m: float, n: int, k: int) -> tuple[float, str] | None:
        """DeepGEMM's dense FP8 GEMM of ``[m, k] x [k, n]``; None for an (N, K) not measured."""
        curve = self.dense.get((int(n), int(k)))
        if curve is None or m <= 0:
            return None
        return _at(curve, m), _how(curve, m, "M")

    def grouped_seconds(self, groups: float, m_per_group: float, n: int, k: int,
                        sizes: str = EQUAL) -> tuple[float, str] | None:
        """DeepGEMM's masked grouped FP8 GEMM over ``groups`` groups of ``m_per_group`` tokens on
        average: ``sizes`` ``routed`` (multinomial group sizes, as token routing gives them; the
        equal-size curves where no routed curve of that (N, K) was measured) or ``equal``."""
        if groups <= 0 or m_per_group <= 0:
            return None
        for fam in (sizes, EQUAL):
            by_g = self.grouped[fam].get((int(n), int(k)))
            if by_g is not None:
                t, how = _across_groups(by_g, groups, m_per_group)
                return t, f"{fam} group sizes, {how}"
        fam = sizes if self.grouped[sizes] else EQUAL
        if not self.grouped[fam]:
            return None
        return _across_shapes(self.grouped[fam], groups, m_per_group, int(n) * int(k), fam)


def _across_groups(by_g: dict[int, tuple[np.ndarray, np.ndarray]], groups: float, m_per_group: float) -> tuple[float, str]:
    """One family's time at ``groups`` groups (``DeepGemmTable.grouped_seconds``)."""
    gs = sorted(by_g)
    if groups <= gs[0] or groups >= gs[-1] or len(gs) == 1:
        ref = gs[0] if groups <= gs[0] else gs[-1]
        t = _at(by_g[ref], m_per_group) * groups / ref
        how = "" if groups == ref else f", scaled linearly from {ref} groups"
        return t, _how(by_g[ref], m_per_group, "M") + how
    hi = next(g for g in gs if g >= groups)
    if hi == groups:
        return _at(by_g[hi], m_per_group), _how(by_g[hi], m_per_group, "M")
    lo = gs[gs.index(hi) - 1]
    t_lo, t_hi = _at(by_g[lo], m_per_group), _at(by_g[hi], m_per_group)
    w = (math.log(groups) - math.log(lo)) / (math.log(hi) - math.log(lo))
    t = math.exp(math.log(t_lo) + w * (math.log(t_hi) - math.log(t_lo)))
    return t, _how(by_g[hi], m_per_group, "M") + f", log-log between {lo} and {hi} groups"


def _across_shapes(family: dict, groups: float, m_per_group: float, nk: int, fam: str) -> tuple[float, str]:
    """An (N, K) not measured, from the measured shapes of one family at the same groups and M: linear in
    N x K between the two that bracket it, scaled in proportion to N x K from the nearest outside them
    (the weights a group reads and its FLOPs both grow with N x K; the curves keep the rest)."""
    sizes = sorted((a * b, (a, b)) for a, b in family)
    below = [s for s in sizes if s[0] <= nk]
    above = [s for s in sizes if s[0] >= nk]
    name = lambda s: f"{s[1][0]}x{s[1][1]}"
    if below and above:
        lo, hi = below[-1], above[0]
        t_lo = _across_groups(family[lo[1]], groups, m_per_group)[0]
        if hi[0] == lo[0]:
            return t_lo, f"{fam} group sizes, as {name(lo)} (the same N x K)"
        t_hi = _across_groups(family[hi[1]], groups, m_per_group)[0]
        t = t_lo + (t_hi - t_lo) * (nk - lo[0]) / (hi[0] - lo[0])
        return t, f"{fam} group sizes, interpolated in N x K between {name(lo)} and {name(hi)}"
    near = below[-1] if below else above[0]
    t = _across_groups(family[near[1]], groups, m_per_group)[0] * nk / near[0]
    return t, f"{fam} group sizes, scaled in proportion to N x K from {name(near)}"


def _how(curve: tuple[np.ndarray, np.ndarray], m: float, name: str) -> str:
    ms = curve[0]
    if m <= ms[0]:
        return f"at the smallest measured {name} ({ms[0]:g})"
    if m >= ms[-1]:
        return f"scaled linearly in {name} from {ms[-1]:g}"
    return f"interpolated in {name}"
