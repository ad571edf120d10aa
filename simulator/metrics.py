"""Metrics of one run: the inter-token-latency histogram and the run summary.

Definitions (all per request unless noted; times in the DataFrames are seconds, in the
summary milliseconds):

* TTFT = first token - arrival; the first token is emitted when the (last chunk of the)
  prefill finishes, on the prefill instance in disaggregated serving (as in DistServe).
* TPOT = (finish - first token) / (longest sample's output tokens - 1); undefined (NaN)
  for one-token outputs, which then count as meeting the TPOT SLO.
* ITL: the gap between two consecutive token emissions of a stream, one sample per
  emission (an MTP step that emits several tokens is one emission). Kept in a histogram of
  1% geometric bins from 1 us, so percentiles carry at most 1% quantisation error and the
  memory does not grow with tokens.
* E2E = finish - arrival; queueing delay = first admission to a prefill batch - arrival.
* Goodput = requests meeting both TTFT <= slo.ttft_ms and TPOT <= slo.tpot_ms per second of
  makespan (first arrival to last finish); SLO attainment = their share of all requests.
  ``slo_met_at_percentile`` says whether the stated percentile of TTFT and of TPOT both meet
  their SLOs.
* Throughput per device divides by all devices of the deployment (prefill and decode).
"""

from __future__ import annotations

import math
from array import array

import numpy as np

_ITL_MIN_S = 1e-6
_ITL_RATIO = 1.01
_ITL_BINS = int(math.ceil(math.log(1e5 / _ITL_MIN_S) / math.log(_ITL_RATIO))) + 1
_LOG_ITL_RATIO = math.log(_ITL_RATIO)
#: arrays up to this size are checked for one common gap in Python (``ItlHistogram.add``)
_SMALL = 32
#: gaps of runs of decode steps held before they are binned together (``ItlHistogram.add_steps``)
_PENDING_GAPS = 1 << 16


def itl_bin(gap_s: float) -> int:
    """The histogram bin of one gap."""
    return min(int(math.log(max(gap_s, _ITL_MIN_S) / _ITL_MIN_S) / _LOG_ITL_RATIO), _ITL_BINS - 1)


def _bins_np(gaps_s: np.ndarray) -> np.ndarray:
    """Bins of many gaps as ``ItlHistogram.add`` has always taken them: numpy's logarithm, no
    edge correction (``itl_bins`` corrects edges; the two differ only for gaps within ~1e-12
    bins of an edge)."""
    idx = np.log(np.maximum(gaps_s, _ITL_MIN_S) / _ITL_MIN_S) / _LOG_ITL_RATIO
    return np.minimum(idx.astype(np.int64), _ITL_BINS - 1)


#: up to this many gaps besides the common one are binned with ``math.log`` (``_bins_few``): more
#: take numpy's six array calls, which cost less from about this many on
_FEW_BINS = 10
#: ``_bins_few`` leaves a gap to numpy when its bin position is this close to a bin edge
_EDGE = 1e-9


def _bins_few(gaps_s: list[float]) -> list[int] | None:
    """``_bins_np`` of a few gaps, with ``math.log``: numpy's logarithm may differ from it in the
    last bits, which moves a bin only for a position within ~1e-12 of a bin edge; None (take
    ``_bins_np``) when a gap lies within ``_EDGE`` of one."""
    out, log, lo, top = [], math.log, _ITL_MIN_S, _ITL_BINS - 1
    for g in gaps_s:
        x = log((g if g > lo else lo) / lo) / _LOG_ITL_RATIO
        b = int(x)
        f = x - b
        if f < _EDGE or f > 1 - _EDGE:
            return None
        out.append(b if b < top else top)
    return out


def _distinct(vals: list[float]) -> tuple[list[float], list[int]]:
    """The distinct values of ``vals`` (first appearance order) and how often each occurs: the
    joiners of a decode batch mostly share one gap (a transfer's requests were prefilled in one
    step), binned once each."""
    if vals and vals.count(vals[0]) == len(vals):  # the common case: one gap
        return vals[:1], [len(vals)]
    seen: dict[float, int] = {}
    for x in vals:
        seen[x] = seen.get(x, 0) + 1
    return list(seen), list(seen.values())


