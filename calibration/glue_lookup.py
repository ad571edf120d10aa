"""MLA's split/concat/copy kernels, timed from ``mla_glue_bf16.csv`` (no torch).

The non-absorbed prefill and the absorbed decode of an MLA model in plain torch run kernels no
GEMM or attention table holds (``calibration.bench.mla_glue`` times them alone, on the strided
views the model hands them): ``cat(q_nope, rope(q_pe))`` and ``cat(k_nope, k_pe broadcast)`` per
head in prefill, the latent query ``cat`` of the head-major bmm output and the head merge in
decode, RoPE of q and of k apart, the RMSNorm of a strided latent view, two cache copies. They
read strided or broadcast inputs, so their bandwidth is well below a contiguous copy's (the
per-head cats reach ~950 GB/s at 65536 tokens, a copy 4 TB/s); ``workloads.ops_blocks.mla_glue``
builds them for the eager kernel set.

Lookup: log-log in tokens per (op, heads); above the largest measured tokens linear in tokens,
below the smallest the smallest's time (launch floor); a head count not measured runs as more
(or fewer) token rows of the nearest measured one in log heads (``tokens x heads / heads'``:
the kernels are elementwise over token-head rows).
"""

from __future__ import annotations

import math

from calibration.interp import Curve
from calibration.table import Table, as_table

GLUE_TABLE = "mla_glue_bf16"


class GlueTable:
    """``mla_glue_bf16`` as one time-over-tokens curve per (op, heads)."""

    def __init__(self, df: Table | None):
        self.curves: dict[tuple[str, int], Curve] = {}
        df = as_table(df)
        if df is None or df.empty:
            return
        for (op, h), d in df.groupby(["op", "heads"]):
            self.curves[(str(op), int(h))] = Curve.of(d, "tokens")

    def __bool__(self) -> bool:
        return bool(self.curves)

    def has(self, op: str) -> bool:
        return any(o == op for o, _ in self.curves)

    def floor(self, op: str) -> float:
        """Shortest time measured for ``op`` (its launch floor), 0 when not measured."""
        ys = [float(c.ys.min()) for (o, _), c in self.curves.items() if o == op]
        return min(ys) if ys else 0.0

    def seconds(self, op: str, tokens: float, heads: int) -> tuple[float, str] | None:
        """Time of glue kernel ``op`` over ``tokens`` rows of ``heads`` heads, or None."""
        hs = sorted(h for o, h in self.curves if o == op)
        if not hs or tokens <= 0:
            return None if not hs else (0.0, f"{op}: empty")
        h = min(hs, key=lambda x: abs(math.log(max(heads, 1) / x)))
        rows = tokens * max(heads, 1) / h
        c = self.curves[(op, h)]
        how = f"{op}" + ("" if h == heads else f", {heads} heads as {rows:g} rows of {h}")
        if rows > c.xs[-1]:
            return float(c.ys[-1] * rows / c.xs[-1]), how + f", linear beyond {c.xs[-1]:.0f} tokens"
        if rows < c.xs[0]:
            return float(c.ys[0]), how + ", latency floor"
        return c(rows), how + ", interpolated"
