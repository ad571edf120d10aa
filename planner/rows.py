"""The layout table's rows: layouts' analytic metrics, many blocks of layouts at a time.

A ``Block`` is the layouts of one set of pool ``choices`` (one colocated choice, or prefill
then decode) with instance ``counts`` (one tuple per layout). ``layout_rows(ev, mode, blocks,
out)`` evaluates every layout of the blocks and appends their rows to ``out``, a ``Columns``
table. It is the one home of a layout's metrics (``planner.analytic`` module docstring):
``Evaluator.evaluate_layout`` is one block of one layout. The arithmetic that follows from the
pools' capacities runs on numpy arrays over all rows (elementwise IEEE operations, so every
value is the one the scalar code gives); what needs a search or a table (the decode batch
below capacity, the prefill TTFT, the KV handoff) runs per row, memoised per distinct value.
The grid of a large plan (10^5 layouts) costs a few microseconds a layout, and the table is
built column by column (``Columns.frame``), never as 10^5 dicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["Block", "Columns", "Labels", "layout_rows"]


@dataclass
class Block:
    """Layouts of one set of pool choices: ``counts[i]`` instances of each; ``extra``: more
    columns, each one value for all of them or a list / array (one value per layout)."""

    choices: tuple
    counts: list
    extra: dict = field(default_factory=dict)


class Columns:
    """A table appended in chunks of rows; a chunk gives each of its columns as a list (one
    value per row) or one value for all. A column a chunk lacks is missing (NaN) in its rows,
    as when pandas builds a frame from dicts with different keys; columns keep the order they
    first appear in."""

    def __init__(self) -> None:
        self._chunks: list[tuple[int, dict]] = []
        self.n = 0

    def add(self, n: int, cols: dict) -> None:
        if n:
            self._chunks.append((n, cols))
            self.n += n

    def extend(self, other: "Columns", ev=None) -> None:
        """Append ``other``'s rows (e.g. a worker's); ``ev`` reads their ``Labels`` from now on."""
        for n, cols in other._chunks:
            for v in cols.values():
                if isinstance(v, Labels) and ev is not None:
                    v.ev = ev
            self.add(n, cols)

    def row(self, i: int) -> dict:
        """Row ``i`` as a dict of the columns its chunk has (plain Python values)."""
        for n, cols in self._chunks:
            if i < n:
                return {k: (_scalar(v[i]) if isinstance(v, np.ndarray) else v[i] if isinstance(v, list)
                            else v.values([i])[0] if isinstance(v, Labels) else v) for k, v in cols.items()}
            i -= n
        raise IndexError(i)

    def rows(self) -> list[dict]:
        return [self.row(i) for i in range(self.n)]

    def drop(self, name: str) -> None:
        """Remove column ``name`` from every chunk."""
        for _n, cols in self._chunks:
            cols.pop(name, None)

    def names(self) -> list[str]:
        """Column names in the order they first appear."""
        names: dict[str, None] = {}
        for _n, cols in self._chunks:
            names.update(dict.fromkeys(cols))
        return list(names)

    def frame(self, rows=None):
        """The table as a pandas DataFrame (dtypes as pandas infers them from the values), or
        only ``rows`` (indices, in that order); the data leave this table (it is empty
        afterwards: a large table is never held twice)."""
        import pandas as pd

        names = self.names()
        data = {name: self.column(name, rows, consume=True) for name in names}
        self._chunks, self.n = [], 0
        n = len(next(iter(data.values()))) if data else 0
        # copy=False: the columns stay as built (consolidating them would copy the table once more)
        return pd.DataFrame(data, index=pd.RangeIndex(n), copy=False) if data else pd.DataFrame(index=pd.RangeIndex(0))

    def column(self, name: str, rows=None, consume: bool = False):
        """One column over every row (or ``rows``): a numpy array when numeric, else a list."""
        parts = [(n, cols.pop(name, _MISSING) if consume else cols.get(name, _MISSING)) for n, cols in self._chunks]
        numeric = all(isinstance(v, np.ndarray) and v.dtype.kind in "if" or v is _MISSING
                      or type(v) in (int, float) for _n, v in parts)
        if numeric:
            out = np.concatenate([np.full(n, math.nan) if v is _MISSING else v if isinstance(v, np.ndarray)
                                  else np.full(n, v) for n, v in parts])
            return out if rows is None else out[rows]
        if rows is not None:
            return _array(self._pick_rows(parts, np.asarray(rows)))
        values: list = []
        for n, v in parts:
            values.extend(_values(n, v))
        return _array(values)

    @staticmethod
    def _pick_rows(parts: list[tuple], rows: np.ndarray) -> list:
        """The values at ``rows`` (global indices, any order) of a column's chunks."""
        out: list = [None] * len(rows)
        start = 0
        for n, v in parts:
            at = np.flatnonzero((rows >= start) & (rows < start + n))
            if at.size:
                local = rows[at] - start
                if isinstance(v, Labels):
                    got = v.values(local.tolist())
                else:
                    vals = _values(n, v)
                    got = [vals[i] for i in local.tolist()]
                for k, x in zip(at.tolist(), got):
                    out[k] = x
            start += n
        return out


