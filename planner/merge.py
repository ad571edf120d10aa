"""Layouts with identical results, merged into one row of the plan's table.

Many layouts of a search space give the same metrics: a decode batch limit that the KV room
or the TPOT SLO binds first, redundant experts that leave a prefill instance's step costs as
they are. One row stands for all of them: the layout ``planner.space.layouts_of`` yields
first, with the point id it has there (so the ranking's tie-break, which puts the lowest id
first among equal rows, and every seed derived from an id are those of the unmerged grid),
``equivalent_layouts`` (how many layouts the row stands for) and ``equivalent_variants``
(what varies among them: ``decode_max_batch_size 8192|16384; prefill_redundant_experts 0|32``).

Two steps:

1. Before evaluating: ``Evaluator.result_key`` names what the metrics read of a pool choice;
   choices of a role with equal keys are interchangeable in every layout
   (``choice_classes``), and ``merged_blocks`` walks the grid class by class, one block of
   instance counts per pair of classes.
2. After evaluating: ``merge_identical`` merges the rows whose metrics are equal to the last
   bit (e.g. two decode batch limits whose wait for a slot is zero at both).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Iterator

from planner.space import PoolChoice, ServingLayout, count_pairs, pair_count

__all__ = ["ChoiceClass", "MergedBlock", "LayoutIndex", "choice_classes", "merged_blocks", "merge_identical",
           "merge_rows", "merge_groups", "MergedGroups", "COUNT", "VARIANTS", "RESULT_COLUMNS"]

#: the columns a merged row adds
COUNT, VARIANTS = "equivalent_layouts", "equivalent_variants"
#: per-choice columns that are results, not labels (``planner.rows``)
RESULT_COLUMNS = ("decode_tokens_per_s_per_decode_device", "decode_tpot_ms_at_decode_capacity",
                  "decode_batch_per_rank_at_decode_capacity")
_ROLES = ("pool_", "prefill_", "decode_")


@dataclass(frozen=True)
class ChoiceClass:
    """Interchangeable pool choices of one role: ``rep`` (the first in enumeration order), its
    position in the role's choice list, and every member (``rep`` first)."""

    rep: PoolChoice
    index: int
    members: tuple[PoolChoice, ...]

    def variants(self) -> dict[str, tuple]:
        """The label columns whose values differ among the members: column -> values."""
        if len(self.members) == 1:
            return {}
        cols = [_choice_columns(c) for c in self.members]
        out = {}
        for name in cols[0]:
            vals = tuple(dict.fromkeys(c[name] for c in cols))
            if len(vals) > 1:
                out[name] = vals
        return out


@dataclass(frozen=True)
class MergedBlock:
    """Layouts of one pair of classes (or one colocated class): ``counts[i]`` instances, point
    id ``first + i``; each row stands for ``count`` layouts that differ in ``variants``."""

    mode: str
    choices: tuple[PoolChoice, ...]
    counts: list[tuple[int, ...]]
    first: int
    count: int
    variants: dict[str, tuple]

    def layout(self, i: int) -> ServingLayout:
        return ServingLayout(self.mode, tuple(zip(self.choices, self.counts[i])))


def _choice_columns(choice: PoolChoice) -> dict:
    r, lay = choice.role, choice.layout
    out = {f"{r}_attn_tp": lay.tp, f"{r}_attn_dp": lay.dp, f"{r}_attn_sp": lay.sp, f"{r}_pp": lay.pp,
           f"{r}_moe_ep": lay.ep, f"{r}_moe_tp": lay.moe_tp_eff, f"{r}_redundant_experts": lay.redundant_experts,
           f"{r}_micro_batches": lay.micro_batches, f"{r}_mtp_depth": choice.mtp_depth}
    if r != "prefill":
        out[f"{r}_max_batch_size"] = choice.max_batch_size
    if r != "decode":
        out[f"{r}_max_tokens_per_iteration"] = choice.max_tokens_per_iteration
    return out


def choice_classes(choices: list[PoolChoice], key: Callable[[PoolChoice], tuple]) -> list[ChoiceClass]:
    """``choices`` grouped by ``key``, in the order of each class's first member."""
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(choices):
        groups.setdefault(key(c), []).append(i)
    return [ChoiceClass(choices[ix[0]], ix[0], tuple(choices[i] for i in ix)) for ix in groups.values()]


