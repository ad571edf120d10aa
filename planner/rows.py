"""The layout table's rows: a layout's analytic metrics, a block of layouts at a time.

``layout_rows(ev, mode, choices, counts, out)`` evaluates every layout made of the pool
``choices`` (one colocated choice, or prefill then decode) with the instance ``counts`` (one
tuple per layout) and appends their rows to ``out``, a ``Columns`` table. It is the one home
of a layout's metrics (``planner.analytic`` module docstring): ``Evaluator.evaluate_layout``
is the block of one layout. Within a block the choices' capacities, labels and tables are
looked up once, and the KV handoff of each pair of instance counts, the decode batch at the
target load and the prefill TTFT there once per value: the grid of a large plan (10^5
layouts) costs a few microseconds a layout, and the table is built column by column
(``Columns.frame``), never as 10^5 dicts.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["Columns", "layout_rows"]


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

    def row(self, i: int) -> dict:
        """Row ``i`` as a dict of the columns its chunk has (plain Python values)."""
        for n, cols in self._chunks:
            if i < n:
                return {k: (_scalar(v[i]) if isinstance(v, np.ndarray) else v[i] if isinstance(v, list) else v)
                        for k, v in cols.items()}
            i -= n
        raise IndexError(i)

    def rows(self) -> list[dict]:
        return [self.row(i) for i in range(self.n)]

    def frame(self):
        """The table as a pandas DataFrame (dtypes as pandas infers them from the values)."""
        import pandas as pd

        names: dict[str, None] = {}
        for _n, cols in self._chunks:
            names.update(dict.fromkeys(cols))
        data = {name: self._column(name) for name in names}
        return pd.DataFrame(data, index=pd.RangeIndex(self.n)) if data else pd.DataFrame(index=pd.RangeIndex(0))

    def _column(self, name: str):
        parts = [(n, cols.get(name, _MISSING)) for n, cols in self._chunks]
        numeric = all(isinstance(v, np.ndarray) and v.dtype.kind in "if" or v is _MISSING
                      or type(v) in (int, float) for _n, v in parts)
        if numeric:
            return np.concatenate([np.full(n, math.nan) if v is _MISSING else v if isinstance(v, np.ndarray)
                                   else np.full(n, v) for n, v in parts])
        values: list = []
        for n, v in parts:
            if v is _MISSING:
                v = math.nan
            values.extend(v.tolist() if isinstance(v, np.ndarray) else v if isinstance(v, list) else [v] * n)
        return _array(values)


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


def _static(ev, choice) -> tuple[dict, Any]:
    """A choice's columns but its instance count (``Evaluator._columns`` order), cached."""
    cols, _label = ev._columns(choice, 1)
    return {k: v for k, v in cols.items() if not k.endswith("_instances")}, cols


def _lead(choices, counts_row: Sequence[int], ev) -> dict:
    out: dict = {}
    for choice, n in zip(choices, counts_row):
        cols, _ = ev._columns(choice, n)
        out.update(cols)
    return out


def _infeasible(ev, mode: str, choices, counts: Iterable[Sequence[int]], reasons: list[tuple], out: Columns,
                extra: dict | None, rows: list[int]) -> None:
    """Rows of layouts a rule rejects: ``reasons[i]`` = (reason, shortfall) of ``counts[i]``."""
    if not rows:
        return
    devs, labels, lead, why, short = [], [], [], [], []
    counts = list(counts)
    for i in rows:
        c = counts[i]
        devs.append(sum(ch.devices_per_instance * n for ch, n in zip(choices, c)))
        lead.append(_lead(choices, c, ev))
        labels.append(" + ".join(ev._columns(ch, n)[1] for ch, n in zip(choices, c)))
        why.append(reasons[i][0])
        short.append(reasons[i][1])
    cols: dict = {"mode": mode, "devices": devs}
    for k in lead[0]:
        cols[k] = [d[k] for d in lead]
    cols.update(layout=labels, feasible=False, meets_load=False, reason=why, shortfall=short)
    _extra(cols, extra, rows)
    out.add(len(rows), cols)


