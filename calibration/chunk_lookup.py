"""Prefill attention after cached context: the ``attn_prefill_ctx_bf16`` lookup (no torch).

A prefill step whose sequences already hold ``c`` cached tokens (chunked prefill's later chunks,
prefix-cache hits, P/D chunks) attends ``n`` new queries to ``c + n`` keys, lower-right causal:
``pairs = n*c + n(n+1)/2`` per sequence. ``calibration.bench.attn_chunk`` measures it over
(head configuration, batch, n, c); :class:`ChunkPrefillTable` answers a point of one measured head
configuration (``calibration.profile`` picks the configuration and turns other head counts into
an equivalent batch ``B * Hq / Hq'``, as for the causal prefill table):

* **context** - at a measured (batch, n): linear in c between the measured contexts (past the
  launch floor the time at fixed n is close to linear in the keys walked); c = 0 is among them
  only where the same kernel ran there (``backend``: torch runs MLA's 192/128 heads on cuDNN at
  c = 0 but on the memory-efficient kernel after context, so that line would join two kernels);
  above them the largest measured context scaled by the pairs ratio
  ``pairs(n, c) / pairs(n, c_ref)``; below them the line through the two lowest, not below that
  pairs ratio (the time's fixed part stays as the keys shrink);
* **new tokens** - log-log between the two measured n around it (each read at c as above);
  beyond the largest the pairs ratio at the same c; below the smallest its time scaled by the
  query tiles ``ceil(n / QUERY_TILE) / ceil(n_min / QUERY_TILE)`` (a short chunk runs one padded
  query tile per (sequence, head), walking the same keys);
* **batch** - log-log between the measured batches around it, linear scaling from the nearest
  measured batch outside them (as ``calibration.interp.Surface``).

:func:`varlen_pairs_factor` corrects a step of unequal sequences, costed at its mean new and
mean cached tokens (how ``workloads`` describes a batch), by its true pairs over the pairs at the
means. ``fit_only`` profiles (``calibration.profile.load_profile(..., fit_only=True)``) build
this table from the rows whose ``split`` is ``fit``, so the hold-out rows judge the rules.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from functools import lru_cache
from typing import Sequence

import numpy as np

from calibration.interp import interp1
from calibration.table import Table, as_table
from workloads.pairs import causal_pairs_sum

CTX_TABLE = "attn_prefill_ctx_bf16"
HEAD_KEYS = ["heads_q", "heads_kv", "head_dim_qk", "head_dim_v"]
#: query rows per block of the measured kernels (FlashAttention-2's forward tile at head dim 128;
#: the memory-efficient kernel's is 64 or 128): chunks shorter than one tile cost a whole tile
QUERY_TILE = 128


def pairs(n: float, c: float) -> float:
    """(query, key) pairs of one sequence of ``n`` new tokens after ``c`` cached ones (causal):
    ``workloads.pairs.attention_pairs(n, c, True)``'s expression, inline (every lookup reads it)."""
    return n * c + n * (n + 1) / 2


@lru_cache(maxsize=4096)
def _tiles_note(ref: int, tiles: float) -> str:
    """The source's note of a chunk below the smallest measured n (few distinct values; ``:g`` of a
    float is not cheap)."""
    return f", n={ref} x{tiles:g} query tiles"


def _around(keys: list, x: float) -> tuple:
    """The largest of the ascending ``keys`` below ``x`` and the smallest above it, for an ``x``
    strictly inside them and not among them (``max(k for k in keys if k < x)`` and its ``min``)."""
    i = bisect_left(keys, x)
    return keys[i - 1], keys[i]


def varlen_pairs_factor(new: float, context: float, seq_lens: Sequence[int] | None,
                        context_lens: Sequence[int] | None, causal_pairs: float | None = None) -> float:
    """True pairs of the sequences over the pairs of as many sequences at the mean ``new`` and
    ``context`` (1 for uniform sequences or without per-sequence lengths). ``causal_pairs``: the
    sequences' pairs when the caller has them (``causal_pairs_sum`` of the same lengths)."""
    if not seq_lens or context_lens is None or len(seq_lens) != len(context_lens):
        return 1.0
    at_mean = len(seq_lens) * pairs(new, context)
    if causal_pairs is None:
        causal_pairs = causal_pairs_sum(seq_lens, context_lens)
    return causal_pairs / at_mean if at_mean > 0 else 1.0


def _other_kernel_anchors(df: Table, d: Table) -> np.ndarray:
    """Mask of the rows of ``d`` (the grouped table) at c = 0 whose kernel (``backend`` in ``df``) ran
    at no context > 0 of the same (head configuration, batch, n)."""
    keys = HEAD_KEYS + ["batch", "new"]

    def backends(rows: Table) -> dict:
        return {k: {str(b) for b in g["backend"].tolist()} for k, g in rows.groupby(keys)}

    after, at0 = backends(df.where(df["context"] > 0)), backends(df.where(df["context"] == 0))
    drop = {k for k, b in at0.items() if k in after and not (b & after[k])}
    rows = zip(d["context"].tolist(), *(d[k].tolist() for k in keys))
    return np.array([c == 0 and tuple(int(v) for v in key) in drop for c, *key in rows], dtype=bool)