def merged_blocks(ctx, space, classes: dict[str, list[ChoiceClass]],
                  choices: dict[str, list[PoolChoice]], first_id: int = 0) -> Iterator[MergedBlock]:
    """The grid of ``layouts_of(ctx, space, choices)`` a block per class (pair), each
    representative at its id there plus ``first_id`` (module docstring). ``classes`` group
    ``choices`` by role. Blocks of one pair of instance sizes share one ``counts`` list."""
    budget, cap = ctx.budget_devices, space.max_instances
    base = first_id
    if "colocated" in space.modes:
        starts, acc = [], 0
        for c in choices.get("pool", []):
            starts.append(acc)
            acc += min(cap, budget // c.devices_per_instance)
        for cls in classes.get("pool", []):
            c = cls.rep
            counts = [(n,) for n in range(1, min(cap, budget // c.devices_per_instance) + 1)]
            yield MergedBlock("colocated", (c,), counts, base + starts[cls.index], len(cls.members), cls.variants())
        base += acc
    if "disaggregated" not in space.modes:
        return
    pre, dec = choices.get("prefill", []), choices.get("decode", [])
    pairs: dict[tuple[int, int], int] = {}
    for p in pre:
        for d in dec:
            key = (p.devices_per_instance, d.devices_per_instance)
            if key not in pairs:
                pairs[key] = pair_count(key[0], key[1], budget, cap)
    d_start, acc = [], base  # layouts_of: each decode choice, each prefill choice, the count pairs
    for d in dec:
        d_start.append(acc)
        acc += sum(pairs[(p.devices_per_instance, d.devices_per_instance)] for p in pre)
    p_classes = classes.get("prefill", [])
    p_vars = [pc.variants() for pc in p_classes]
    counts_of: dict[tuple[int, int], list] = {}
    for dcls in classes.get("decode", []):
        d = dcls.rep
        offs, acc = [], d_start[dcls.index]
        for p in pre:
            offs.append(acc)
            acc += pairs[(p.devices_per_instance, d.devices_per_instance)]
        d_vars = dcls.variants()
        for pcls, p_var in zip(p_classes, p_vars):
            p = pcls.rep
            sizes = (p.devices_per_instance, d.devices_per_instance)
            counts = counts_of.get(sizes)
            if counts is None:
                counts = counts_of[sizes] = list(count_pairs(*sizes, budget, cap))
            yield MergedBlock("disaggregated", (p, d), counts, offs[pcls.index], len(pcls.members) * len(dcls.members),
                              {**p_var, **d_vars})


class LayoutIndex:
    """Point id -> ServingLayout over merged blocks (ids of a block are consecutive) and the
    layouts set one by one (``add``)."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._blocks: list[MergedBlock] = []
        self._one: dict[int, ServingLayout] = {}
        self._sorted = True

    def add_block(self, block: MergedBlock) -> None:
        self._sorted = self._sorted and (not self._starts or block.first > self._starts[-1])
        self._starts.append(block.first)
        self._blocks.append(block)

    def add(self, point_id: int, layout: ServingLayout) -> None:
        self._one[point_id] = layout

    def get(self, point_id: int) -> ServingLayout | None:
        lay = self._one.get(point_id)
        if lay is not None:
            return lay
        if not self._sorted:
            self._blocks.sort(key=lambda b: b.first)
            self._starts = [b.first for b in self._blocks]
            self._sorted = True
        i = bisect.bisect(self._starts, point_id) - 1
        if i >= 0:
            b = self._blocks[i]
            if point_id - b.first < len(b.counts):
                return b.layout(point_id - b.first)
        return None

    def __getitem__(self, point_id: int) -> ServingLayout:
        lay = self.get(int(point_id))
        if lay is None:
            raise KeyError(point_id)
        return lay

    def __contains__(self, point_id: object) -> bool:
        return isinstance(point_id, int) and self.get(point_id) is not None


def _py(v):
    return v.item() if hasattr(v, "item") else v


def _show(v) -> str:
    if isinstance(v, float) and v.is_integer():  # an int column that holds NaN in other modes' rows
        return str(int(v))
    return str(v)


def _text(variants: dict[str, tuple]) -> str:
    return "; ".join(f"{k} {'|'.join(_show(v) for v in vals)}" for k, vals in variants.items())


def _hash(col):
    import numpy as np
    import pandas as pd

    return pd.util.hash_array(col if isinstance(col, np.ndarray) else np.asarray(col, dtype=object))


def _groups(cols, keys: list[str]):
    """Group number of each row of ``cols`` (a ``planner.rows.Columns``) by equal ``keys``
    values (NaN equal to NaN). Rows are hashed a column at a time and only those whose hash
    repeats are grouped exactly, so the table is never factorised whole."""
    import numpy as np
    import pandas as pd

    h = np.zeros(cols.n, dtype=np.uint64)
    for k in keys:
        h = h * np.uint64(1_000_003) ^ _hash(cols.column(k))
    maybe = np.flatnonzero(pd.Series(h).duplicated(keep=False).to_numpy())
    gid = np.arange(cols.n, dtype=np.int64) + (cols.n if len(maybe) else 0)
    if len(maybe):
        sub = pd.DataFrame({k: cols.column(k, maybe) for k in keys})
        gid[maybe] = sub.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    return gid


def merge_identical(cols, variants_col: str = "_variants", order=None):
    """The table of ``cols`` (a ``planner.rows.Columns`` of evaluated rows with ``id``,
    ``COUNT`` and a column of per-row variant dicts, consumed) with rows whose results are
    equal merged into the one of lowest id (module docstring), as a DataFrame in id order or
    in ``order(kept)`` (positions into ``kept``, the rows kept in id order); the variant dicts
    become the text column ``VARIANTS``."""
    kept, counts, texts = merge_rows(cols, variants_col)
    at = order(kept) if order is not None else range(len(kept))
    cols.drop(variants_col)
    out = cols.frame(kept[at])
    out[COUNT] = counts[at]
    out[VARIANTS] = [texts[j] for j in at]
    return out


def merge_rows(cols, variants_col: str = "_variants"):
    """(the rows ``merge_identical`` keeps, in id order; how many layouts each stands for; the
    text of what varies among them), the rows staying in ``cols``."""
    groups = merge_groups(cols, variants_col)
    return groups.kept, groups.counts, groups.texts(cols)


@dataclass(frozen=True, eq=False)
class MergedGroups:
    """The groups of identical rows of a ``planner.rows.Columns`` (``merge_groups``): ``kept``
    (the row of lowest id of each group, in id order) and ``counts`` (the layouts each stands
    for); ``texts(cols)`` the text of what varies among each group's layouts, apart, since
    only the table needs it (the plan begins verifying from ``kept`` first)."""

    kept: object  # numpy int array
    counts: object  # numpy int array
    variants_col: str
    label: tuple
    gid: object
    order: object
    starts: object
    sizes: object
    keep: object  # ``kept`` in group order
    by_id: object  # group order -> id order

    def texts(self, cols) -> list[str]:
        """The ``VARIANTS`` text of each kept row, in id order (``cols`` still holds the variants)."""
        import numpy as np

        order, starts, sizes, gid, label = self.order, self.starts, self.sizes, self.gid, list(self.label)
        var = cols.column(self.variants_col)
        memo: dict[int, str] = {}  # a block's rows share one variants dict
        texts = []
        for i in self.keep:
            v = var[i]
            t = memo.get(id(v))
            if t is None:
                t = memo[id(v)] = _text(v)
            texts.append(t)
        multi = np.flatnonzero(sizes > 1)
        if multi.size:
            import pandas as pd

            rows = order[np.repeat(sizes > 1, sizes)]  # the rows of merged groups
            where = {int(r): j for j, r in enumerate(rows)}
            sub = pd.DataFrame({c: cols.column(c, rows) for c in label})
            nun = sub.groupby(gid[rows], sort=False).nunique()  # NaN not counted
            # the columns that vary in each group, in label order (one pass over the varying cells)
            varying: dict = {g: [] for g in nun.index.tolist()}
            groups_at = nun.index.tolist()
            for r, k in zip(*(a.tolist() for a in np.nonzero(nun.to_numpy() > 1))):
                varying[groups_at[r]].append(label[k])
            vals = {c: sub[c].to_numpy() for c in label}
            for j in multi:
                members = order[starts[j]: starts[j] + sizes[j]]
                names_ = dict.fromkeys(varying[gid[members[0]]])
                for i in members:
                    names_.update(dict.fromkeys(var[i]))
                merged: dict[str, tuple] = {}
                for c in (c for c in label if c in names_):
                    seen: dict = {}
                    for i in members:
                        for x in var[i].get(c, (_py(vals[c][where[int(i)]]),)):
                            seen.setdefault(x, None)
                    if len(seen) > 1:
                        merged[c] = tuple(seen)
                texts[j] = _text(merged)
        return [texts[j] for j in self.by_id]


def merge_groups(cols, variants_col: str = "_variants") -> MergedGroups:
    """``merge_rows``' groups of identical rows (``MergedGroups``), their texts left for later."""
    import numpy as np

    names = cols.names()
    label = [c for c in names if c.startswith(_ROLES) and c not in RESULT_COLUMNS]
    keys = [c for c in names if c not in label and c not in ("id", "layout", COUNT, variants_col)]
    gid = _groups(cols, keys)
    ids = np.asarray(cols.column("id"))
    n = len(gid)
    order = np.lexsort((ids, gid))
    first = np.ones(n, dtype=bool)
    first[1:] = gid[order][1:] != gid[order][:-1]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, n))
    keep = order[starts]
    count = np.asarray(cols.column(COUNT))
    counts = np.add.reduceat(count[order], starts) if n else count
    by_id = np.argsort(ids[keep], kind="stable")
    return MergedGroups(keep[by_id], counts[by_id], variants_col, tuple(label), gid, order, starts, sizes, keep, by_id)