def itl_bins(gaps_s: np.ndarray) -> np.ndarray:
    """``itl_bin`` of each gap, exactly: numpy's log may differ from ``math.log`` in the last bit,
    which moves a bin only for a gap within ~1e-12 bins of a bin edge; those few are binned by
    ``itl_bin`` itself."""
    x = np.log(np.maximum(gaps_s, _ITL_MIN_S) / _ITL_MIN_S) / _LOG_ITL_RATIO
    bins = x.astype(np.int64)
    frac = x - bins
    edge = np.flatnonzero((frac < 1e-9) | (frac > 1 - 1e-9))
    for i in edge.tolist():
        bins[i] = itl_bin(float(gaps_s[i]))
    return np.minimum(bins, _ITL_BINS - 1)


class ItlHistogram:
    """Streaming histogram of inter-token gaps (seconds).

    ``add`` counts the gaps at once and returns what they add to ``total_s``; the engine keeps
    those per step and sums them in step order at the end (``simulator.steplog``), so that runs
    of decode steps advanced in closed form give the same float total as stepping. The gaps of
    such runs (``add_steps``) are held, by stream count, and binned together (``itl_bins``) up to
    ``_PENDING_GAPS`` at a time: the same counts as binning them one run at a time."""

    __slots__ = ("_counts", "total_s", "n", "_pending", "_pending_size", "_uniform")

    def __init__(self):
        self._counts = np.zeros(_ITL_BINS, dtype=np.int64)
        self.total_s = 0.0
        self.n = 0
        self._pending: dict[int, array] = {}  # streams -> gaps each counted that many times
        self._pending_size = 0
        self._uniform: dict[int, int] = {}  # bin -> gaps ``add_uniform``/``add_led`` counted there (Python ints)

    @property
    def counts(self) -> np.ndarray:
        """Gaps per bin (1% geometric bins from 1 us)."""
        if self._pending_size:
            self._bin_pending()
        if self._uniform:
            counts = self._counts
            for b, c in self._uniform.items():
                counts[b] += c
            self._uniform.clear()
        return self._counts

    def _bin_pending(self) -> None:
        for streams, gaps in self._pending.items():
            self._counts += np.bincount(itl_bins(np.frombuffer(gaps, dtype=np.float64)), minlength=_ITL_BINS) * streams
        self._pending.clear()
        self._pending_size = 0

    def add(self, gaps_s: np.ndarray) -> float:
        """Count ``gaps_s``; returns the seconds they add to the total."""
        size = gaps_s.size
        if size == 0:
            return 0.0
        if size <= _SMALL:  # a few streams: Python's list is quicker than numpy's reductions
            vals = gaps_s.tolist()
            if vals.count(vals[0]) == size:  # the common case: one step for all
                return self.add_uniform(vals[0], size)
        else:
            g = gaps_s[0]
            other = gaps_s != g
            common = size - int(np.count_nonzero(other))
            if common == size:
                return self.add_uniform(float(g), size)
            if 2 * common > size:  # mostly one gap (a batch that a few streams joined): bin it once
                return self._add_mostly(gaps_s, np.concatenate((gaps_s[:1], gaps_s[other])), common)
        self._counts += np.bincount(_bins_np(gaps_s), minlength=_ITL_BINS)
        self.n += int(size)
        return float(gaps_s.sum())

    def add_led(self, gaps_s: np.ndarray, lead: int) -> float:
        """``add(gaps_s)`` when its first ``lead`` (>= 1) gaps are known to be one value (a decode
        batch that a few streams joined): the same counts and the same returned sum, with only
        the others compared to it."""
        size = gaps_s.size
        if size <= _SMALL:
            return self.add(gaps_s)
        if size - lead <= _SMALL:  # a few joiners: compared and binned with Python floats
            g = gaps_s.item(0)
            others = [x for x in gaps_s[lead:].tolist() if x != g]
            common = size - len(others)
            if common == size:
                return self.add_uniform(g, size)
            if 2 * common <= size:
                return self.add(gaps_s)
            vals, times = _distinct(others)
            bins = _bins_few([g] + vals) if len(vals) <= _FEW_BINS else None
            if bins is not None:  # counted in ``add_uniform``'s dict of Python ints: no numpy scalar each
                u = self._uniform
                u[bins[0]] = u.get(bins[0], 0) + common
                for b, m in zip(bins[1:], times):
                    u[b] = u.get(b, 0) + m
                self.n += size
                return float(np.add.reduce(gaps_s))
            return self._add_mostly(gaps_s, np.array([g] + others), common)
        g = gaps_s[0]
        tail = gaps_s[lead:]
        other = tail != g
        common = size - int(np.count_nonzero(other))
        if common == size:
            return self.add_uniform(float(g), size)
        if 2 * common <= size:
            return self.add(gaps_s)
        return self._add_mostly(gaps_s, np.concatenate((gaps_s[:1], tail[other])), common)

    def _add_mostly(self, gaps_s: np.ndarray, vals: np.ndarray, common: int) -> float:
        """``add``'s case of ``common`` (> half) gaps equal to the first: ``vals`` is the first gap,
        then the others in order."""
        bins = _bins_np(vals)  # elementwise: each value's bin is the one it gets in gaps_s
        counts = self._counts
        if bins.size <= _SMALL:  # a few others: Python ints (np.add.at costs more)
            first, *rest = bins.tolist()
            counts[first] += common
            for b in rest:
                counts[b] += 1
        else:
            counts[bins[0]] += common
            np.add.at(counts, bins[1:], 1)
        self.n += int(gaps_s.size)
        return float(np.add.reduce(gaps_s))

    def add_steps(self, gaps_s: np.ndarray, streams: int) -> None:
        """Count ``streams`` equal gaps for each of ``gaps_s`` (steps of a run of decode steps;
        their seconds are added to the total per step, by the caller). Binned later, with others."""
        gaps = self._pending.get(streams)
        if gaps is None:
            gaps = self._pending[streams] = array("d")
        gaps.frombytes(gaps_s.tobytes())
        size = int(gaps_s.size)
        self.n += streams * size
        self._pending_size += size
        if self._pending_size >= _PENDING_GAPS:
            self._bin_pending()

    def add_uniform(self, gap_s: float, count: int) -> float:
        """Count ``count`` gaps of ``gap_s``; returns the seconds they add to the total."""
        u, b = self._uniform, itl_bin(gap_s)  # a dict of Python ints: no numpy scalar per call
        u[b] = u.get(b, 0) + count
        self.n += count
        return gap_s * count

    def percentile_s(self, q: float) -> float:
        if self.n == 0:
            return float("nan")
        cum = np.cumsum(self.counts)
        i = int(np.searchsorted(cum, q / 100.0 * self.n, side="left"))
        return _ITL_MIN_S * _ITL_RATIO ** (min(i, _ITL_BINS - 1) + 0.5)

    def stats_ms(self) -> dict:
        if self.n == 0:
            return {"mean": None, "p50": None, "p90": None, "p99": None, "samples": 0}
        out = {"mean": self.total_s / self.n * 1e3}
        for q in (50, 90, 99):
            out[f"p{q}"] = self.percentile_s(q) * 1e3
        out["samples"] = self.n
        return out