def _extra(cols: dict, extra: dict | None, rows: list[int]) -> None:
    for k, v in (extra or {}).items():
        cols[k] = [v[i] for i in rows] if isinstance(v, list) else v[rows] if isinstance(v, np.ndarray) else v


def layout_rows(ev, mode: str, choices: tuple, counts: Sequence[Sequence[int]], out: Columns,
                extra: dict | None = None) -> None:
    """Rows of the layouts ``(mode, zip(choices, counts[i]))`` appended to ``out`` (module
    docstring); ``extra``: more columns (a list, one value per layout, or one value for all).
    Never raises for a bad layout: a broken rule is its row's ``reason``."""
    ctx = ev.ctx
    counts = [tuple(c) for c in counts]
    perfs = [ev.perf(c) for c in choices]
    budget = ctx.budget_devices
    pair = mode != "colocated" and len(choices) == 2 and not any(p.reason for p in perfs)
    reasons: list[tuple | None] = []
    after: list = []
    gaps: list[float] = []
    dev_of = [c.devices_per_instance for c in choices]
    devs = [sum(d * n for d, n in zip(dev_of, c)) for c in counts]
    after_gap: dict[float, Any] = {}
    p0 = perfs[0]
    for c, devices in zip(counts, devs):
        ps = perfs
        gap = 0.0
        if pair:
            gap = ev.handoff_gap_s(choices[0], c[0], choices[1], c[1])
            d = after_gap.get(gap)
            if d is None:
                d = after_gap[gap] = ev.decode_perf_after_handoff(choices[1], gap)
            if d.reason is None and devices <= budget:  # the common case: nothing to report
                reasons.append(None)
                after.append(d)
                gaps.append(gap)
                continue
            ps = [p0, d]
        worst = max((p for p in ps if p.reason), key=lambda p: p.shortfall, default=None)
        bad, shortfall = (worst.reason, worst.shortfall) if worst else (None, math.nan)
        if devices > budget:
            bad, shortfall = f"uses {devices} devices > budget {budget}", devices / budget
        reasons.append((bad, shortfall) if bad else None)
        after.append(ps[-1])
        gaps.append(gap)
    bad_rows = [i for i, r in enumerate(reasons) if r is not None]
    _infeasible(ev, mode, choices, counts, reasons, out, extra, bad_rows)
    ok_rows = [i for i, r in enumerate(reasons) if r is None]
    if not ok_rows:
        return
    if mode == "colocated":
        cols = _colocated(ev, choices[0], perfs[0], [counts[i][0] for i in ok_rows])
    else:
        cols = _disaggregated(ev, choices, perfs[0], [counts[i] for i in ok_rows], [after[i] for i in ok_rows],
                              [gaps[i] for i in ok_rows])
    _extra(cols, extra, ok_rows)
    out.add(len(ok_rows), cols)


def _head(ev, mode: str, choices, counts: list[tuple]) -> dict:
    """The label columns of a block's layouts: mode, devices, each choice's columns, layout."""
    cols: dict = {"mode": mode, "devices": [sum(ch.devices_per_instance * n for ch, n in zip(choices, c))
                                            for c in counts]}
    labels: list[list[str]] = []
    for j, ch in enumerate(choices):
        static, full = _static(ev, ch)
        inst = next(k for k in full if k.endswith("_instances"))
        ns = [c[j] for c in counts]
        cols[inst] = ns
        cols.update(static)
        text = {n: ev._columns(ch, n)[1] for n in set(ns)}
        labels.append([text[n] for n in ns])
    cols["layout"] = labels[0] if len(labels) == 1 else [f"{a} + {b}" for a, b in zip(*labels)]
    return cols


