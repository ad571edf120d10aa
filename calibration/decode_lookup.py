"""Decode attention per implementation: what one decode step's attention costs over batch x context (no torch).

Three mechanisms, each from microbenchmark tables of the profile (never from ground-truth steps):

* **No key split in torch's SDPA decode** (``attn_decode_long_bf16.csv``, kernel named in its
  ``backend``: cuDNN). At batch 1..8 the time does not move with the batch or the query heads
  per KV head (Llama-8B 32q/8kv and a 70B TP-4 rank 16q/2kv alike: 424-431 us at 32769 keys): one
  thread block walks one (sequence, KV head)'s keys serially, at a fixed rate per key, as long
  as the work items fill less than the GPU. :class:`SerialDecodeFit` fits that walk,
  ``t = a + tau * keys`` (per head dim), to the table. Where the keys are not a multiple of the
  kernel's key tile - every decode step of a real model, which attends C cached keys plus the
  new one - this walk is slower than at the round lengths the ``attn_decode_bf16`` grid measured
  (``attn_decode_tiles.csv``: 52 us at 4096 keys, 60 us at 4097, 54 us at 4224, batch 1); so a
  misaligned decode costs at least the serial walk: ``max(table, a + tau * keys)``. Once the
  work items fill the GPU the table's bandwidth-bound time is the larger and wins.
* **Split-KV (flash-decoding)**, the serving engines' decode kernels (FlashAttention's
  ``num_splits_heuristic``, FlashInfer's partitioned KV): when batch x KV heads leave SMs idle,
  the keys of each work item are split into ``s`` chunks processed by separate blocks and the
  partial outputs combined. :func:`split_kv_splits` is FlashAttention-2's heuristic
  (csrc/flash_attn/flash_api.cpp: no split at >= 80% of the SMs; else the fewest splits whose
  wave efficiency is within 85% of the best, at most 128, one per 128-key block); the time is
  the measured kernel at the split's shape (batch x s sequences of context / s keys, the same
  per-work-item walk with more work items) plus the combine (reading the s float32 partials).
* **MLA absorbed decode per implementation** (``mla_decode_impls_bf16.csv`` at C + 1 keys, the
  ground truth's shapes, and ``mla_decode_bf16.csv`` at round contexts 128..131072): SDPA, which
  torch runs on its memory-efficient kernel for head dim 576 (the heads are query rows of one
  latent head: one block per sequence walks all keys, flat in batch up to ~64 sequences at 16
  heads, 3.0 ms at 32K keys), and the two-bmm form. Heads between the measured 16 and 128 are
  interpolated in log heads; beyond the largest measured context the time grows linearly
  with the keys (each key is read and scored once per work item), below the smallest it stays
  at the smallest's (launch floor).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from calibration.interp import Surface
from calibration.table import Table, as_table

LONG_TABLE = "attn_decode_long_bf16"
#: in order of preference (C + 1 keys first); ``mla_decode_flashmla_bf16`` holds FlashMLA alone
MLA_TABLES = ("mla_decode_flashmla_bf16", "mla_decode_impls_bf16", "mla_decode_bf16")
SPLIT_BLOCK_KEYS = 128  # keys per block of FlashAttention-2's split-KV kernel (num_n_blocks)
SPLIT_MAX = 128  # FlashAttention-2's cap on num_splits
FLOAT32_BYTES = 4


# ----------------------------------------------------------------------------- serial walk


class SerialDecodeFit:
    """``t = a + tau * keys`` per head dim, fitted to ``attn_decode_long_bf16`` (least squares in
    relative error over every row: the table holds only work-item-bound points)."""

    def __init__(self, df: Table | None):
        self.coef: dict[int, tuple[float, float]] = {}
        self.rows = 0
        df = as_table(df)
        if df is None or df.empty:
            return
        for d, g in df.groupby("head_dim_qk"):
            x, y = g.floats("context"), g.floats("seconds")
            a = np.vstack([np.ones_like(x), x]).T / y[:, None]
            coef, *_ = np.linalg.lstsq(a, np.ones_like(y), rcond=None)
            self.coef[int(d)] = (float(coef[0]), float(coef[1]))
            self.rows += len(g)

    def __bool__(self) -> bool:
        return bool(self.coef)

    def seconds(self, keys: float, head_dim: int) -> tuple[float, str] | None:
        """The serial walk over ``keys`` keys of one work item; another head dim scales the per-key
        rate by the bytes per key (head_dim / measured)."""
        if not self.coef:
            return None
        ref = min(self.coef, key=lambda d: abs(math.log(head_dim / d)))
        a, tau = self.coef[ref]
        t = a + tau * keys * head_dim / ref
        how = f"serial walk {a * 1e6:.1f} us + {tau * 1e9:.2f} ns/key"
        return t, how + ("" if ref == head_dim else f" x head dim {head_dim}/{ref}")


def misaligned(keys: int, tile: int) -> bool:
    """Keys that end inside a key tile (a masked last tile): any decode step of C cached + new keys
    except at multiples of the tile."""
    return tile > 1 and keys % tile != 0


# ----------------------------------------------------------------------------- split-KV


def split_kv_splits(work_items: int, keys: int, sms: int, block_keys: int = SPLIT_BLOCK_KEYS,
                    max_splits: int = SPLIT_MAX) -> int:
    """FlashAttention-2's ``num_splits_heuristic`` for ``work_items`` (sequence, KV head) blocks
    over ``keys`` keys on ``sms`` SMs (see the module docstring)."""
    if work_items <= 0 or sms <= 0 or work_items >= 0.8 * sms:
        return 1
    n_blocks = max(1, math.ceil(keys / block_keys))
    cap = min(max_splits, sms, n_blocks)
    if cap <= 1:
        return 1

    def eligible(s: int) -> bool:  # a split count that changes the blocks per split
        return s == 1 or math.ceil(n_blocks / s) != math.ceil(n_blocks / (s - 1))

    def eff(s: int) -> float:
        waves = work_items * s / sms
        return waves / math.ceil(waves)

    effs = {s: eff(s) for s in range(1, cap + 1) if eligible(s)}
    best = max(effs.values())
    return next((s for s, e in effs.items() if e >= 0.85 * best), 1)


def split_combine_bytes(batch: int, heads_q: int, head_dim_v: int, splits: int) -> float:
    """Bytes the split-KV combine moves: the float32 partial outputs and log-sum-exps read, the
    bf16 output written."""
    return batch * heads_q * (splits * (head_dim_v + 1) * FLOAT32_BYTES + head_dim_v * 2)


# ----------------------------------------------------------------------------- MLA per implementation


def surface_at(surf: Surface, a: float, b: float) -> tuple[float, str] | None:
    """``surf`` at (a, b), extended past its measured b: linearly in b above the largest (decode
    time grows with the keys once past the launch floor), at the smallest's time below it."""
    r = surf(a, b)
    if r is not None:
        return r
    lo = min(float(c.xs[0]) for c in surf.by_a.values())
    hi = max(float(c.xs[-1]) for c in surf.by_a.values())
    if b > hi:
        r = surf(a, hi)
        return None if r is None else (r[0] * b / hi, f"{r[1]}, linear in keys beyond {hi:.0f}")
    if b < lo:
        r = surf(a, lo)
        return None if r is None else (r[0], f"{r[1]}, at the smallest measured context {lo:.0f}")
    return None