def _stats_ms(values_s: np.ndarray) -> dict:
    v = values_s[np.isfinite(values_s)]  # a fresh array: the mean first, then partitioned in place
    if v.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    mean = float(v.mean() * 1e3)
    p = np.percentile(v, [50, 90, 99], overwrite_input=True)
    return {"mean": mean, "p50": float(p[0] * 1e3), "p90": float(p[1] * 1e3), "p99": float(p[2] * 1e3)}


#: rows a pool's column is expanded at a time (``_pool_internals``): bounds its temporaries
_CHUNK_ROWS = 1 << 18


def _pairwise_sum(n: int, chunk) -> float:
    """``np.add.reduce`` of a contiguous float64 column of ``n`` rows (``chunk(lo, hi)``: its rows
    lo..hi), a chunk at a time and bit for bit: numpy sums a contiguous array pairwise, halving a
    block of more than 128 values at ``n // 2`` rounded down to a multiple of 8, so the same halves
    are taken here down to blocks of at most ``_CHUNK_ROWS`` rows, which numpy sums itself."""
    def part(lo: int, hi: int) -> float:
        m = hi - lo
        if m <= max(_CHUNK_ROWS, 128):
            return float(np.add.reduce(chunk(lo, hi)))
        h = m // 2
        h -= h % 8
        return part(lo, lo + h) + part(lo + h, hi)
    return part(0, n)