class ChunkPrefillTable:
    """``attn_prefill_ctx_bf16`` as curves over context per (head configuration, batch, n)."""

    #: the table's name and the unequal-sequence factor, read through a table by its profile's lookup
    TABLE = CTX_TABLE
    varlen_pairs_factor = staticmethod(varlen_pairs_factor)

    def __init__(self, df: Table | None):
        #: (contexts, seconds) per (head configuration, batch, n), as lists of floats
        self.configs: dict[tuple[int, int, int, int], dict[int, dict[int, tuple[list, list]]]] = {}
        self.floor_s = 0.0
        self._sorted: dict[int, tuple[dict, list[int]]] = {}
        df = as_table(df)
        if df is None or df.empty:
            return
        d = df.min_by(HEAD_KEYS + ["batch", "new", "context"], "seconds")
        if "backend" in df:
            d = d.where(~_other_kernel_anchors(df, d))
        for cfg, g in d.groupby(HEAD_KEYS):
            self.configs[tuple(int(v) for v in cfg)] = {
                int(b): {int(n): (gn.floats("context").tolist(), gn.floats("seconds").tolist())
                         for n, gn in gb.sorted_by("context").groupby("new")}
                for b, gb in g.groupby("batch")}
        self.floor_s = float(d.min("seconds"))
        # each level's keys in ascending order, sorted once (every lookup walks them)
        self._sorted = {id(level): (level, sorted(level)) for by_b in self.configs.values()
                        for level in (by_b, *by_b.values())}

    def __bool__(self) -> bool:
        return bool(self.configs)

    def seconds(self, cfg: tuple[int, int, int, int], batch: float, new: float,
                context: float) -> tuple[float, str] | None:
        """Time of ``batch`` sequences of ``new`` tokens after ``context`` cached ones in the
        measured head configuration ``cfg``; None when it holds no row."""
        by_b = self.configs.get(cfg)
        if not by_b or batch <= 0 or new <= 0:
            return None
        bs = self._keys(by_b)
        if batch in by_b:
            t, how = self._at_batch(by_b[int(batch)], new, context)
            return t, f"{how}, batch {int(batch)}"
        if bs[0] < batch < bs[-1]:
            lo, hi = _around(bs, batch)
            (tl, how), (th, _) = self._at_batch(by_b[lo], new, context), self._at_batch(by_b[hi], new, context)
            f = (math.log(batch) - math.log(lo)) / (math.log(hi) - math.log(lo))
            return math.exp((1 - f) * math.log(tl) + f * math.log(th)), f"{how}, log-log in batch {lo}..{hi}"
        ref = bs[-1] if batch > bs[-1] else bs[0]
        t, how = self._at_batch(by_b[ref], new, context)
        return t * batch / ref, f"{how}, scaled linearly from batch {ref}"

    def _keys(self, level: dict) -> list:
        """``sorted(level)``, sorted at load for the table's own levels."""
        hit = self._sorted.get(id(level))
        return hit[1] if hit is not None and hit[0] is level else sorted(level)

    def _at_batch(self, by_n: dict, new: float, context: float) -> tuple[float, str]:
        ns = self._keys(by_n)
        if new in by_n:
            t, how = self._at_context(by_n[int(new)], new, context)
            return t, f"{how} at n={int(new)}"
        if ns[0] < new < ns[-1]:
            lo, hi = _around(ns, new)
            (tl, how), (th, _) = self._at_context(by_n[lo], lo, context), self._at_context(by_n[hi], hi, context)
            f = (math.log(new) - math.log(lo)) / (math.log(hi) - math.log(lo))
            return math.exp((1 - f) * math.log(tl) + f * math.log(th)), f"{how}, log-log in n {lo}..{hi}"
        if new > ns[-1]:
            ref = ns[-1]
            t, how = self._at_context(by_n[ref], ref, context)
            return t * pairs(new, context) / pairs(ref, context), f"{how}, pairs ratio from n={ref}"
        ref = ns[0]
        t, how = self._at_context(by_n[ref], ref, context)
        tiles = math.ceil(new / QUERY_TILE) / math.ceil(ref / QUERY_TILE)
        return t * tiles, how + _tiles_note(ref, tiles)

    @staticmethod
    def _at_context(curve: tuple[list, list], new: float, context: float) -> tuple[float, str]:
        cs, ts = curve
        if cs[0] <= context <= cs[-1]:
            if len(cs) == 1:
                return float(ts[0]), "measured context"
            return interp1(context, cs, ts), "linear in context"
        ref = int(cs[-1] if context > cs[-1] else cs[0])
        i = len(cs) - 1 if context > cs[-1] else 0
        scaled = float(ts[i]) * pairs(new, context) / pairs(new, ref)
        if context < cs[0] and len(cs) >= 2 and cs[1] > cs[0]:
            # below the lowest measured context the line through the two lowest continues (the
            # fixed part of the time stays), never below the pure pairs ratio (no fixed part)
            line = float(ts[0] + (ts[1] - ts[0]) * (context - cs[0]) / (cs[1] - cs[0]))
            if line > scaled:
                return line, f"linear in context below {ref}"
        return scaled, f"pairs ratio from context {ref}"