class MlaDecodeTables:
    """Absorbed MLA decode surfaces per (table, impl, heads, dqk, dv) over (batch, context)."""

    def __init__(self, tables: Mapping[str, Table]):
        self.surfaces: dict[tuple[str, str, int, int, int], Surface] = {}
        for stem in MLA_TABLES:
            df = as_table(tables.get(stem))
            if df is None or df.empty or "impl" not in df:
                continue
            if "q_per_seq" in df:  # one query token per sequence: more run as more sequences (``seconds``)
                df = df.where(df["q_per_seq"] == 1)
            for (impl, h, dq, dv), d in df.groupby(["impl", "heads_q", "head_dim_qk", "head_dim_v"]):
                self.surfaces[(stem, str(impl), int(h), int(dq), int(dv))] = Surface(d, "batch", "context")

    def __bool__(self) -> bool:
        return bool(self.surfaces)

    def impls(self) -> list[str]:
        return sorted({k[1] for k in self.surfaces})

    def tables(self) -> list[str]:
        return [t for t in MLA_TABLES if any(k[0] == t for k in self.surfaces)]

    def seconds(self, batch: int, context: int, heads_q: int, dqk: int, dv: int,
                impl: str) -> tuple[float, str, str] | None:
        """(seconds, how, table) of ``impl`` ("sdpa" | "bmm"): the first table that measured the point
        (C + 1 keys first), else the one reaching the longest context, extended (``surface_at``)."""
        for stem in MLA_TABLES:
            r = self._in_table(stem, batch, context, heads_q, dqk, dv, impl, extend=False)
            if r is not None:
                return r[0], f"impl {impl}, {r[1]}", stem
        for stem in sorted(MLA_TABLES, key=lambda t: -self._max_context(t, impl)):
            r = self._in_table(stem, batch, context, heads_q, dqk, dv, impl, extend=True)
            if r is not None:
                return r[0], f"impl {impl}, {r[1]}", stem
        return None

    def _max_context(self, stem: str, impl: str) -> float:
        return max((float(c.xs[-1]) for k, srf in self.surfaces.items() if k[0] == stem and k[1] == impl
                    for c in srf.by_a.values()), default=0.0)

    def _in_table(self, stem, batch, context, heads_q, dqk, dv, impl, extend=True) -> tuple[float, str] | None:
        cands = sorted(h for (s, i, h, q, v) in self.surfaces if s == stem and i == impl and q == dqk and v == dv)
        if not cands:
            return None
        h0 = max(min(heads_q, cands[-1]), cands[0])
        how = "" if h0 == heads_q else f", heads clamped to {h0}"
        hs = [h0] if h0 in cands else [max(h for h in cands if h < h0), min(h for h in cands if h > h0)]
        vals = []
        for h in hs:
            srf = self.surfaces[(stem, impl, h, dqk, dv)]
            r = surface_at(srf, batch, context) if extend else srf(batch, context)
            if r is None:
                return None
            vals.append(r)
        if len(vals) == 1:
            return vals[0][0], vals[0][1] + how
        w = (math.log(heads_q) - math.log(hs[0])) / (math.log(hs[1]) - math.log(hs[0]))
        t = math.exp((1 - w) * math.log(vals[0][0]) + w * math.log(vals[1][0]))
        return t, f"{vals[0][1]}, interpolated in heads {hs[0]}..{hs[1]}"