def _nan_as_zero(v: np.ndarray) -> np.ndarray:
    """What pandas' ``Series.sum`` adds: missing values as 0."""
    nan = np.isnan(v)
    return np.where(nan, 0.0, v) if nan.any() else v


def _pool_internals(steps) -> dict:
    """Per pool (in name order): iterations, busy seconds, batch and KV fill, compute/communication
    shares. ``steps``: a ``simulator.steplog.StepTable`` (``steps.take(column, rows)``,
    ``pool_rows()``); each pool's columns are the rows of that pool in time order, reduced to the
    same numbers as pandas' ``Series.sum``/``max`` and ``np.average`` give over the whole columns,
    but expanded ``_CHUNK_ROWS`` rows at a time (``_pairwise_sum``: the same additions in the same
    order), not millions of rows at once."""
    out = {}
    for pool, rows in steps.pool_rows():
        n = len(steps) if rows is None else len(rows)

        def col(name, lo, hi):
            return steps.take(name, slice(lo, hi) if rows is None else rows[lo:hi])

        def maxima(name):  # each chunk's largest value (fmax: NaN only where every value is NaN)
            return [np.fmax.reduce(col(name, lo, lo + _CHUNK_ROWS)) for lo in range(0, n, _CHUNK_ROWS)]

        nan = []

        def step_chunk(lo, hi):
            v = col("step_s", lo, hi)
            nan.append(bool(np.isnan(v).any()))
            return v

        scl = _pairwise_sum(n, step_chunk)  # np.average's sum of the weights
        busy = _pairwise_sum(n, lambda lo, hi: _nan_as_zero(col("step_s", lo, hi))) if any(nan) else scl
        comp = _pairwise_sum(n, lambda lo, hi: _nan_as_zero(col("compute_s", lo, hi)))
        comm = _pairwise_sum(n, lambda lo, hi: _nan_as_zero(col("comm_s", lo, hi)))
        stats = {"iterations": int(n), "busy_s": busy}
        for name in ("batch_size", "kv_used_fraction"):
            # np.average(v, weights=step_s): sum(v * step_s) / sum(step_s), in float64
            vw = _pairwise_sum(n, lambda lo, hi: np.multiply(col(name, lo, hi), col("step_s", lo, hi),
                                                             dtype=np.float64))
            stats[f"mean_{name}"] = float(vw / scl) if busy > 0 else 0.0
        stats["max_batch_size"] = int(max(maxima("batch_size")))
        kv = [float(v) for v in maxima("kv_used_fraction") if not np.isnan(v)]  # Series.max skips NaN
        stats["max_kv_used_fraction"] = max(kv) if kv else float("nan")
        out[str(pool)] = {**{k: stats[k] for k in ("iterations", "busy_s", "mean_batch_size", "max_batch_size",
                                                   "mean_kv_used_fraction", "max_kv_used_fraction")},
                          "compute_share": comp / (comp + comm) if comp + comm > 0 else None,
                          "comm_share": comm / (comp + comm) if comp + comm > 0 else None}
    return out