def _values(n: int, v) -> list:
    """A chunk's column as a list of ``n`` values (missing: NaN)."""
    if v is _MISSING:
        return [math.nan] * n
    if isinstance(v, Labels):
        return v.values()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v if isinstance(v, list) else [v] * n


_MISSING = object()


def _scalar(v):
    """A numpy value as Python's; NaN as ``math.nan`` itself (so equal rows compare equal)."""
    v = v.item()
    return math.nan if v != v else v


def _array(values: list):
    """Numbers as a numpy array of the dtype pandas would infer (int, or float when any is a
    float or missing; bool); anything else stays a list for pandas to infer (faster for 10^5 rows)."""
    kinds = set(map(type, values))
    if kinds and kinds <= {int, float}:
        return np.array(values, dtype=float if float in kinds else np.int64)
    if kinds == {bool}:
        return np.array(values, dtype=bool)
    return values


def _pick(v, rows: list[int]):
    """Column value ``v`` of a block (scalar, list or array) at ``rows``, as a list."""
    if isinstance(v, np.ndarray):
        return v[rows].tolist()
    if isinstance(v, list):
        return [v[i] for i in rows]
    return [v] * len(rows)


class Labels:
    """The ``layout`` column of some rows, made when read (``Columns.column``): most rows of a
    large grid are never read as text, and 10^5 small strings fragment the heap."""

    __slots__ = ("ev", "choices", "counts")

    def __init__(self, ev, choices: list[tuple], counts: np.ndarray):
        self.ev, self.choices, self.counts = ev, choices, counts

    def __len__(self) -> int:
        return len(self.choices)

    def __getstate__(self) -> dict:  # sent from a worker: the receiver attaches its own evaluator
        return {"choices": self.choices, "counts": self.counts}

    def __setstate__(self, state: dict) -> None:
        self.ev, self.choices, self.counts = None, state["choices"], state["counts"]

    def values(self, rows=None) -> list[str]:
        cols, memo = self.ev._columns, {}
        idx = range(len(self.choices)) if rows is None else rows
        counts = self.counts if rows is None else self.counts[np.asarray(rows, dtype=np.int64)]
        out = []
        # a pool's text by (choice, count), memoised here by the choice's id; the counts as
        # Python ints, one list per role (a list per row would be 10^5 objects for the GC)
        for i, cn in zip(idx, zip(*(counts[:, j].tolist() for j in range(counts.shape[1])))):
            parts = []
            for ch, n in zip(self.choices[i], cn):
                text = memo.get((id(ch), n))
                if text is None:
                    text = memo[(id(ch), n)] = cols(ch, n)[1]
                parts.append(text)
            out.append(" + ".join(parts))
        return out


