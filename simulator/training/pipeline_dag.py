"""A fixed-order pipeline schedule as a DAG: one longest-path pass gives the event simulation's step.

Every rank runs its program in order and an action starts once the rank is free and every
cross-rank input has arrived (the producer's end plus the point-to-point time), with nothing
shared between ranks. The event simulation (``pipeline.simulate_pipeline_events``) therefore
computes, action by action, ``end = max(end of the rank's previous action, end of each
producer + hop) + duration``: a longest path through a DAG whose shape depends only on
(schedule, pp, micro-batches). This module compiles that DAG once per shape
(:func:`compile_schedule`, cached) and evaluates it for any durations with numpy
(:func:`evaluate`): actions are grouped into topological levels (a rank has at most one action
per level), and each level is one vectorised max-plus update over all its ranks, and over
every layout of a batch at once. The float operations are those of the event simulation, in
the same order, so step times are identical (``tests/test_pipeline_schedules.py`` checks every
registered schedule on several shapes).

Busy time and phase totals are per-rank running sums in program order (``np.add.accumulate``
is sequential, as the simulation's ``+=``); peak in-flight activations depend only on each
rank's order (allocated when an F starts, freed when its B or Bi ends), so their count is
compiled and their bytes a running sum over the compiled increments.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping, Sequence

import numpy as np

from simulator.progress import collector_off
from simulator.training.schedules import KINDS, get_schedule

__all__ = ["ScheduleGraph", "compile_schedule", "evaluate", "PipelineFigures"]

_F, _B, _BI, _W = (KINDS.index(k) for k in ("F", "B", "Bi", "W"))
#: duration keys: ("F" | "B" | "Bi" | "W", stage) for one part, ("FB", stage_f, stage_b) for a pair
DurationKey = tuple


@dataclass(frozen=True, eq=False)
class ScheduleGraph:
    """The compiled DAG of one (schedule, pp, micro-batches). Actions are numbered in level
    order; index ``n`` is a sentinel whose end time is 0 (no predecessor, no input).

    ``levels``: level l is actions ``levels[l]:levels[l+1]``. ``prev``: the rank's previous
    action. ``dep``/``hop``: per part slot (2) the producing action and the hop index
    (``direction * stages + stage`` into the p2p table, ``2 * stages`` = no hop).
    ``dur_key``: index into ``keys``. ``program``: (ranks, K) action indices in program order,
    padded with ``n``. ``mem_stage``/``mem_sign``/``mem_check``: per rank the activation
    increments in order (stage, +1 at an F's start, -1 after a B/Bi) and, per action, the
    position whose running sum is compared with the peak. ``peak_inflight``: per rank.
    ``last``: each rank's last action.
    """

    schedule: str
    pp: int
    micro_batches: int
    ranks: int
    stages: int
    n: int
    levels: np.ndarray
    prev: np.ndarray
    dep: np.ndarray
    hop: np.ndarray
    dur_key: np.ndarray
    keys: tuple[DurationKey, ...]
    program: np.ndarray
    mem_stage: np.ndarray
    mem_sign: np.ndarray
    mem_check: np.ndarray
    peak_inflight: tuple[int, ...]
    last: np.ndarray


def _flatten(plan) -> tuple[np.ndarray, list[int]]:
    """(rank, position, kind, direction, mb, stage, slot) per part, and actions per rank."""
    lens = [len(acts) for acts in plan]
    nparts = [len(a.parts) for acts in plan for a in acts]
    parts = [p for acts in plan for a in acts for p in a.parts]
    if not parts:
        raise ValueError("a schedule with no actions")
    kind, d, mb, s = zip(*parts)
    kinds = np.array(kind)
    code = np.full(len(parts), -1, dtype=np.int64)
    for i, k in enumerate(KINDS):
        code[kinds == k] = i
    if (code < 0).any():
        raise ValueError(f"part kinds must be one of {', '.join(KINDS)}")
    nparts_a = np.array(nparts, dtype=np.int64)
    rank_a = np.repeat(np.arange(len(plan)), lens)
    pos_a = np.concatenate([np.arange(n) for n in lens])
    first = np.concatenate([[0], np.cumsum(nparts_a)[:-1]])
    slot = np.arange(len(parts)) - np.repeat(first, nparts_a)
    out = np.stack([np.repeat(rank_a, nparts_a), np.repeat(pos_a, nparts_a), code,
                    np.array(d), np.array(mb), np.array(s), slot], axis=1).astype(np.int64)
    return out, lens


def _producers(parts: np.ndarray, aid: np.ndarray, stages: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per part: the action producing its cross-rank input (``n``: none) and the hop index."""
    kind, d, mb, s = parts[:, 2], parts[:, 3], parts[:, 4], parts[:, 5]
    mbs = int(mb.max()) + 1
    grad = (kind == _B) | (kind == _BI)
    fwd = kind == _F
    # key of what a part produces: an F its activation for stage s+1, a B/Bi its gradient for s-1
    cls = np.where(fwd, 0, 1)
    key = ((cls * 2 + d) * mbs + mb) * stages + s
    table = np.full(2 * 2 * mbs * stages, -1, dtype=np.int64)
    made = fwd | grad
    if len(np.unique(key[made])) != int(made.sum()):
        raise ValueError("a schedule runs the same forward or backward part twice")
    table[key[made]] = aid[made]
    need_f = fwd & (s > 0)
    need_g = grad & (s < stages - 1)
    src_s = np.where(need_f, s - 1, np.where(need_g, s + 1, 0))
    src = np.where(need_f | need_g, table[((cls * 2 + d) * mbs + mb) * stages + src_s], n)
    if (src < 0).any():
        raise ValueError("a schedule waits for a part no rank runs")
    hop_s = np.where(need_f, s - 1, s)  # p2p_s(d, s) moves stage s's output to stage s+1 (and back)
    hop = np.where(need_f | need_g, d * stages + hop_s, 2 * stages)
    return src, hop


def _levels(program: np.ndarray, lens: np.ndarray, dep: np.ndarray, n: int) -> np.ndarray:
    """Topological level of every action (``max(level of the rank's previous action, level of
    each producer) + 1``): at level l every rank whose next action has all its inputs made at
    earlier levels runs it. A level where no rank can move is a deadlock."""
    R = program.shape[0]
    rows = np.arange(R)
    ptr = np.zeros(R, dtype=np.int64)
    done = np.zeros(n + 1, dtype=bool)
    done[n] = True
    level = np.empty(n, dtype=np.int64)
    left, lv = n, 0
    while left:
        live = ptr < lens
        cand = program[rows, np.minimum(ptr, lens - 1)]
        ready = live & done[dep[cand]].all(axis=1)
        if not ready.any():
            raise ValueError("the schedule deadlocks: its ranks wait on each other in a cycle")
        moved = cand[ready]
        level[moved] = lv
        done[moved] = True
        ptr += ready
        left -= len(moved)
        lv += 1
    return level


def _memory(parts: np.ndarray, lens: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    """Per rank: activation increments in order (an action's F's, then its B/Bi's), the position
    after each action's F's (the running sum there is compared with the peak; -1: none yet),
    and the peak in-flight count, which depends on the order only."""
    R = len(lens)
    kind = parts[:, 2]
    inc = kind == _F
    ev = inc | (kind == _B) | (kind == _BI)
    e = parts[ev]
    key = e[:, 1] * 2 + np.where(inc[ev], 0, 1)  # within a rank: position, F's before B's
    order = np.lexsort((key, e[:, 0]))
    e, key = e[order], key[order]
    per_rank = np.bincount(e[:, 0], minlength=R)
    start = np.concatenate([[0], np.cumsum(per_rank)[:-1]])
    j = np.arange(len(e)) - start[e[:, 0]]
    J, K = max(1, int(per_rank.max())), max(lens)
    stage = np.zeros((R, J), dtype=np.int64)
    sign = np.zeros((R, J))
    stage[e[:, 0], j] = e[:, 5]
    sign[e[:, 0], j] = np.where(e[:, 2] == _F, 1.0, -1.0)
    big = 2 * K + 2  # events of rank r sort as r * big + key; an action's F's end at key 2k
    flat = e[:, 0] * big + key
    rr = np.repeat(np.arange(R), K)
    kk = np.tile(np.arange(K), R)
    check = (np.searchsorted(flat, rr * big + 2 * kk, side="right") - 1 - start[rr]).reshape(R, K)
    count = np.cumsum(sign, axis=1)
    at = np.where(check >= 0, np.take_along_axis(count, np.maximum(check, 0), axis=1), 0.0)
    valid = np.arange(K)[None, :] < np.asarray(lens)[:, None]
    check = np.where(valid, check, -1)
    peaks = np.maximum(np.where(valid, at, 0.0).max(axis=1), 0.0)
    return stage, sign, check, tuple(int(x) for x in peaks)


def _duration_keys(parts: np.ndarray, aid: np.ndarray, n: int, stages: int) -> tuple[np.ndarray, tuple]:
    """Per action an index into the unique duration keys: ``(kind, stage)`` for one part,
    ``("FB", stage of the F, stage of the B)`` for a pair."""
    first = np.full(n, -1, dtype=np.int64)
    second = np.full(n, -1, dtype=np.int64)
    one_code = parts[:, 2] * stages + parts[:, 5]
    s0 = parts[:, 6] == 0
    first[aid[s0]] = one_code[s0]
    second[aid[~s0]] = parts[~s0, 5]
    pair = second >= 0
    if pair.any() and not (first[pair] // stages == _F).all():
        raise ValueError("an overlapped pair must be (forward, backward)")
    code = np.where(pair, len(KINDS) * stages + (first % stages) * stages + second, first)
    uniq, inv = np.unique(code, return_inverse=True)
    keys = tuple(("FB", int(c - len(KINDS) * stages) // stages, int(c - len(KINDS) * stages) % stages)
                 if c >= len(KINDS) * stages else (KINDS[int(c) // stages], int(c) % stages) for c in uniq)
    return inv.astype(np.int64), keys


@lru_cache(maxsize=64)
def compile_schedule(schedule: str, pp: int, micro_batches: int) -> ScheduleGraph:
    """The DAG of ``schedule`` on ``pp`` devices with ``micro_batches`` (cached per shape)."""
    sched = get_schedule(schedule)
    with collector_off():  # building ~10^5 small tuples: collections of a heap with no cycles
        plan = sched.actions(pp, micro_batches)
        parts, lens = _flatten(plan)
    del plan
    ranks, stages = len(lens), sched.ranks(pp)
    n, K = sum(lens), max(lens)
    start = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    aid = start[parts[:, 0]] + parts[:, 1]  # rank-major action id of every part
    lens_a = np.asarray(lens, dtype=np.int64)
    pos = np.arange(K)
    program = np.where(pos[None, :] < lens_a[:, None], start[:, None] + pos[None, :], n)
    src, hop_p = _producers(parts, aid, stages, n)
    dep = np.full((n, 2), n, dtype=np.int64)
    hop = np.full((n, 2), 2 * stages, dtype=np.int64)
    dep[aid, parts[:, 6]] = src
    hop[aid, parts[:, 6]] = hop_p
    prev = np.arange(-1, n - 1, dtype=np.int64)
    prev[start] = n  # a rank's first action follows nothing
    level = _levels(program, lens_a, dep, n)
    dkey, keys = _duration_keys(parts, aid, n, stages)
    mem = _memory(parts, lens)
    # renumber in level order (stable: rank-major within a level)
    order = np.argsort(level, kind="stable")
    new = np.empty(n + 1, dtype=np.int64)
    new[order] = np.arange(n)
    new[n] = n
    counts = np.bincount(level)
    return ScheduleGraph(
        schedule=schedule, pp=pp, micro_batches=micro_batches, ranks=ranks, stages=stages, n=n,
        levels=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        prev=new[prev[order]], dep=new[dep[order]], hop=hop[order], dur_key=dkey[order],
        keys=keys, program=new[program], mem_stage=mem[0], mem_sign=mem[1], mem_check=mem[2],
        peak_inflight=mem[3], last=new[start + lens_a - 1])


# ----------------------------------------------------------------------------- evaluation

Phases = Mapping[str, float]


@dataclass(frozen=True)
class PipelineFigures:
    """What one evaluation gives per simulated rank (the fields of ``pipeline.PipelineRun``)."""

    end_s: tuple[float, ...]
    busy_s: tuple[float, ...]
    phases_s: tuple[dict[str, float], ...]
    peak_act_bytes: tuple[float, ...]


def _key_phases(g: ScheduleGraph, phases_of: Callable[[DurationKey], Phases],
                names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per duration key: seconds (the simulation's ``float(sum(phases))``) and the phase matrix."""
    dur = np.zeros(len(g.keys) + 1)
    mat = []
    for i, k in enumerate(g.keys):
        ph = phases_of(k)
        dur[i] = float(sum(ph.values()))
        for name in ph:
            if name not in names:
                names.append(name)
        mat.append(ph)
    out = np.zeros((len(g.keys) + 1, len(names)))
    for i, ph in enumerate(mat):
        for name, v in ph.items():
            out[i, names.index(name)] = v
    return dur, out


def evaluate(g: ScheduleGraph, phases_of: Sequence[Callable[[DurationKey], Phases]],
             p2p_s: Sequence[Callable[[int, int], float]], act_bytes: Sequence[Sequence[float]],
             phase_names: Sequence[str]) -> list[PipelineFigures]:
    """Evaluate ``g`` for a batch of layouts (one entry of each sequence per layout):
    ``phases_of[i](key)`` the phase dict of a duration key, ``p2p_s[i](direction, stage)`` the
    hop from ``stage`` to the next, ``act_bytes[i][stage]`` the activations one micro-batch
    leaves on a stage. Returns per layout the rank figures."""
    L = len(phases_of)
    names = list(phase_names)
    tables = [_key_phases(g, f, names) for f in phases_of]
    width = len(names)
    # per key (the last is the sentinel's zeros): seconds, then each phase; (keys+1, 1+width, L)
    key_t = np.stack([np.concatenate([t[0][:, None], np.pad(t[1], ((0, 0), (0, width - t[1].shape[1])))], axis=1)
                      for t in tables], axis=2)
    hop_t = np.zeros((2 * g.stages + 1, L))
    for i, f in enumerate(p2p_s):
        hop_t[: 2 * g.stages, i] = [f(d, s) for d in (0, 1) for s in range(g.stages)]
    end = _longest_path(g, key_t[:, 0, :], hop_t)
    sums = _program_sums(g, key_t)  # (R, 1+width, L): busy, then phases
    ends = end[g.last]  # (R, L)
    peak = _peak_act(g, act_bytes)  # (R, L)
    out = []
    for i in range(L):
        ph = sums[:, 1:, i].tolist()
        out.append(PipelineFigures(
            end_s=tuple(ends[:, i].tolist()), busy_s=tuple(sums[:, 0, i].tolist()),
            phases_s=tuple(dict(zip(names, row)) for row in ph), peak_act_bytes=tuple(peak[:, i].tolist())))
    return out


def _program_sums(g: ScheduleGraph, key_t: np.ndarray) -> np.ndarray:
    """Per rank the running sums of its actions' seconds and phases, in program order (one
    in-place add per program position: the simulation's ``+=`` sequence, bit for bit)."""
    keyed = np.concatenate([g.dur_key, [key_t.shape[0] - 1]])[g.program]  # (R, K); padding -> zeros
    acc = np.zeros((g.ranks,) + key_t.shape[1:])
    for k in range(keyed.shape[1]):
        acc += key_t[keyed[:, k]]
    return acc


def _peak_act(g: ScheduleGraph, act_bytes: Sequence[Sequence[float]]) -> np.ndarray:
    """Peak activation bytes per rank and layout: the running sum of the compiled increments,
    read after each action's forwards (0 before any)."""
    ab = np.stack([np.asarray(list(a) or [1.0] * g.stages, dtype=float) for a in act_bytes], axis=1)  # (S, L)
    inc = g.mem_sign[:, :, None] * ab[g.mem_stage]  # (R, J, L)
    run = np.zeros_like(inc)
    acc = np.zeros((g.ranks, inc.shape[2]))
    for j in range(inc.shape[1]):
        acc += inc[:, j]
        run[:, j] = acc
    idx = np.maximum(g.mem_check, 0)
    at = np.take_along_axis(run, idx[:, :, None], axis=1)
    at = np.where((g.mem_check >= 0)[:, :, None], at, 0.0)
    return np.maximum(at.max(axis=1), 0.0)


def _longest_path(g: ScheduleGraph, dur_k: np.ndarray, hop_t: np.ndarray) -> np.ndarray:
    """End time of every action (rows; the last is the sentinel's 0) for every layout (columns)."""
    L = dur_k.shape[1]
    end = np.zeros((g.n + 1, L))
    dur = dur_k[g.dur_key]
    h0, h1 = hop_t[g.hop[:, 0]], hop_t[g.hop[:, 1]]
    prev, d0, d1 = g.prev, g.dep[:, 0], g.dep[:, 1]
    lv = g.levels.tolist()
    for lo, hi in zip(lv[:-1], lv[1:]):
        t = np.maximum(end[prev[lo:hi]], end[d0[lo:hi]] + h0[lo:hi])
        np.maximum(t, end[d1[lo:hi]] + h1[lo:hi], out=t)
        end[lo:hi] = t + dur[lo:hi]
    return end
