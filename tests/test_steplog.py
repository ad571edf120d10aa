"""``simulator.steplog``: the coded step log gives back every logged value exactly (signed zeros,
NaN), in time order, the KV fraction as ``KVBlocks.used_fraction`` computes it; ``end_order`` (by
chunks) is the whole-column stable sort; ``fastforward.ambiguous_ties`` on it answers as the plain
whole-column rule."""

from __future__ import annotations

import numpy as np

import pytest

from simulator import steplog
from simulator.fastforward import ambiguous_ties
from simulator.kv import KVBlocks
from simulator.steplog import StepLog, end_order

INTS = ("instance", "batch_size", "decode_seqs", "prefill_tokens", "new_tokens")
FLOATS = ("step_s", "compute_s", "comm_s")
#: KV capacity (blocks) of instances 0..3 (``_fill``'s rows): 0 reads as a fraction 0.0
CAPACITY = [7, 3, 0, 1 << 20]


def _fraction(instance: int, used: int) -> float:
    kv = KVBlocks(CAPACITY[instance] * 64)
    kv.used_blocks = used
    return kv.used_fraction


def _fill(seed: int):
    """A log of appended rows and extended runs (some flagged, appended late), and the rows as
    plain columns in append order."""
    rng = np.random.default_rng(seed)
    kv_rng = np.random.default_rng(seed + 1000)  # KV blocks drawn apart: the other draws as before
    log, rows = StepLog(), {c: [] for c in ("time_s", "flag", "itl_add_s", "kv_used_fraction") + INTS + FLOATS}
    pick = lambda: float(rng.choice([0.0, -0.0, 0.5, 0.25, 1e-3, np.nan, 0.5]))  # noqa: E731
    t = 0.0
    for _ in range(300):
        t += float(rng.choice([0.0, 0.1, 0.25]))
        ints = [int(x) for x in rng.integers(0, 4, len(INTS))]
        if rng.random() < 0.6:
            fl = {c: pick() for c in FLOATS}
            used = int(kv_rng.integers(0, 1 << 20))
            i = log.append(t, *ints, fl["step_s"], used, fl["compute_s"], fl["comm_s"])
            rows["kv_used_fraction"].append(_fraction(ints[0], used))
            log.itl_add_s[i] = add = float(rng.random())
            for c, v in zip(INTS, ints):
                rows[c].append(v)
            for c in FLOATS:
                rows[c].append(fl[c])
            rows["time_s"].append(t)
            rows["flag"].append(0)
            rows["itl_add_s"].append(add)
        else:
            n = int(rng.integers(1, 12))
            late = rng.random() < 0.3
            times = t + (5.0 if late else 0.0) + np.arange(n) * 0.125
            fl = {c: np.array([pick() for _ in range(n)]) if rng.random() < 0.5 else np.full(n, pick())
                  for c in FLOATS}
            used = int(kv_rng.integers(0, 1 << 20)) if kv_rng.random() < 0.5 else kv_rng.integers(0, 1 << 20, n)
            rows["kv_used_fraction"] += [_fraction(ints[0], int(u)) for u in np.broadcast_to(used, n)]
            itl = rng.random(n)
            itl[-1] = 0.0  # the last row's gap is set when its step is applied
            codes = [(log.code(*ints, float(fl["step_s"][i]), float(fl["compute_s"][i]), float(fl["comm_s"][i])), 1)
                     for i in range(n)]
            log.extend_coded(times, used, itl[:-1], codes, flagged=late)
            for c, v in zip(INTS, ints):
                rows[c] += [v] * n
            for c in FLOATS:
                rows[c] += fl[c].tolist()
            rows["time_s"] += times.tolist()
            rows["flag"] += [int(late)] * n
            rows["itl_add_s"] += itl.tolist()
    return log, {c: np.array(v) for c, v in rows.items()}


def test_table_gives_back_every_value_in_time_order():
    for seed in range(5):
        log, rows = _fill(seed)
        order = np.argsort(rows["time_s"], kind="stable")
        table = log.table(["p0", "p1", "p0", "p2"], CAPACITY)
        assert len(table) == len(order)
        for c in rows:
            got, want = table[c], rows[c][order]
            assert got.tobytes() == want.astype(got.dtype).tobytes(), c  # bits: signed zeros and NaN
        df = table.frame()
        assert df["pool"].tolist() == [["p0", "p1", "p0", "p2"][i] for i in rows["instance"][order]]
        assert str(df["batch_size"].dtype) == "int64" and str(df["step_s"].dtype) == "float64"
        rows_all = [c[:] for _, c in table.column_chunks(7)]
        assert sum(len(c[0]) for c in rows_all) == len(order)


def _ties_plain(cols, order, arrivals):
    """The whole-column rule (the code before the chunked one)."""
    flag = cols["flag"]
    if not flag.any():
        return False
    end = cols["time_s"] + cols["step_s"]
    if arrivals.size:
        fe = end[flag != 0]
        idx = np.minimum(np.searchsorted(arrivals, fe), arrivals.size - 1)
        if (arrivals[idx] == fe).any():
            return True
    e = end[order]
    same = e[1:] == e[:-1]
    if not same.any():
        return False
    starts = np.flatnonzero(np.concatenate(([True], ~same)))
    inst, f = cols["instance"][order], cols["flag"][order]
    multi = np.minimum.reduceat(inst, starts) != np.maximum.reduceat(inst, starts)
    return bool((multi & (np.maximum.reduceat(f, starts) != 0)).any())


def test_ambiguous_ties_as_the_whole_column_rule():
    answers = set()
    for seed in range(40):
        log, _ = _fill(seed)
        table = log.table(["a"] * 4, CAPACITY)
        cols = {c: table[c] for c in ("flag", "time_s", "step_s", "instance")}
        order = end_order(table)
        assert order.tobytes() == end_order(cols).tobytes()
        assert order.tobytes() == np.argsort(cols["time_s"] + cols["step_s"], kind="stable").astype(np.int32).tobytes()
        for arrivals in (np.zeros(0), np.array([0.25, 1.0, 7.5]), np.sort(cols["time_s"][::17] + 0.125)):
            want = _ties_plain(cols, order, arrivals)
            assert ambiguous_ties(table, order, arrivals) == want
            assert ambiguous_ties(cols, order, arrivals) == want
            answers.add(want)
    assert answers == {True, False}


@pytest.mark.parametrize("chunk", [1, 2, 5, 64, 1 << 18])
def test_end_order_by_chunks_is_the_whole_column_sort(monkeypatch, chunk):
    """Chunked ``end_order`` against ``np.argsort(time_s + step_s, kind="stable")``: ties, NaN and
    long steps carried over chunks, and the fallback (a negative step, times out of order)."""
    monkeypatch.setattr(steplog, "CHUNK_ROWS", chunk)
    rng = np.random.default_rng(chunk)
    for case in range(60):
        n = int(rng.integers(0, 300))
        time = np.sort(rng.choice([0.0, 0.25, 0.5, 1.0, 2.0], n).cumsum() * 0.5)
        step = rng.choice([0.0, -0.0, 0.125, 0.25, 0.75, 3.0, np.nan, np.inf], n)
        if case % 10 == 7 and n:
            step[rng.integers(0, n)] = -0.125
        if case % 10 == 9 and n > 1:
            time[[0, -1]] = time[[-1, 0]]
        cols = {"time_s": time, "step_s": step}
        want = np.argsort(time + step, kind="stable").astype(np.int32)
        assert end_order(cols).tobytes() == want.tobytes(), case
