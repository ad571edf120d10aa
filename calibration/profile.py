"""Calibration profiles: measured per-op tables and their lookups (no torch).

A profile is a directory of CSV tables written by ``calibration.run`` plus ``metadata.json``.
Shipped profiles live in ``calibration/profiles/<name>/`` and load by name
(``load_profile("h200")``); any directory loads by path.

Every lookup returns ``(seconds, source)`` or ``None`` when the point is outside what the
tables can answer; ``source`` names the table and how the value was obtained. Rules:

* **gemm** - log-log linear interpolation in M over the measured (N, K) pair. For an
  unmeasured (N, K) the nearest measured pair (in log N + log K, within 8x in N*K) is
  interpolated at the same M and scaled by the FLOPs ratio ``N*K / (N'*K')``; at fixed M
  this ratio is also the weight-bytes ratio, so it holds both in the memory-bound (small M)
  and compute-bound (large M) regimes, to first order.
* **grouped_gemm** - a ragged grouped GEMM runs only its ``active_groups`` (the touched experts,
  ``calibration.moe_lookup``): ``grouped_mm_sparse_bf16`` at up to 16 tokens per active group,
  else ``grouped_mm_bf16`` at ``groups = active`` and the mean tokens per group, times the
  routed tile spill; as gemm in tokens per group; between measured group counts log-log
  interpolation in groups, beyond them linear scaling in groups. An FP8 grouped GEMM of torch's
  kernels (the ``eager`` set) reads ``grouped_mm_fp8`` (``torch._scaled_grouped_mm``, rowwise
  scales) the same way, also at few tokens per group (no sparse FP8 table); the ``fused`` set's
  FP8 MoE kernel (DeepGEMM class) and a profile without the table answer None (fitted roofline).
* **attention** - piecewise-linear interpolation of log time over (log batch, log seq or
  context) inside the measured points' hull, else linear batch scaling from the nearest
  measured batch at the same seq/context. Head configs not measured are looked up in the
  measured config with the same head dims and the nearest GQA ratio as an equivalent batch:
  prefill ``B * Hq / Hq'``, decode ``B * Hkv / Hkv'`` (the kernels' work items are
  (sequence, head) pairs, so a small batch of many heads fills the GPU like a larger batch).
  A prefill whose sequences hold cached context (chunked prefill, prefix hits; the op's
  ``shape["context"]``) is read from ``attn_prefill_ctx_bf16`` (``calibration.chunk_lookup``:
  linear in context, log-log in new tokens, pairs ratio outside the measured contexts); a
  profile without that table answers None for it (the cost model's fitted roofline, which
  counts the context's pairs), never the context-free time.
  Decode keys are rounded up to the kernel's key tile, fitted from ``attn_decode_tiles.csv``;
  per implementation (``calibration.decode_lookup``): torch's SDPA costs at least the serial key
  walk of ``attn_decode_long_bf16`` when the keys end inside a tile, split-KV reads the table at
  its split plus the combine.
* **moe_topk / moe_scatter** - curves in bytes, like elementwise.
* **rmsnorm** (a plain norm whose op carries its row ``width``) - ``rmsnorm_bf16.csv`` in rows
  and width: at few rows the time follows the width, not the bytes.
* **mla_decode** - per implementation (``sdpa`` | ``bmm``) from ``mla_decode_impls_bf16`` (C + 1
  keys) then ``mla_decode_bf16``, linear in keys beyond them; FlashMLA (published figures in
  the cost model) or no implementation: the faster measured one; heads interpolated in log
  space between measured head counts, clamped outside them.
* **mla_glue** - MLA's split/concat/copy kernels from ``mla_glue_bf16`` (``calibration.glue_lookup``).
* **elementwise** - log-log in bytes; above the largest size, linear at its bandwidth;
  below the smallest, the smallest time (a latency floor).
* **collective** (``collective_<op>.csv``) and **MoE dispatch/combine** (``moe_dispatch.csv``) -
  keyed by fabric (a tier technology, e.g. ``nvlink``) and group size, and only for the device
  the profile was measured on: log-log in bytes per rank (tokens per rank), the smallest size's
  time below the grid, linear in bytes above it; None for an unmeasured fabric, group or shape.

``MeasuredProfile.efficiency_fit()`` condenses the tables into achieved-fraction-of-roofline curves
per op kind; see :class:`EfficiencyFit` and README.md for the transfer to other hardware.
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from hardware.dtypes import dtype_bytes
from workloads.kernel_sets import DEEPGEMM, FLASHMLA, ROWWISE_FP8_GEMM

# The table readers and lookups (numpy) are imported where a table is read, not with this module:
# a command that reads no table (an estimate of a collective on another device than the
# profile's) loads a profile without numpy (issue 15, start-up; tests/test_startup.py).
if TYPE_CHECKING:
    import numpy as np

    from calibration.chunk_lookup import ChunkPrefillTable
    from calibration.decode_lookup import MlaDecodeTables, SerialDecodeFit
    from calibration.deepgemm_lookup import DeepGemmTable
    from calibration.glue_lookup import GlueTable
    from calibration.interp import EfficiencyFit
    from calibration.moe_lookup import SparseGroupedTable
    from calibration.table import Table

#: the FP8 ragged grouped GEMM table (``calibration.bench.grouped_gemm.run_grouped_mm_fp8``)
FP8_GROUPED_TABLE = "grouped_mm_fp8"
#: the profile's public helpers, re-exported from their modules on first access
_REEXPORTS = {name: "calibration.interp" for name in (
    "GROUPED_M_TILE", "KV_TILE_CANDIDATES", "Curve", "EfficiencyFit", "KindEfficiency", "Surface", "fit_kv_tile",
    "nearest_shape", "tile_spill_factor", "call_latency_s", "scale_shape_s")}


def __getattr__(name: str):
    if name in _REEXPORTS:
        from importlib import import_module

        return getattr(import_module(_REEXPORTS[name]), name)
    raise AttributeError(f"module 'calibration.profile' has no attribute {name!r}")


_UNSEEN = object()  # a memo's "not looked up yet"


class LazyTables(Mapping):
    """A profile directory's CSV tables by stem, each read (``calibration.table.Table``, no
    pandas) on first access; ``fit_only``: a table with a ``split`` column keeps its ``fit`` rows
    (``_fit_rows``)."""

    def __init__(self, path: Path, fit_only: bool = False):
        self._files = {f.stem: f for f in sorted(Path(path).glob("*.csv"))}
        self._fit_only = fit_only
        self._read: dict = {}

    def __getitem__(self, stem: str) -> Table:
        from calibration.table import Table

        df = self._read.get(stem)
        if df is None:
            df = Table.read_csv(self._files[stem])
            df = self._read[stem] = _fit_rows(df) if self._fit_only else df
        return df

    def __iter__(self):
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, stem: object) -> bool:
        return stem in self._files


def _median(x: np.ndarray) -> float:
    """``float(np.median(x))`` of a non-empty 1-D array, the same float (the middle value, or
    the two middle ones' sum halved, as ``np.mean`` of two takes it; NaN when any is), at a
    tenth of its cost (42 calls in a process's first step)."""
    import numpy as np

    s = np.sort(x)
    n = s.size
    if np.isnan(s[-1]):  # the sort puts NaN last
        return math.nan
    if n % 2:
        return float(s[n // 2])
    return float((s[n // 2 - 1] + s[n // 2]) / 2.0)


class UnknownProfileError(LookupError):
    """No profile of that name or path; the message lists the shipped names."""


def shipped_profiles() -> list[str]:
    """Names of the profiles shipped inside the package."""
    root = resources.files("calibration") / "profiles"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "metadata.json").is_file())


def load_profile(name_or_path: str | Path, fit_only: bool = False) -> MeasuredProfile:
    """Load a shipped profile by name (``"h200"``) or any profile directory by path.
    ``fit_only``: tables with a ``split`` column keep only their ``fit`` rows (to judge the
    lookups on the ``holdout`` rows)."""
    path = Path(name_or_path)
    if path.is_dir():
        return MeasuredProfile(path, name=path.name, fit_only=fit_only)
    names = shipped_profiles()
    key = str(name_or_path).lower()
    if key in names:
        res = resources.files("calibration") / "profiles" / key
        with resources.as_file(res) as p:
            return MeasuredProfile(Path(p), name=key, shipped=True, fit_only=fit_only)
    raise UnknownProfileError(f"unknown profile {name_or_path!r} (shipped: {', '.join(names) or 'none'}; "
                              "or give a directory)")


def device_of_gpu(gpu_name: str):
    """The catalog ``DeviceSpec`` a GPU name (``metadata.json``'s ``gpu_name``, e.g. "NVIDIA H200")
    denotes, or None (a CPU, a GPU the catalog lacks)."""
    gpu = str(gpu_name).lower().replace("nvidia", "").strip()
    if not gpu or gpu.startswith("cpu"):
        return None
    from hardware.catalog import get_device

    try:
        return get_device(gpu.split()[0])
    except LookupError:
        return None


# ----------------------------------------------------------------------------- profile


@functools.lru_cache(maxsize=4096)
def _batch_note(heads_q: int, heads_kv: int, eq_batch: float, cfg_q: int, cfg_kv: int) -> str:
    """The source's note of an attention lookup read as an equivalent batch of a measured head
    configuration (few distinct values per run; ``:g`` of a float is not cheap)."""
    return f", {heads_q}q/{heads_kv}kv as batch {eq_batch:g} of {cfg_q}q/{cfg_kv}kv"


def _nearest_attn_config(surfaces, hq, hkv, dqk, dv):
    """The head configuration of ``surfaces`` that times attention with (hq, hkv, dqk, dv): itself if
    measured, else the one of the same head dims nearest in GQA ratio, then in query heads."""
    if (hq, hkv, dqk, dv) in surfaces:
        return (hq, hkv, dqk, dv)
    same = [c for c in surfaces if c[2] == dqk and c[3] == dv]
    if not same:
        return None
    ratio = hq / max(hkv, 1)
    return min(same, key=lambda c: (abs(math.log((c[0] / c[1]) / ratio)), abs(math.log(c[0] / hq))))


class MeasuredProfile:
    """Measured per-op tables of one device with interpolating lookups (read-only).

    Answers the ``calibration.protocol.Profile`` protocol (what the cost model asks of a
    profile); it has no fallback: every op is timed by its own tables or its own fit.
    """

    fallback = None
    fallback_tables: tuple[str, ...] = ()

    def __init__(self, path: Path, name: str = "", shipped: bool = False, fit_only: bool = False):
        self.path = Path(path)
        self.name = name or self.path.name
        self.shipped = shipped  # inside the package (load by name), not a user's directory
        self.fit_only = fit_only  # tables with a ``split`` column keep their ``fit`` rows only
        meta_path = self.path / "metadata.json"
        self.metadata: Mapping = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        # each table is read, and each lookup below built, on first use: a command that times one
        # collective reads no table at all
        self.tables: Mapping[str, Table] = LazyTables(self.path, fit_only)
        self._attn_configs: dict = {}  # _pick_attn's answers
        self._gemm_refs: dict = {}  # (dtype, n, k) -> the measured GEMM shape answering it (nearest_shape)
        self._grouped_lat: dict = {}  # (id of a grouped table's dict, groups) -> its per-call latency

    @functools.cached_property
    def _gemm(self) -> dict:
        return {dt: self._pairs(self.tables.get(f"gemm_{dt}"), ["n", "k"], "m") for dt in ("bf16", "fp8", "fp8_rowwise")}

    @functools.cached_property
    def _gemm_latency_s(self) -> dict:
        """Per GEMM table, the fixed time of a call (``interp.call_latency_s``) kept when a shape is
        read from another one."""
        from calibration.interp import call_latency_s

        return {dt: call_latency_s(pairs) for dt, pairs in self._gemm.items()}

    def _gemm_dtype(self, op) -> str:
        """The GEMM table key of ``op``: ``fp8_rowwise`` for an FP8 GEMM naming the rowwise-scaled
        ``torch._scaled_mm`` (the eager set) when this profile measured it, else the op's dtype."""
        if op.dtype == "fp8" and op.meta.get("impl") == ROWWISE_FP8_GEMM and self._gemm.get("fp8_rowwise"):
            return "fp8_rowwise"
        return op.dtype

    @functools.cached_property
    def _grouped(self) -> dict:
        return self._grouped_table("grouped_gemm_bf16")

    @functools.cached_property
    def _ragged(self) -> dict:
        return self._grouped_table("grouped_mm_bf16")

    @functools.cached_property
    def _equal_fp8(self) -> dict:
        """``grouped_mm_fp8`` for equal groups, per (n, k) and groups: read per kernel configuration
        at the rows its tiles pad to (``calibration.grouped_tiles``)."""
        return self._tiled_fp8(pad=True)

    @functools.cached_property
    def _routed_fp8(self) -> dict:
        """``grouped_mm_fp8`` for routed groups: per kernel configuration, at the mean rows."""
        return self._tiled_fp8(pad=False)

    def _tiled_fp8(self, pad: bool) -> dict:
        from calibration.grouped_tiles import TiledCurve

        return self._grouped_table(FP8_GROUPED_TABLE, lambda d, n, k: TiledCurve(
            d.floats("m_per_group").tolist(), d.floats("seconds").tolist(), n, k, pad=pad))

    @functools.cached_property
    def _sparse(self) -> SparseGroupedTable:
        from calibration.moe_lookup import SPARSE_TABLE, SparseGroupedTable

        return SparseGroupedTable(self.tables.get(SPARSE_TABLE))

    @functools.cached_property
    def _prefill(self) -> dict:
        return self._surfaces("attn_prefill_bf16", ["heads_q", "heads_kv", "head_dim_qk", "head_dim_v"], "batch", "seq")

    @functools.cached_property
    def _decode(self) -> dict:
        return self._surfaces("attn_decode_bf16", ["heads_q", "heads_kv", "head_dim_qk", "head_dim_v"],
                              "batch", "context")

    @functools.cached_property
    def _chunk(self) -> ChunkPrefillTable:
        from calibration.chunk_lookup import CTX_TABLE, ChunkPrefillTable

        return ChunkPrefillTable(self.tables.get(CTX_TABLE))

    @functools.cached_property
    def _mla(self) -> MlaDecodeTables:
        from calibration.decode_lookup import MlaDecodeTables

        return MlaDecodeTables(self.tables)

    @functools.cached_property
    def _deepgemm(self) -> DeepGemmTable | None:
        from calibration.deepgemm_lookup import DEEPGEMM_TABLE, DeepGemmTable

        return DeepGemmTable(self.tables[DEEPGEMM_TABLE]) if DEEPGEMM_TABLE in self.tables else None

    def _deepgemm_seconds(self, op) -> tuple[float, str] | None:
        """A ``fused``-set FP8 GEMM (DeepGEMM: dense, or the MoE grouped kernel) from this
        profile's own DeepGEMM table (``calibration.deepgemm_lookup``), or None (not measured)."""
        table = self._deepgemm
        if table is None or op.dtype != "fp8":
            return None
        from calibration.deepgemm_lookup import DEEPGEMM_TABLE, EQUAL

        s = op.shape
        if op.kind == "gemm":
            r = table.dense_seconds(s["m"], s["n"], s["k"]) if op.meta.get("impl") == DEEPGEMM else None
        elif _torch_grouped_kernel(op):
            r = None
        else:
            active = s.get("active_groups") or s["groups"]
            tokens = s.get("tokens_total")
            r = table.grouped_seconds(active, tokens / active if tokens else s["m_per_group"], s["n"], s["k"],
                                      op.meta.get("group_sizes", EQUAL))
        return None if r is None else (r[0], self._src(DEEPGEMM_TABLE, r[1]))

    @functools.cached_property
    def _glue(self) -> GlueTable:
        from calibration.glue_lookup import GLUE_TABLE, GlueTable

        return GlueTable(self.tables.get(GLUE_TABLE))

    @functools.cached_property
    def _serial(self) -> SerialDecodeFit:
        from calibration.decode_lookup import LONG_TABLE, SerialDecodeFit

        return SerialDecodeFit(self.tables.get(LONG_TABLE))

    @functools.cached_property
    def _ew(self) -> tuple[dict, dict]:
        """Memory-bound curves by op and the table each comes from."""
        from calibration.interp import Curve

        ew = self.tables.get("elementwise_bf16")
        curves = {} if ew is None else {op: Curve.of(d, "bytes") for op, d in ew.groupby("op")}
        tables = {op: "elementwise_bf16" for op in curves}
        tk = self.tables.get("moe_topk")
        if tk is not None and not tk.empty:  # keyed by the bf16 router logits read, T*E*2 bytes
            curves["moe_topk"] = Curve.of(tk.with_columns(bytes=tk["tokens"] * tk["experts"] * 2), "bytes")
            tables["moe_topk"] = "moe_topk"
        sc = self.tables.get("moe_scatter")
        if sc is not None and not sc.empty:
            curves["moe_scatter"] = Curve.of(sc, "bytes")
            tables["moe_scatter"] = "moe_scatter"
        return curves, tables

    @property
    def _elementwise(self) -> dict:
        return self._ew[0]

    @property
    def _ew_table(self) -> dict:
        return self._ew[1]

    @functools.cached_property
    def decode_kv_tile(self) -> int:
        from calibration.interp import fit_kv_tile

        return fit_kv_tile(self.tables.get("attn_decode_tiles"))

    @functools.cached_property
    def _norm(self) -> dict:
        from calibration.interp import Curve

        nt = self.tables.get("rmsnorm_bf16")
        return {} if nt is None else {int(w): Curve.of(d, "rows") for w, d in nt.groupby("width")}

    @functools.cached_property
    def _floors(self) -> dict:
        """Launch/latency floors (shortest measured time) per table, read by floor_seconds."""
        return {stem: float(df.min("seconds")) for stem, df in self.tables.items()
                if "seconds" in df and not df.empty}

    @functools.cached_property
    def _coll(self) -> dict:
        """Communication, keyed by fabric and group size (tables without a fabric column never match)."""
        from calibration.interp import Curve

        out = {}
        for stem in self.tables:
            if not stem.startswith("collective_"):
                continue
            df = self.tables[stem]
            if "fabric" in df and not df.empty:
                out[stem[len("collective_"):]] = {(str(f), int(g)): Curve.of(d, "bytes_per_rank")
                                                  for (f, g), d in df.groupby(["fabric", "group"])}
        return out

    @functools.cached_property
    def _dispatch(self) -> dict:
        from calibration.interp import Curve

        dd = self.tables.get("moe_dispatch")
        keys = ["fabric", "ep", "hidden", "top_k", "experts", "direction", "dtype"]
        return {} if dd is None or dd.empty else {
            tuple(str(v) if isinstance(v, str) else int(v) for v in kv): Curve.of(d, "tokens_per_rank")
            for kv, d in dd.groupby(keys)}

    def _grouped_table(self, stem: str, curve=None) -> dict:
        """A grouped GEMM table as {(n, k): {groups: curve over m_per_group}}; ``curve(rows, n, k)``
        builds each (default: ``Curve.of`` in log-log)."""
        from calibration.interp import Curve

        gg = self.tables.get(stem)
        make = curve or (lambda d, n, k: Curve.of(d, "m_per_group"))
        return {} if gg is None else {
            (int(n), int(k)): {int(g): make(d2, int(n), int(k)) for g, d2 in d.groupby("groups")}
            for (n, k), d in gg.groupby(["n", "k"])}

    @functools.cached_property
    def device(self):
        """The catalog device this profile was measured on (from ``gpu_name``), or None."""
        return device_of_gpu(self.metadata.get("gpu_name", ""))

    @property
    def gpu(self) -> str:
        return str(self.metadata.get("gpu_name", "unknown"))

    @property
    def date_utc(self) -> str:
        return str(self.metadata.get("date_utc", "unknown"))

    def __repr__(self) -> str:
        return f"MeasuredProfile({self.name!r}, gpu={self.metadata.get('gpu_name', '?')!r}, tables={sorted(self.tables)})"

    @staticmethod
    def _pairs(df, keys, x):
        """``Curve.of(rows, x)`` per distinct ``keys`` (ints), in sorted key order: from one
        ``min_by`` over (keys, x), whose rows come sorted by key then ``x``, each key's run
        the rows ``Curve.of`` makes of its group (the same arrays; ~10 ms of the first step
        over the GEMM tables' groups); a table with an ``x`` missing somewhere group by group."""
        import numpy as np

        from calibration.interp import Curve

        if df is None or df.empty:
            return {}
        col = df[x]
        if col.dtype.kind not in "iu" and not (col.dtype.kind == "f" and not np.isnan(col).any()):
            return {tuple(int(v) for v in kv): Curve.of(d, x) for kv, d in df.groupby(keys)}
        t = df.min_by(list(keys) + [x], "seconds")
        xs, ys = t.floats(x), t.floats("seconds")
        out: dict = {}
        start, prev = 0, None
        for i, kv in enumerate(zip(*(t[k].tolist() for k in keys))):
            if kv != prev:
                if prev is not None:
                    out[tuple(int(v) for v in prev)] = Curve(xs[start:i].copy(), ys[start:i].copy())
                start, prev = i, kv
        if prev is not None:
            out[tuple(int(v) for v in prev)] = Curve(xs[start:].copy(), ys[start:].copy())
        return out

    def _surfaces(self, stem, keys, a, b):
        from calibration.interp import Surface

        df = self.tables.get(stem)
        if df is None or df.empty:
            return {}
        return {tuple(int(v) for v in kv): Surface(d, a, b) for kv, d in df.groupby(keys)}

    def _src(self, table: str, how: str) -> str:
        return f"profile:{self.name}:{table} ({how})"

    # -- GEMMs

    def gemm_seconds(self, m: float, n: int, k: int, dtype: str = "bf16") -> tuple[float, str] | None:
        """Time of ``[m,k] x [k,n]`` in ``dtype``; None outside the measured M range or shapes."""
        pairs = self._gemm.get(dtype) or {}
        table = f"gemm_{dtype}"
        if m <= 0:
            return 0.0, self._src(table, "empty")
        if (n, k) in pairs:
            t = pairs[(n, k)](m)
            return None if t is None else (t, self._src(table, "interpolated in log M"))
        ref = self._gemm_refs.get((dtype, n, k), _UNSEEN)
        if ref is _UNSEEN:
            from calibration.interp import nearest_shape

            ref = self._gemm_refs[(dtype, n, k)] = nearest_shape(pairs, n, k)
        if ref is None:
            return None
        t = pairs[ref](m)
        if t is None:
            return None
        lat = self._gemm_latency_s[dtype]
        from calibration.interp import scale_shape_s

        return scale_shape_s(t, lat, (n * k) / (ref[0] * ref[1])), self._src(
            table, f"scaled by FLOPs from n={ref[0]} k={ref[1]} beyond a {lat * 1e6:.1f} us call")

    def grouped_gemm_seconds(self, groups: int, m_per_group: float, n: int, k: int,
                             dtype: str = "bf16", tokens_total: float | None = None,
                             active_groups: float | None = None) -> tuple[float, str] | None:
        """Time of a grouped GEMM over ``groups`` experts of ``[m, k] x [k, n]``.

        A ragged kernel (``tokens_total`` given) runs only its ``active_groups`` non-empty groups
        (default: all; ``calibration.moe_lookup``): at up to 16 tokens per active group the
        ``grouped_mm_sparse_bf16`` table answers (time over active groups and tokens each), above
        it ``grouped_mm_bf16`` at ``groups = active`` and the tile-equivalent tokens per group
        (a ragged kernel's tiles follow the total work). Without ``tokens_total`` the padded
        ``bmm`` table is read at the busiest group's ``m_per_group`` over all groups.
        """
        ragged = tokens_total is not None and tokens_total > 0
        active = float(groups) if active_groups is None else min(float(groups), float(active_groups))
        if dtype == "fp8":  # FP8 ragged kernel (torch._scaled_grouped_mm); no padded or sparse FP8 table
            if not self._equal_fp8:
                return None
            if not ragged:
                return self._grouped_lookup(self._equal_fp8, FP8_GROUPED_TABLE, groups, m_per_group, n, k)
            return self._ragged_seconds(active, float(tokens_total), n, k, fp8=True)
        if dtype != "bf16":
            return None
        if ragged:
            r = self._ragged_seconds(active, float(tokens_total), n, k)
            if r is not None:
                return r
        if not self._grouped:
            return None
        return self._grouped_lookup(self._grouped, "grouped_gemm_bf16", groups, m_per_group, n, k)

    def _ragged_seconds(self, active: float, tokens_total: float, n: int, k: int,
                        fp8: bool = False) -> tuple[float, str] | None:
        """A ragged grouped GEMM over ``active`` non-empty groups sharing ``tokens_total`` rows
        (``fp8``: the FP8 table, which has no few-tokens-per-group companion)."""
        per_active = tokens_total / max(active, 1e-12)
        if not fp8 and self._sparse and per_active <= self._sparse.max_tokens_per_active(n, k) * (1 + 1e-9):
            r = self._sparse.seconds(n, k, active, per_active)
            if r is not None:
                from calibration.moe_lookup import SPARSE_TABLE

                return r[0], self._src(SPARSE_TABLE, r[1])
        tables, name = (self._routed_fp8, FP8_GROUPED_TABLE) if fp8 else (self._ragged, "grouped_mm_bf16")
        if not tables:
            return None
        g = max(active, 1.0)
        r = self._grouped_lookup(tables, name, g, per_active, n, k)
        if r is None:
            return None
        from calibration.interp import tile_spill_factor

        spill = tile_spill_factor(per_active)
        t = r[0] * spill * min(active, 1.0)  # below one active group: expected time over steps
        return t, r[1] + f" at {g:.3g} active groups x {per_active:.3g} tokens, x{spill:.3f} routed tile spill"

    def _grouped_lookup(self, tables: dict, table: str, groups: int, m_per_group: float, n: int,
                        k: int) -> tuple[float, str] | None:
        if m_per_group <= 0 or groups <= 0:
            return 0.0, self._src(table, "empty")
        scale, ref = 1.0, (n, k)
        if ref not in tables:
            from calibration.interp import nearest_shape

            ref = nearest_shape(tables, n, k)
            if ref is None:
                return None
            scale = (n * k) / (ref[0] * ref[1])
        by_g = tables[ref]
        gs = sorted(by_g)
        how = "interpolated"
        if groups in by_g:
            t = by_g[groups](m_per_group)
        elif gs[0] < groups < gs[-1]:
            lo = max(g for g in gs if g < groups)
            hi = min(g for g in gs if g > groups)
            tl, th = by_g[lo](m_per_group), by_g[hi](m_per_group)
            import numpy as np

            t = None if tl is None or th is None else float(
                np.exp(np.interp(math.log(groups), [math.log(lo), math.log(hi)], [math.log(tl), math.log(th)])))
        else:
            g_ref = gs[0] if groups < gs[0] else gs[-1]
            t0 = by_g[g_ref](m_per_group)
            t = None if t0 is None else t0 * groups / g_ref
            how = f"scaled linearly from {g_ref} groups"
        if t is None:
            return None
        if scale != 1.0:
            lat = self._grouped_latency_s(tables, min(gs, key=lambda g: abs(math.log(g / groups))))
            how += f", scaled by FLOPs from n={ref[0]} k={ref[1]} beyond a {lat * 1e6:.1f} us call"
            from calibration.interp import scale_shape_s

            t = scale_shape_s(t, lat, scale)
        return t, self._src(table, how)

    def _grouped_latency_s(self, tables: dict, groups: int) -> float:
        """The per-call latency of a grouped table at a measured group count (``interp.call_latency_s``
        over its shapes), kept when a shape is read from another one."""
        key = (id(tables), groups)
        if key not in self._grouped_lat:
            from calibration.interp import call_latency_s

            self._grouped_lat[key] = call_latency_s({s: by_g[groups] for s, by_g in tables.items() if groups in by_g})
        return self._grouped_lat[key]

    # -- attention

    def attn_prefill_seconds(self, batch: int, seq: int, heads_q: int, heads_kv: int,
                             head_dim_qk: int = 128, head_dim_v: int | None = None,
                             causal: bool = True, context: float = 0,
                             seq_lens: tuple[int, ...] | None = None,
                             context_lens: tuple[int, ...] | None = None,
                             causal_pairs: float | None = None) -> tuple[float, str] | None:
        """Causal prefill attention of ``batch`` sequences of ``seq`` new tokens (one layer), each
        after ``context`` cached tokens (the means of ``seq_lens`` / ``context_lens`` when the
        sequences differ; ``causal_pairs``: their pairs, when known). With context:
        :meth:`attn_prefill_ctx_seconds`."""
        if not causal:
            return None
        dv = head_dim_qk if head_dim_v is None else head_dim_v
        if context > 0:
            return self.attn_prefill_ctx_seconds(batch, seq, context, heads_q, heads_kv, head_dim_qk, dv,
                                                 seq_lens, context_lens, causal_pairs)
        cfg = self._pick_attn(self._prefill, heads_q, heads_kv, head_dim_qk, dv)
        if cfg is None:
            return None
        # other head counts run as more (or fewer) sequences of the measured config: the kernel's
        # work items are (sequence, head) pairs, so occupancy follows batch x heads, not time x heads
        eq_batch = batch * heads_q / cfg[0]
        r = self._prefill[cfg](eq_batch, seq)
        if r is None:
            return None
        how = r[1] + ("" if eq_batch == batch else
                      _batch_note(heads_q, heads_kv, eq_batch, cfg[0], cfg[1]))
        return r[0], self._src("attn_prefill_bf16", how)

    def attn_prefill_ctx_seconds(self, batch: int, new: float, context: float, heads_q: int, heads_kv: int,
                                 head_dim_qk: int = 128, head_dim_v: int | None = None,
                                 seq_lens: tuple[int, ...] | None = None,
                                 context_lens: tuple[int, ...] | None = None,
                                 causal_pairs: float | None = None) -> tuple[float, str] | None:
        """Lower-right causal attention of ``batch`` chunks of ``new`` tokens after ``context``
        cached ones (one layer) from ``attn_prefill_ctx_bf16`` (``calibration.chunk_lookup``); other
        head counts as an equivalent batch of the measured configuration; unequal sequences at their
        means times their pairs over the pairs at the means. None without the table (the context-free
        table would charge none of the cached keys) or for head dims it did not measure."""
        dv = head_dim_qk if head_dim_v is None else head_dim_v
        chunk = self._chunk  # its module's names read through it (no import statement per lookup)
        cfg = self._pick_attn(chunk.configs, heads_q, heads_kv, head_dim_qk, dv)
        if cfg is None:
            return None
        eq_batch = batch * heads_q / cfg[0]
        r = chunk.seconds(cfg, eq_batch, new, context)
        if r is None:
            return None
        how = r[1] + ("" if eq_batch == batch else _batch_note(heads_q, heads_kv, eq_batch, cfg[0], cfg[1]))
        f = chunk.varlen_pairs_factor(new, context, seq_lens, context_lens, causal_pairs)
        if f != 1.0:
            how += f", x{f:.3f} pairs of the unequal sequences over the pairs at their means"
        return r[0] * f, self._src(chunk.TABLE, how)

    def attn_decode_seconds(self, batch: int, context: int, heads_q: int, heads_kv: int,
                            head_dim_qk: int = 128, head_dim_v: int | None = None,
                            impl: str = "sdpa") -> tuple[float, str] | None:
        """One decode token per sequence against ``context`` keys (one layer), as implementation
        ``impl`` runs it (``calibration.decode_lookup``): "sdpa" - torch's SDPA, one block per
        (sequence, KV head), at least the serial walk of ``attn_decode_long_bf16`` when the keys
        end inside a key tile; "split_kv" - a flash-decoding kernel, the table read at its split."""
        dv = head_dim_qk if head_dim_v is None else head_dim_v
        if impl == "split_kv":
            return self._split_kv_decode(batch, context, heads_q, heads_kv, head_dim_qk, dv)
        r = self._decode_table(batch, context, heads_q, heads_kv, head_dim_qk, dv)
        if r is None or not self._serial:
            return r
        from calibration.decode_lookup import LONG_TABLE, misaligned

        if not misaligned(context, self.decode_kv_tile):
            return r
        walk = self._serial.seconds(context, head_dim_qk)
        if walk is None or walk[0] <= r[0]:
            return r
        return walk[0], self._src(LONG_TABLE, f"{walk[1]}: {context} keys end inside a {self.decode_kv_tile}-key "
                                              f"tile, one block per (sequence, KV head) (the round-length table: "
                                              f"{r[0] * 1e6:.1f} us)")

    def _decode_table(self, batch: float, context: int, heads_q: int, heads_kv: int, dqk: int,
                      dv: int) -> tuple[float, str] | None:
        """``attn_decode_bf16`` at ``context`` keys rounded up to the fitted key tile."""
        cfg = self._pick_attn(self._decode, heads_q, heads_kv, dqk, dv)
        if cfg is None:
            return None
        tile = self.decode_kv_tile
        keys = int(math.ceil(context / tile - 1e-9) * tile) if tile > 1 else context
        eq_batch = batch * heads_kv / cfg[1]  # (sequence, KV head) work items, as in prefill
        r = self._decode[cfg](eq_batch, keys)
        if r is None:
            return None
        how = r[1] + ("" if eq_batch == batch else
                      _batch_note(heads_q, heads_kv, eq_batch, cfg[0], cfg[1]))
        if keys != context:
            how += f", keys {context} rounded up to the {tile}-key tile"
        return r[0], self._src("attn_decode_bf16", how)

    def _split_kv_decode(self, batch: int, context: int, heads_q: int, heads_kv: int, dqk: int,
                         dv: int) -> tuple[float, str] | None:
        """Flash-decoding: the keys split ``s`` ways when the (sequence, KV head) blocks leave SMs
        idle; the measured kernel at ``batch * s`` sequences of ``context / s`` keys plus the combine."""
        from calibration.decode_lookup import split_combine_bytes, split_kv_splits

        splits = split_kv_splits(batch * heads_kv, context, self._sm_count)
        keys = math.ceil(context / splits)
        r = self._decode_table(batch * splits, keys, heads_q, heads_kv, dqk, dv)
        if r is None or splits == 1:
            return r
        comb = self.elementwise_seconds(split_combine_bytes(batch, heads_q, dv, splits), "copy")
        t_comb = comb[0] if comb else 0.0
        return r[0] + t_comb, r[1] + f"; split-KV x{splits} ({keys} keys each) + combine {t_comb * 1e6:.1f} us"

    def _pick_attn(self, surfaces, hq, hkv, dqk, dv):
        """The measured head configuration of ``surfaces`` (one of this profile's attention tables)
        that times (hq, hkv, dqk, dv), memoised: the cost model asks it for every new attention shape."""
        key = (id(surfaces), hq, hkv, dqk, dv)  # the tables live as long as the profile
        memo = self._attn_configs
        if key not in memo:
            memo[key] = _nearest_attn_config(surfaces, hq, hkv, dqk, dv)
        return memo[key]

    def mla_decode_seconds(self, batch: int, context: int, heads_q: int = 128, head_dim_qk: int = 576,
                           head_dim_v: int = 512, impl: str | None = None) -> tuple[float, str] | None:
        """MLA absorbed decode (latent cache ``[B, C, 576]``, output 512) for one layer, as ``impl``
        ("sdpa" | "bmm" | "flashmla", ``calibration.decode_lookup.MlaDecodeTables``) runs it; None or
        an implementation not measured here (timed from published figures by the cost model) takes
        the faster measured one as its stand-in."""
        measured = self._mla.impls()
        impls = [impl] if impl in measured else measured
        best = None
        for i in impls:
            r = self._mla.seconds(batch, context, heads_q, head_dim_qk, head_dim_v, i)
            if r is not None and (best is None or r[0] < best[0]):
                best = r
        if best is None:
            return None
        how = best[1] if impl in measured else f"{best[1]} (fastest measured, standing in for {impl or 'any'})"
        return best[0], self._src(best[2], how)

    @property
    def _sm_count(self) -> int:
        """SMs of the measured GPU (``metadata["sm_count"]``; an H200's 132 when not recorded)."""
        from calibration.flashmla_sched import HOPPER_SXM_SMS

        return int(self.metadata.get("sm_count") or HOPPER_SXM_SMS)

    @functools.cached_property
    def stated_in_step_gap_s(self) -> float:
        """The in-step gap per compute op this profile states (``simulator.costmodel.profile_in_step_gap_s``):
        ``own_in_step_gap_s``, else 0."""
        own = self.own_in_step_gap_s()
        return 0.0 if own is None else own

    def own_in_step_gap_s(self) -> float | None:
        """``metadata["in_step_gap"]["seconds"]`` when set, else the median gap of this profile's own
        ``in_step_gap`` table (``calibration.bench.in_step_gap``: chains against their ops alone), else None."""
        stated = (self.metadata.get("in_step_gap") or {}).get("seconds")
        if stated is not None:
            return stated
        from calibration.bench.in_step_gap import TABLE, gap_from_rows

        t = self.tables.get(TABLE)
        if t is None or t.empty:
            return None
        return gap_from_rows([{"gap_s": g} for g in t["gap_s"].tolist()])

    @functools.cached_property
    def _flashmla_per_split(self) -> dict:
        """Seconds per split request by query heads (``calibration.flashmla_sched``), {} without the table."""
        from calibration.flashmla_sched import SPREAD_TABLE, fit_per_split_s

        t = self.tables.get(SPREAD_TABLE)
        if t is None or t.empty:
            return {}
        cols = t.columns
        rows = [dict(zip(cols, vals)) for vals in zip(*(t[c].tolist() for c in cols))]
        return fit_per_split_s(rows, self._sm_count)

    def _flashmla_unequal(self, r: tuple[float, str], batch: int, context: int, heads_q: int,
                          q_per_seq: int) -> tuple[float, str]:
        """A FlashMLA decode batch of real (unequal) lengths read at its mean: the table's equal batch
        plus the requests the tile scheduler splits in an unequal one (``calibration.flashmla_sched``)."""
        if not self._flashmla_per_split:
            return r
        from calibration.flashmla_sched import SPREAD_TABLE, extra_splits, per_split_at

        n = extra_splits(batch, context, heads_q, q_per_seq, self._sm_count)
        if n == 0:
            return r
        add = n * per_split_at(self._flashmla_per_split, heads_q)
        return r[0] + add, f"{r[1]}; +{add * 1e6:.1f} us: {n} more requests split across SM parts at unequal " \
                           f"lengths ({self._src(SPREAD_TABLE, 'per-split time')})"

    # -- memory-bound and collectives

    def elementwise_seconds(self, bytes_moved: float, op: str = "copy") -> tuple[float, str] | None:
        """A memory-bound op moving ``bytes_moved`` (read + written) bytes."""
        curve = self._elementwise.get(op)
        if curve is None:
            return None
        table = self._ew_table[op]
        if bytes_moved <= 0:
            return 0.0, self._src(table, "empty")
        if bytes_moved > curve.xs[-1]:
            return (curve.ys[-1] * bytes_moved / curve.xs[-1],
                    self._src(table, f"{op}: linear beyond {curve.xs[-1]:.3g} B"))
        if bytes_moved < curve.xs[0]:
            return float(curve.ys[0]), self._src(table, f"{op}: latency floor")
        return curve(bytes_moved), self._src(table, f"{op}: interpolated")

    def rmsnorm_seconds(self, rows: float, width: int) -> tuple[float, str] | None:
        """``F.rms_norm`` over ``rows x width`` from ``rmsnorm_bf16.csv``: log-log in rows at each
        measured width (linear beyond the largest row count, floor below one row), then log-log
        between the two measured widths around ``width`` (scaled by width outside them)."""
        if not self._norm or rows <= 0:
            return None
        widths = sorted(self._norm)

        def at(w: int) -> float:
            c = self._norm[w]
            r = min(max(rows, c.xs[0]), c.xs[-1])
            t = c(r)
            return t * rows / c.xs[-1] if rows > c.xs[-1] else t

        if width in self._norm:
            return at(width), self._src("rmsnorm_bf16", f"{rows:g} rows, interpolated")
        if width < widths[0] or width > widths[-1]:
            w = widths[0] if width < widths[0] else widths[-1]
            return at(w) * width / w, self._src("rmsnorm_bf16", f"scaled by width from {w}")
        lo = max(w for w in widths if w < width)
        hi = min(w for w in widths if w > width)
        f = (math.log(width) - math.log(lo)) / (math.log(hi) - math.log(lo))
        t = math.exp((1 - f) * math.log(at(lo)) + f * math.log(at(hi)))
        return t, self._src("rmsnorm_bf16", f"{rows:g} rows, interpolated in width {lo}..{hi}")

    def collective_seconds(self, op: str, group: int, bytes_per_rank: float, fabric: str | None = None,
                           device: str | None = None) -> tuple[float, str] | None:
        """A measured collective (``all_reduce``, ``all_gather``, ...) on ``group`` ranks of ``fabric``
        (a tier technology: ``nvlink``, ``ib``, ...) between ``device`` GPUs (catalog name).

        None unless the table holds that fabric and group size and the profile was measured on
        ``device``. Log-log in bytes inside the measured sizes; below them the smallest size's
        time (latency-bound); above them linear in bytes from the largest (bandwidth-bound).
        """
        if fabric is None or (device is not None and (self.device is None or self.device.name != device)):
            return None
        curve = self._coll.get(op, {}).get((fabric, int(group)))
        if curve is None:
            return None
        return self._curve_lookup(curve, bytes_per_rank, f"collective_{op}", f"{fabric}, group {group}")

    def dispatch_seconds(self, direction: str, ep: int, tokens_per_rank: float, hidden: int, top_k: int,
                         experts: int, dtype: str, fabric: str | None = None,
                         device: str | None = None) -> tuple[float, str] | None:
        """Measured MoE ``dispatch`` or ``combine`` (``all_to_all_single`` of uniformly routed top-k
        copies, ``moe_dispatch.csv``) of ``tokens_per_rank`` tokens on ``ep`` ranks of ``fabric``;
        None unless that exact shape, payload dtype, fabric and group size were measured on
        ``device``. Interpolated in tokens as ``collective_seconds`` is in bytes."""
        if fabric is None or (device is not None and (self.device is None or self.device.name != device)):
            return None
        curve = self._dispatch.get((fabric, int(ep), int(hidden), int(top_k), int(experts), direction, dtype))
        if curve is None:
            return None
        return self._curve_lookup(curve, tokens_per_rank, "moe_dispatch",
                                  f"{direction} {dtype}, {fabric}, ep {ep}, all_to_all_single")

    def _curve_lookup(self, curve, x: float, table: str, what: str) -> tuple[float, str] | None:
        if x <= curve.xs[0]:
            return float(curve.ys[0]), self._src(table, f"{what}, at the smallest measured size")
        if x > curve.xs[-1]:
            return float(curve.ys[-1] * x / curve.xs[-1]), self._src(table, f"{what}, linear beyond {curve.xs[-1]:.3g}")
        t = curve(x)
        return None if t is None else (t, self._src(table, f"{what}, interpolated"))

    # -- ceilings and efficiency

    def hbm_bytes_per_s(self) -> float | None:
        """Largest achieved device-to-device copy bandwidth (bytes read + written per s)."""
        df = self.tables.get("hbm")
        return None if df is None or df.empty else float(df.max("gbps") * 1e9)

    def peak_flops_achieved(self, dtype: str = "bf16") -> float | None:
        df = self.tables.get(f"gemm_{dtype}")
        return None if df is None or df.empty else float(df.max("tflops") * 1e12)

    def efficiency_fit(self, peak_flops_per_s: Mapping[str, float] | None = None,
                       hbm_bytes_per_s: float | None = None) -> EfficiencyFit:
        """Fit achieved-fraction-of-roofline curves per op kind.

        Peaks default to ``metadata["reference_peaks"]`` (datasheet figures with a source),
        else to the measured ceilings (largest GEMM rate, largest copy bandwidth).
        """
        import numpy as np

        from calibration.interp import EfficiencyFit, KindEfficiency

        ref = self.metadata.get("reference_peaks", {})
        if peak_flops_per_s is None:
            peak_flops_per_s = {k[:-len("_flops_per_s")]: float(v) for k, v in ref.items()
                                if k.endswith("_flops_per_s")}
            src = ref.get("source", "")
            if not peak_flops_per_s:
                peak_flops_per_s = {dt: v for dt in ("bf16", "fp8")
                                    if (v := self.peak_flops_achieved(dt))}
                src = "measured ceilings"
        else:
            src = "given"
        bw = hbm_bytes_per_s or float(ref.get("hbm_bytes_per_s", 0)) or self.hbm_bytes_per_s() or 1.0
        hbm_frac = (self.hbm_bytes_per_s() or bw) / bw
        comp = {dt: (self.peak_flops_achieved(dt) or 0.0) / p for dt, p in peak_flops_per_s.items()}
        kinds = {}
        for kind, (flops, nbytes, secs, dt) in self._points().items():
            peak = np.array([peak_flops_per_s.get(d, peak_flops_per_s.get("bf16", 1.0)) for d in dt])
            t_roof = np.maximum(flops / peak, nbytes / bw)
            frac = t_roof / secs
            logx = np.log10((flops / nbytes) / (peak / bw))
            keep = t_roof >= 20e-6  # bins describe kernels past launch/latency scale
            knots, vals = [], []
            for lo in np.arange(-3.0, 3.0, 0.25):
                sel = keep & (logx >= lo) & (logx < lo + 0.25)
                if sel.sum() >= 3:
                    knots.append(round(float(lo) + 0.125, 4))
                    vals.append(_median(frac[sel]))
            kinds[kind] = KindEfficiency(tuple(knots), tuple(vals), float(np.min(secs)), int(len(secs)),
                                         f"fit to profile {self.name}")
        return EfficiencyFit(dict(peak_flops_per_s), bw, hbm_frac, comp, kinds, src)

    def _points(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]]:
        """(flops, min bytes, seconds, dtypes) per op kind over all measured points."""
        import numpy as np

        out = {}
        rows = []
        bf = dtype_bytes("bf16")  # every table but gemm_fp8 measured BF16 operands and outputs
        for dt in ("bf16", "fp8"):
            df = self.tables.get(f"gemm_{dt}")
            if df is not None and not df.empty:
                m, n, k = df["m"], df["n"], df["k"]
                f = 2.0 * m * n * k
                b = (m * k + n * k) * dtype_bytes(dt) + m * n * bf
                rows.append((f, b, df["seconds"], [dt] * len(df)))
        if rows:
            out["gemm"] = tuple(np.concatenate([r[i] for r in rows]) for i in range(3)) + (
                sum((r[3] for r in rows), []),)
        df = self.tables.get("grouped_gemm_bf16")
        if df is not None and not df.empty:
            g, m, n, k = df["groups"], df["m_per_group"], df["n"], df["k"]
            out["grouped_gemm"] = (2.0 * g * m * n * k, (bf * g * (m * k + k * n + m * n)), df["seconds"],
                                   ["bf16"] * len(df))
        df = self.tables.get("attn_prefill_bf16")
        if df is not None and not df.empty:
            dqk, dv = df["head_dim_qk"], df["head_dim_v"]
            b = bf * df["batch"] * df["seq"] * (df["heads_q"] * (dqk + dv) + df["heads_kv"] * (dqk + dv))
            out["attn_prefill"] = (df["tflops"] * 1e12 * df["seconds"], b, df["seconds"], ["bf16"] * len(df))
        for stem, kind in (("attn_decode_bf16", "attn_decode"), ("mla_decode_bf16", "mla_decode")):
            df = self.tables.get(stem)
            if df is not None and not df.empty:
                out[kind] = (df["tflops"] * 1e12 * df["seconds"], df["kv_bytes"].astype(float), df["seconds"],
                             ["bf16"] * len(df))
        return {k: tuple(np.asarray(v, dtype=float) if i < 3 else v for i, v in enumerate(t))
                for k, t in out.items()}

    @functools.cached_property
    def fitted_kinds(self) -> frozenset[str]:
        """Op kinds whose efficiency curve this profile's own tables fit (``efficiency_fit``)."""
        return frozenset(self._points())

    # -- convenience for the cost model

    def for_op(self, op) -> MeasuredProfile:
        """The profile that times ``op``: this one (a layered profile picks a layer)."""
        return self

    def floor_seconds(self, op) -> float:
        """The smallest time this profile measured for ``op``'s implementation: its launch and
        latency floor (several kernels for a composite op such as eager rotary), which does not
        scale with a device's FLOP/s or bandwidth. 0 when nothing comparable was measured."""
        kind = op.kind
        if kind in ("elementwise", "embedding"):
            if op.meta.get("op") == "rmsnorm" and op.meta.get("width") and self._norm:
                return self._floors["rmsnorm_bf16"]
            if self._glue_answers(op):
                return self._glue.floor(str(op.meta["glue"]))
            curve = self._elementwise.get(self._memory_op(op))
            return float(curve.ys.min()) if curve is not None else 0.0
        if kind == "grouped_gemm" and self._sparse_answers(op):
            from calibration.moe_lookup import SPARSE_TABLE

            return self._floors[SPARSE_TABLE]
        if kind == "attn_prefill" and _has_context(op):
            from calibration.chunk_lookup import CTX_TABLE

            return self._floors.get(CTX_TABLE, 0.0)
        stem = {"gemm": f"gemm_{self._gemm_dtype(op)}", "grouped_gemm": FP8_GROUPED_TABLE if op.dtype == "fp8" else "grouped_mm_bf16",
                "attn_prefill": "attn_prefill_bf16",
                "attn_decode": "attn_decode_bf16", "mla_decode": self._mla_table(op)}.get(kind)
        return self._floors.get(stem, 0.0) if stem else 0.0

    def _glue_answers(self, op) -> bool:
        """Whether ``mla_glue_bf16`` times this MLA glue op (else it is timed as a copy)."""
        return op.meta.get("op") == "mla_glue" and self._glue.has(str(op.meta.get("glue")))

    @staticmethod
    def _memory_op(op) -> str:
        """The elementwise curve of a memory-bound op (MLA glue without its table: a copy)."""
        name = str(op.meta.get("op", "copy"))
        return "copy" if name == "mla_glue" else name

    def _mla_table(self, op) -> str | None:
        """The MLA decode table answering ``op``'s implementation (the first holding it)."""
        tables = self._mla.tables()
        impl = op.meta.get("impl")
        holding = [t for t in tables if any(k[0] == t and k[1] == impl for k in self._mla.surfaces)]
        return (holding or tables or [None])[0]

    def measures_impl(self, op) -> bool:
        """Whether a table of this profile measured ``op``'s own implementation (``meta["impl"]``),
        which then times it ahead of a published figure (``simulator.costmodel``): FlashMLA's MLA
        decode (``mla_decode_flashmla_bf16``)."""
        return op.kind == "mla_decode" and op.meta.get("impl") in self._mla.impls()

    def _sparse_answers(self, op) -> bool:
        """Whether ``grouped_mm_sparse_bf16`` times this grouped GEMM (few tokens per active group)."""
        s = op.shape
        active, tokens = s.get("active_groups", s.get("groups", 0)), s.get("tokens_total") or 0
        if op.dtype == "fp8" or not self._sparse or not tokens or not active:
            return False
        return tokens / active <= self._sparse.max_tokens_per_active(int(s["n"]), int(s["k"])) * (1 + 1e-9)

    def op_seconds(self, op) -> tuple[float, str] | None:
        """Time of one ``workloads.op.Op`` (one repetition) from this profile, or None."""
        s = op.shape
        kind = op.kind
        if kind == "gemm":
            return self._deepgemm_seconds(op) or self.gemm_seconds(s["m"], s["n"], s["k"], self._gemm_dtype(op))
        if kind == "grouped_gemm":
            if op.dtype == "fp8" and not _torch_grouped_kernel(op):
                # a fused FP8 MoE kernel (DeepGEMM class) is not what grouped_mm_fp8 measured
                return self._deepgemm_seconds(op)
            return self.grouped_gemm_seconds(s["groups"], s["m_per_group"], s["n"], s["k"], op.dtype,
                                             tokens_total=s.get("tokens_total"),
                                             active_groups=s.get("active_groups"))
        if kind == "attn_prefill":
            return self.attn_prefill_seconds(s["batch"], s["seq"], s["heads_q"], s["heads_kv"],
                                             s.get("head_dim_qk", 128), s.get("head_dim_v"), s.get("causal", True),
                                             context=s.get("context", 0) or 0, seq_lens=op.meta.get("seq_lens"),
                                             context_lens=op.meta.get("context_lens"),
                                             causal_pairs=op.meta.get("causal_pairs"))
        if kind == "attn_decode":
            return self.attn_decode_seconds(s["batch"], s["context"], s["heads_q"], s["heads_kv"],
                                            s.get("head_dim_qk", 128), s.get("head_dim_v"),
                                            impl=str(op.meta.get("impl", "sdpa")))
        if kind == "mla_decode":
            impl = op.meta.get("impl")
            if impl == FLASHMLA and impl in self._mla.impls():
                # FlashMLA runs a sequence's q query tokens as q x heads query rows of one pass over
                # its keys: measured, 2 tokens of b sequences take 0.93-0.96x of 1 token of 2b
                # (compute bound at 128 heads; the rows of 2 tokens are the table's hold-out)
                q = max(1.0, float(op.meta.get("q_per_seq", 1) or 1))
                r = self.mla_decode_seconds(s["batch"] * q, s["context"], s.get("heads_q", 128),
                                            s.get("head_dim_qk", 576), s.get("head_dim_v", 512), impl=impl)
                if r is None or op.meta.get("lengths") == "equal":
                    return r
                return self._flashmla_unequal(r, int(s["batch"]), int(s["context"]), int(s.get("heads_q", 128)),
                                              int(q))
            return self.mla_decode_seconds(s["batch"], s["context"], s.get("heads_q", 128),
                                           s.get("head_dim_qk", 576), s.get("head_dim_v", 512),
                                           impl=op.meta.get("impl"))
        if kind in ("elementwise", "embedding"):
            width = op.meta.get("width")
            if op.meta.get("op") == "rmsnorm" and width and self._norm:
                return self.rmsnorm_seconds(s["elements"] / width, int(width))
            if self._glue_answers(op):
                from calibration.glue_lookup import GLUE_TABLE

                r = self._glue.seconds(str(op.meta["glue"]), float(op.meta["tokens"]), int(op.meta["heads"]))
                return None if r is None else (r[0], self._src(GLUE_TABLE, r[1]))
            return self.elementwise_seconds(op.bytes_read + op.bytes_written, self._memory_op(op))
        return None  # collectives: ``collective_seconds`` / ``dispatch_seconds`` with the group's fabric

    def table_for(self, op) -> str | None:
        """The table of this profile that answers compute op ``op`` (whatever the point), or None
        when this profile has no table for it (a partial profile: ``calibration.resolve`` then
        takes that table from the shipped profile)."""
        kind = op.kind
        if kind in ("elementwise", "embedding"):
            name = str(op.meta.get("op", "copy"))
            if name == "rmsnorm" and op.meta.get("width") and self._norm:
                return "rmsnorm_bf16"
            if self._glue_answers(op):
                from calibration.glue_lookup import GLUE_TABLE

                return GLUE_TABLE
            return self._ew_table.get(self._memory_op(op))
        if kind in ("gemm", "grouped_gemm") and self._deepgemm_seconds(op) is not None:
            from calibration.deepgemm_lookup import DEEPGEMM_TABLE

            return DEEPGEMM_TABLE
        if kind == "grouped_gemm":
            if op.dtype == "fp8":
                return FP8_GROUPED_TABLE if FP8_GROUPED_TABLE in self.tables and _torch_grouped_kernel(op) else None
            if self._sparse_answers(op):
                from calibration.moe_lookup import SPARSE_TABLE

                return SPARSE_TABLE
            return next((t for t in ("grouped_mm_bf16", "grouped_gemm_bf16") if t in self.tables), None)
        if kind == "attn_decode" and op.meta.get("impl", "sdpa") == "sdpa" and self._serial:
            from calibration.decode_lookup import LONG_TABLE, misaligned

            if misaligned(int(op.shape["context"]), self.decode_kv_tile):
                return LONG_TABLE if "attn_decode_bf16" in self.tables else None
        if kind == "attn_prefill" and _has_context(op):
            from calibration.chunk_lookup import CTX_TABLE

            return CTX_TABLE if self._chunk else None
        stem = {"gemm": f"gemm_{self._gemm_dtype(op)}", "attn_prefill": "attn_prefill_bf16", "attn_decode": "attn_decode_bf16",
                "mla_decode": self._mla_table(op)}.get(kind)
        return stem if stem in self.tables else None


def _torch_grouped_kernel(op) -> bool:
    """Whether a grouped GEMM op runs torch's grouped kernels (the ``eager`` set's ``grouped_mm``);
    the ``fused`` set's FP8 MoE kernel is DeepGEMM's (``workloads.kernel_sets``), timed by the
    profile's ``deepgemm_fp8`` table where it has one (``calibration.deepgemm_lookup``), else by the
    efficiency fit (clustersim check kernels.deepgemm judges both)."""
    return op.meta.get("impl", "grouped_mm") != "fused_moe"


def _has_context(op) -> bool:
    """Whether a prefill attention op's sequences hold cached context (``attn_prefill_ctx_bf16``)."""
    return (op.shape.get("context") or 0) > 0


def _fit_rows(df: Table) -> Table:
    """The ``fit`` rows of a table with a ``split`` column (others unchanged)."""
    return df.where(df["split"] == "fit") if "split" in df else df