def _label_columns(ev, mode: str, parts: list[tuple[Block, list[int]]]) -> dict:
    """mode, devices, each role's columns and the layout label (``Labels``) of the rows
    ``parts`` selects (per block, its row indices); all blocks have the same roles. Numbers
    are numpy arrays (one value per row)."""
    roles = len(parts[0][0].choices)
    flat: list = []
    for blk, rows in parts:
        c = blk.counts
        flat.extend(c if len(rows) == len(c) else [c[i] for i in rows])
    counts = np.array(flat, dtype=np.int64).reshape(-1, roles)
    lengths = [len(rows) for _blk, rows in parts]
    cols: dict = {"mode": mode}
    for j in range(roles):
        names = list(ev._columns(parts[0][0].choices[j], 1)[0])
        static = np.repeat(np.array([_static_values(ev, blk.choices[j]) for blk, _ in parts], dtype=np.int64),
                           lengths, axis=0)  # one row of the choice's values per layout
        if j == 0:
            cols["devices"] = static[:, 0] * counts[:, 0]  # column 0: the instance size
        else:
            cols["devices"] = cols["devices"] + static[:, 0] * counts[:, j]
        for pos, k in enumerate(names):
            cols[k] = counts[:, j].copy() if k.endswith("_instances") else static[:, pos - 1].copy()
    choices = [blk.choices for blk, rows in parts for _ in rows]
    cols["layout"] = Labels(ev, choices, counts)
    return cols


def _static_values(ev, choice) -> tuple:
    """The values of a choice's columns but its instance count (``Evaluator._columns`` order:
    ``{role}_instances`` first, then ``{role}_devices_per_instance``, ...)."""
    cols = ev._columns(choice, 1)[0]
    return tuple(v for k, v in cols.items() if not k.endswith("_instances"))


def _extra_columns(parts: list[tuple[Block, list[int]]]) -> dict:
    names: dict[str, None] = {}
    for blk, _rows in parts:
        names.update(dict.fromkeys(blk.extra))
    out = {}
    for k in names:
        vals = [blk.extra.get(k, math.nan) for blk, _rows in parts]
        if all(isinstance(v, np.ndarray) or type(v) in (int, float) for v in vals):
            out[k] = np.concatenate([v[rows] if isinstance(v, np.ndarray) else np.full(len(rows), v)
                                     for v, (_blk, rows) in zip(vals, parts)])
        else:
            out[k] = [x for v, (_blk, rows) in zip(vals, parts) for x in _pick(v, rows)]
    return out