def summarize(requests, steps, itl: ItlHistogram, dep, devices: int, devices_per_node: int, extra: dict) -> dict:
    """The run's summary dict (JSON-ready: plain floats, ints, None). ``requests``: the run's
    request columns (``simulator.result.REQUEST_COLUMNS`` to numpy arrays, or a DataFrame of them);
    ``steps``: the run's ``simulator.steplog.StepTable``. Computed as pandas' reductions over the
    requests table would (missing values skipped), from the arrays."""
    def column(c: str) -> np.ndarray:
        return np.asarray(requests[c])

    finished = np.isfinite(column("finish_s"))
    every = bool(np.logical_and.reduce(finished))

    def fin(c: str) -> np.ndarray:  # the finished requests' column (no copy of the whole table)
        v = column(c)
        return v if every else v[finished]

    n_all, n_fin = len(finished), int(np.count_nonzero(finished))
    # Series.min skips NaN (fmin); arrivals are never NaN
    span_s = float(np.maximum.reduce(fin("finish_s")) - np.fmin.reduce(column("arrival_s"))) if n_fin else 0.0
    slo = dep.slo
    ttft, tpot = fin("ttft_s"), fin("tpot_s")
    ok_ttft = ttft * 1e3 <= slo.ttft_ms
    ok_tpot = ~(tpot * 1e3 > slo.tpot_ms)  # NaN TPOT (one-token outputs) meets it
    good = int((ok_ttft & ok_tpot).sum())
    in_tok, out_tok = float(np.add.reduce(fin("prompt_tokens"))), float(np.add.reduce(fin("output_tokens")))
    per_s = (lambda x: x / span_s) if span_s > 0 else (lambda x: 0.0)
    q = slo.percentile
    ttft_q = float(np.percentile(ttft, q) * 1e3) if n_fin else None
    tpot_f = tpot[np.isfinite(tpot)]
    tpot_q = float(np.percentile(tpot_f, q) * 1e3) if tpot_f.size else None
    return {
        "name": dep.name,
        "seed": dep.seed,
        "counts": {
            "requests": n_all, "finished": n_fin, "unfinished": n_all - n_fin,
            "samples_per_request": int(dep.workload.samples_per_request),
            "cancelled_samples": int(np.add.reduce(column("cancelled_samples"), dtype=np.int64)),
            "preemptions": int(np.add.reduce(column("preemptions"), dtype=np.int64)),
            "input_tokens": int(in_tok), "output_tokens": int(out_tok),
        },
        "makespan_s": span_s,
        "ttft_ms": _stats_ms(ttft),
        "tpot_ms": _stats_ms(tpot),
        "itl_ms": itl.stats_ms(),
        "e2e_ms": _stats_ms(fin("e2e_s")),
        "queue_ms": _stats_ms(fin("queue_s")),
        "throughput": {
            "requests_per_s": per_s(n_fin),
            "input_tokens_per_s": per_s(in_tok),
            "output_tokens_per_s": per_s(out_tok),
            "input_tokens_per_s_per_device": per_s(in_tok) / devices,
            "output_tokens_per_s_per_device": per_s(out_tok) / devices,
            "input_tokens_per_s_per_node": per_s(in_tok) / devices * devices_per_node,
            "output_tokens_per_s_per_node": per_s(out_tok) / devices * devices_per_node,
        },
        "slo": {
            "ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms, "percentile": q,
            "goodput_requests_per_s": per_s(good),
            "attainment": good / n_all if n_all else 0.0,
            "ttft_attainment": float(ok_ttft.sum()) / n_all if n_all else 0.0,
            "tpot_attainment": float(ok_tpot.sum()) / n_all if n_all else 0.0,
            f"ttft_p{q:g}_ms": ttft_q,
            f"tpot_p{q:g}_ms": tpot_q,
            "slo_met_at_percentile": bool(ttft_q is not None and ttft_q <= slo.ttft_ms
                                          and (tpot_q is None or tpot_q <= slo.tpot_ms)),
        },
        "pools": _pool_internals(steps) if len(steps) else {},
        "devices": devices,
        "devices_per_node": devices_per_node,
        "engine": extra,
    }