def _tail(ev, cols: dict, caps, ttfts, tpots, b_ops, t_ttft: list[float], t_tpot: list[float]) -> dict:
    """The metric columns every feasible row has (numpy arrays of the block's rows; the
    arithmetic is elementwise, so each value is the one scalar code would give)."""
    ctx = ev.ctx
    O, lam = ctx.output_tokens, ctx.arrival_rate_per_s
    devs = np.asarray(cols["devices"], dtype=np.int64)
    tps = caps * O
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
    return cols


def _colocated(ev, choice, perf, ns: list[int]) -> dict:
    lam = ev.ctx.arrival_rate_per_s
    cols = _head(ev, "colocated", (choice,), [(n,) for n in ns])
    at_cap = ev.colocated_state(choice, perf.b_star)
    caps = np.asarray(ns, dtype=np.int64) * perf.cap_rps
    t_ttft, t_tpot = [], []
    for n, cap in zip(ns, caps.tolist()):
        if cap >= lam:
            t = ev._colocated_at(choice, perf, lam / n)
            t_ttft.append(t["ttft_s"])
            t_tpot.append(t["tpot_s"])
        else:
            t_ttft.append(math.nan)
            t_tpot.append(math.nan)
    k = len(ns)
    return _tail(ev, cols, caps, np.full(k, at_cap["ttft_s"]), np.full(k, at_cap["tpot_s"]), np.full(k, perf.b_star),
                 t_ttft, t_tpot)


def _disaggregated(ev, choices, pre_perf, counts: list[tuple], dec_perfs: list, gaps: list[float]) -> dict:
    ctx = ev.ctx
    O, lam = ctx.output_tokens, ctx.arrival_rate_per_s
    pc, dc = choices
    cols = _head(ev, "disaggregated", choices, counts)
    n_p = np.array([c[0] for c in counts], dtype=np.int64)
    n_d = np.array([c[1] for c in counts], dtype=np.int64)
    d_cap = np.array([p.cap_rps for p in dec_perfs])
    d_tpot = np.array([p.tpot_s for p in dec_perfs])
    d_b = np.array([p.b_star for p in dec_perfs])
    gap = np.array(gaps)
    caps = np.minimum(n_p * pre_perf.cap_rps, n_d * d_cap)
    cols.update(decode_tokens_per_s_per_decode_device=d_cap * O / dc.devices_per_instance,
                decode_tpot_ms_at_decode_capacity=(d_tpot + gap) * 1e3, decode_batch_per_rank_at_decode_capacity=d_b)
    # the decode instances' operating point: at their capacity (the usual case when the decode
    # pool binds) it is the capacity's; below it, ``Evaluator._decode_at`` per row
    d_rate = caps / n_d
    b_ops, tpots = d_b.copy(), d_tpot.copy()
    for i in np.flatnonzero(d_rate < d_cap * (1 - 1e-12)).tolist():
        b_ops[i], tpots[i] = ev._decode_at(dc, dec_perfs[i], float(d_rate[i]))
    tpots += gap
    p_rate = (caps / n_p).tolist()
    ttfts = np.array([ev.prefill_ttft_s(pc, r, pre_perf) for r in p_rate])
    t_ttft, t_tpot = [], []
    at_d: dict = {}
    at_p: dict = {}
    for i, (a, b) in enumerate(counts):
        if caps[i] >= lam:
            g = gaps[i]
            tpot_t = at_d.get((g, b))  # the gap fixes the decode perf
            if tpot_t is None:
                tpot_t = at_d[(g, b)] = ev._decode_at(dc, dec_perfs[i], lam / b)[1]
            ttft_t = at_p.get(a)
            if ttft_t is None:
                ttft_t = at_p[a] = ev.prefill_ttft_s(pc, lam / a, pre_perf)
            t_ttft.append(ttft_t)
            t_tpot.append(tpot_t + g)
        else:
            t_ttft.append(math.nan)
            t_tpot.append(math.nan)
    return _tail(ev, cols, caps, ttfts, tpots, b_ops, t_ttft, t_tpot)
