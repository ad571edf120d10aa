"""Grouped GEMM with empty groups: the routed experts of an MoE layer at few tokens per rank (no torch).

What ``grouped_mm_sparse_bf16.csv`` measured (``calibration.bench.grouped_sparse``:
``torch._grouped_mm`` over G groups of which A hold m tokens each, H200, 2026-12-01):

* **an empty group costs nothing**: A active groups take the same time among 64 or 256 groups
  (DeepSeek-V3 gate/up, A = 8, m = 1: 181 us of 64 and 194 us of 256; A = 64: 1296 / 1300 us),
  and as much as a dense grouped GEMM of A groups (``grouped_mm_bf16.csv`` at 8 groups, m = 1:
  185 us). So an MoE layer's expert GEMM is a grouped GEMM over its *active* experts
  (``workloads.moe_routing.expected_active_experts``) at the tokens each of them receives;
* **below about 8 active groups the time no longer halves with the groups**: one expert's
  GEMM at one token is 37 us (1.6 TB/s of its weights), two 54 us, four 96 us: too few thread
  blocks stream the weights to reach the HBM rate (a 4096 x 7168 expert is 16-32 output tiles
  for 132 SMs), so the time per active group grows as the groups get fewer.

:class:`SparseGroupedTable` interpolates that table in (log A, log m) per expert shape; the
profile (``Profile.grouped_gemm_seconds``) reads it where the tokens per active expert are
within its grid (m <= 16) and the dense ragged table at ``groups = active`` above it.
"""

from __future__ import annotations

from calibration.interp import Surface, nearest_shape
from calibration.table import Table, as_table

#: the table the lookups read
SPARSE_TABLE = "grouped_mm_sparse_bf16"


class SparseGroupedTable:
    """``grouped_mm_sparse_bf16`` per expert shape (n, k): time over (active groups, tokens each).

    The group count G of a row is ignored (empty groups are free, see the module docstring):
    where several G measured the same (A, m), the fastest is kept, as every table keeps its
    fastest repeat."""

    def __init__(self, df: Table | None):
        self._by_shape: dict[tuple[int, int], Surface] = {}
        self._max_m: dict[tuple[int, int], float] = {}
        df = as_table(df)
        if df is None or df.empty:
            return
        for (n, k), d in df.groupby(["n", "k"]):
            d = d.renamed({"active_groups": "a", "m_per_active": "m"})
            self._by_shape[(int(n), int(k))] = Surface(d, "a", "m")
            self._max_m[(int(n), int(k))] = float(d.max("m"))

    def __bool__(self) -> bool:
        return bool(self._by_shape)

    def shapes(self) -> list[tuple[int, int]]:
        return sorted(self._by_shape)

    def nearest_shape(self, n: int, k: int) -> tuple[int, int] | None:
        """The measured (n, k) closest to (n, k), by the GEMM tables' rule (``interp.nearest_shape``)."""
        return nearest_shape(self._by_shape, n, k)

    def max_tokens_per_active(self, n: int, k: int) -> float:
        """The largest tokens per active group measured for the shape answering (n, k), 0 if none."""
        ref = (n, k) if (n, k) in self._by_shape else self.nearest_shape(n, k)
        return self._max_m.get(ref, 0.0) if ref else 0.0

    def seconds(self, n: int, k: int, active: float, tokens_per_active: float) -> tuple[float, str] | None:
        """Time of a grouped GEMM ``[m, k] x [k, n]`` over ``active`` non-empty groups of
        ``tokens_per_active`` tokens each; None when no shape within 8x is measured or m is
        above the grid. Another (n, k) scales by the weight bytes n*k (the regime is
        weight-bound at these m); more active groups than measured scale linearly."""
        ref = (n, k) if (n, k) in self._by_shape else self.nearest_shape(n, k)
        if ref is None or active <= 0:
            return None
        m = max(float(tokens_per_active), 1.0)
        if m > self._max_m[ref] * (1 + 1e-9):
            return None
        r = self._by_shape[ref](max(active, 1.0), m)
        if r is None:
            return None
        t, how = r
        if active < 1.0:  # a fraction of a step touches one expert: expected time over steps
            t *= active
        how = f"{active:.3g} active groups x {m:.3g} tokens, {how.replace('batch', 'active groups')}"
        if ref != (n, k):
            t *= (n * k) / (ref[0] * ref[1])
            how += f", scaled by weight bytes from n={ref[0]} k={ref[1]}"
        return t, how