def layout_rows(ev, mode: str, blocks: Sequence[Block], out: Columns) -> None:
    """Rows of every layout of ``blocks`` (module docstring) appended to ``out``. Never raises
    for a bad layout: a broken rule is its row's ``reason``."""
    budget = ev.ctx.budget_devices
    bad: dict[tuple, list] = {}  # roles -> [(block, rows, reasons)]
    good: list[tuple[Block, list[int]]] = []
    facts: list[tuple] = []  # per good row: (pool perfs after the handoff, gap)
    for blk in blocks:
        perfs = [ev.perf(c) for c in blk.choices]
        pair = mode != "colocated" and len(blk.choices) == 2 and not any(p.reason for p in perfs)
        sizes = [c.devices_per_instance for c in blk.choices]
        after: dict[float, Any] = {}
        ok_rows, bad_rows, why = [], [], []
        for i, c in enumerate(blk.counts):
            devices = sum(d * n for d, n in zip(sizes, c))
            ps, gap = perfs, 0.0
            if pair:
                gap = ev.handoff_gap_s(blk.choices[0], c[0], blk.choices[1], c[1])
                d = after.get(gap)
                if d is None:
                    d = after[gap] = ev.decode_perf_after_handoff(blk.choices[1], gap)
                if d.reason is None and devices <= budget:  # the common case: nothing to report
                    ok_rows.append(i)
                    facts.append(((perfs[0], d), gap))
                    continue
                ps = [perfs[0], d]
            worst = max((p for p in ps if p.reason), key=lambda p: p.shortfall, default=None)
            reason, shortfall = (worst.reason, worst.shortfall) if worst else (None, math.nan)
            if devices > budget:
                reason, shortfall = f"uses {devices} devices > budget {budget}", devices / budget
            if reason is None:
                ok_rows.append(i)
                facts.append((ps, gap))
            else:
                bad_rows.append(i)
                why.append((reason, shortfall))
        if ok_rows:
            good.append((blk, ok_rows))
        if bad_rows:
            bad.setdefault(tuple(c.role for c in blk.choices), []).append((blk, bad_rows, why))
    for group in bad.values():
        parts = [(blk, rows) for blk, rows, _ in group]
        cols = _label_columns(ev, mode, parts)
        cols.update(feasible=False, meets_load=False, reason=[w[0] for *_x, ws in group for w in ws],
                    shortfall=[w[1] for *_x, ws in group for w in ws])
        cols.update(_extra_columns(parts))
        out.add(len(cols["devices"]), cols)
    if not good:
        return
    cols = _label_columns(ev, mode, good)
    if mode == "colocated":
        _colocated(ev, good, facts, cols)
    else:
        _disaggregated(ev, good, facts, cols)
    cols.update(_extra_columns(good))
    out.add(len(cols["devices"]), cols)


def _tail(ev, cols: dict, caps, ttfts, tpots, b_ops, t_ttft: list[float], t_tpot: list[float]) -> None:
    """The metric columns every feasible row has (numpy arrays over the rows; the arithmetic
    is elementwise, so each value is the one scalar code gives)."""
    ctx = ev.ctx
    out_tokens, lam = ctx.output_tokens, ctx.arrival_rate_per_s
    devs = np.asarray(cols["devices"], dtype=np.int64)
    tps = caps * out_tokens
    usd = devs * ev.price_usd
    meets = caps >= lam * (1 - 1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_user = np.where(tpots > 0, 1.0 / tpots, math.inf)
        kusd = np.where(usd != 0, tps / usd * 1e3, math.nan)
    cols.update(feasible=True, meets_load=meets.tolist(),
                reason=["" if ok else f"serves {cap:.3g} req/s < target {lam:g} req/s"
                        for ok, cap in zip(meets.tolist(), caps.tolist())],
                capacity_rps=caps, output_tokens_per_s=tps, tokens_per_s_per_device=tps / devs,
                tokens_per_s_per_user=per_user, ttft_ms=ttfts * 1e3, tpot_ms=tpots * 1e3, decode_batch_per_rank=b_ops,
                ttft_ms_at_target=np.asarray(t_ttft) * 1e3, tpot_ms_at_target=np.asarray(t_tpot) * 1e3,
                hardware_usd=usd.astype(float), tokens_per_s_per_kusd=kusd)


def _colocated(ev, good: list[tuple[Block, list[int]]], facts: list[tuple], cols: dict) -> None:
    """Colocated rows: capacity n x the instance's, figures at the instance's capacity, and
    at the target load the batch that carries it (``Evaluator._colocated_at``)."""
    lam = ev.ctx.arrival_rate_per_s
    ns, cap1, ttft, tpot, b = [], [], [], [], []
    t_ttft, t_tpot = [], []
    for blk, rows in good:
        choice = blk.choices[0]
        perf = ev.perf(choice)
        at_cap = ev.colocated_state(choice, perf.b_star)
        for i in rows:
            n = blk.counts[i][0]
            ns.append(n)
            cap1.append(perf.cap_rps)
            ttft.append(at_cap["ttft_s"])
            tpot.append(at_cap["tpot_s"])
            b.append(perf.b_star)
            if n * perf.cap_rps >= lam:
                t = ev._colocated_at(choice, perf, lam / n)
                t_ttft.append(t["ttft_s"])
                t_tpot.append(t["tpot_s"])
            else:
                t_ttft.append(math.nan)
                t_tpot.append(math.nan)
    caps = np.asarray(ns, dtype=np.int64) * np.asarray(cap1)
    _tail(ev, cols, caps, np.asarray(ttft), np.asarray(tpot), np.asarray(b), t_ttft, t_tpot)


def _disaggregated(ev, good: list[tuple[Block, list[int]]], facts: list[tuple], cols: dict) -> None:
    """Disaggregated rows: capacity min(n_p x prefill's, n_d x decode's after the handoff);
    TPOT at the decode instances' operating rate plus the handoff's share, TTFT at the
    prefill instances'; both again at the target load."""
    ctx = ev.ctx
    out_tokens, lam = ctx.output_tokens, ctx.arrival_rate_per_s
    pcs, dcs, n_p, n_d = [], [], [], []
    for blk, rows in good:
        pc, dc = blk.choices
        pcs += [pc] * len(rows)
        dcs += [dc] * len(rows)
        n_p += [blk.counts[i][0] for i in rows]
        n_d += [blk.counts[i][1] for i in rows]
    pre = [ps[0] for ps, _g in facts]
    dec = [ps[1] for ps, _g in facts]
    gaps = [g for _ps, g in facts]
    d_cap = np.array([p.cap_rps for p in dec])
    d_tpot = np.array([p.tpot_s for p in dec])
    d_b = np.array([p.b_star for p in dec])
    gap = np.array(gaps)
    d_dev = np.array([dc.devices_per_instance for dc in dcs], dtype=np.int64)
    np_a, nd_a = np.array(n_p, dtype=np.int64), np.array(n_d, dtype=np.int64)
    caps = np.minimum(np_a * np.array([p.cap_rps for p in pre]), nd_a * d_cap)
    cols.update(decode_tokens_per_s_per_decode_device=d_cap * out_tokens / d_dev,
                decode_tpot_ms_at_decode_capacity=(d_tpot + gap) * 1e3, decode_batch_per_rank_at_decode_capacity=d_b)
    # the decode instances' operating point: their capacity's when the decode pool binds,
    # below it ``Evaluator._decode_at``
    d_rate = caps / nd_a
    b_ops, tpots = d_b.copy(), d_tpot.copy()
    for i in np.flatnonzero(d_rate < d_cap * (1 - 1e-12)).tolist():
        b_ops[i], tpots[i] = ev._decode_at(dcs[i], dec[i], float(d_rate[i]))
    tpots += gap
    ttfts = np.array([ev.prefill_ttft_s(pc, r, p) for pc, r, p in zip(pcs, (caps / np_a).tolist(), pre)])
    t_ttft, t_tpot = [], []
    at_d: dict = {}
    at_p: dict = {}
    for i, cap in enumerate(caps.tolist()):
        if cap >= lam:
            dc, pc, g, a, b = dcs[i], pcs[i], gaps[i], n_p[i], n_d[i]
            tpot_t = at_d.get((dc, g, b))  # the gap fixes the decode perf
            if tpot_t is None:
                tpot_t = at_d[(dc, g, b)] = ev._decode_at(dc, dec[i], lam / b)[1]
            ttft_t = at_p.get((pc, a))
            if ttft_t is None:
                ttft_t = at_p[(pc, a)] = ev.prefill_ttft_s(pc, lam / a, pre[i])
            t_ttft.append(ttft_t)
            t_tpot.append(tpot_t + g)
        else:
            t_ttft.append(math.nan)
            t_tpot.append(math.nan)
    _tail(ev, cols, caps, ttfts, tpots, b_ops, t_ttft, t_tpot)
