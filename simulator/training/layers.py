"""Which layers each pipeline stage of a training job holds, and the operators of a stage.

* :class:`LayerTemplates`: the operators of one micro-batch, built once from
  ``workloads.ops.step_ops`` with every layer on one stage and split by op group (``embed``,
  ``dense``, ``moe``, ``head``, ``mtp``) into per-layer templates. ``stage_ops(dense, moe,
  first, last)`` rebuilds any stage from them, so the placement below can move layers freely.
* ``split_layers``: layers per stage when the first and last stage hold ``first`` / ``last``
  decoder layers and the others share the rest evenly, earliest first (Megatron-LM's
  ``--decoder-first-pipeline-num-layers`` / ``--decoder-last-pipeline-num-layers``). The
  ``even`` placement is ``workloads.ops.stage_layers``'s: contiguous, extra layers first.
* ``balanced_split``: the first/last counts that minimise the busiest pipeline *device*
  (DualPipe's device holds stage r and its mirror), never giving a device more decoder layers
  (activation memory) than the even placement does: the stage that carries the embedding,
  the LM head and the MTP module (DeepSeek-V3 §2.2: one MTP module, its own transformer block
  plus a second LM head, on the last stage) takes fewer decoder layers. DeepSeek-V3's report does
  not print its split; ``layer_split: balanced`` is the assumption that it was balanced.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

from workloads.models import ModelConfig
from workloads.op import Op
from workloads.layout import Layout
from workloads.ops import BatchShape, stage_layers, step_ops

__all__ = ["GROUPS", "LayerTemplates", "split_layers", "even_split", "balanced_split"]

GROUPS = ("embed", "dense", "moe", "head", "mtp")


@dataclass(frozen=True)
class LayerTemplates:
    """Operators of one micro-batch by group; ``dense`` and ``moe`` hold one layer's operators."""

    groups: Mapping[str, tuple[Op, ...]]

    @classmethod
    def build(cls, model: ModelConfig, batch: BatchShape, par: Layout, dtype: str, moe_imbalance: float,
              include_mtp: bool, dispatch_dtype: str) -> "LayerTemplates":
        ops = step_ops(model, batch, replace(par, pp=1), dtype, moe_imbalance, include_mtp=include_mtp,
                       dispatch_dtype=dispatch_dtype)
        per = {"dense": model.num_dense_layers, "moe": model.num_layers - model.num_dense_layers}
        groups: dict[str, list[Op]] = {g: [] for g in GROUPS}
        for op in ops:
            if op.layer not in groups:
                raise ValueError(f"operator {op.name}: unknown layer group {op.layer!r} (valid: {', '.join(GROUPS)})")
            n = per.get(op.layer, 1)
            if op.count % n:
                raise ValueError(f"operator {op.name}: count {op.count} is not a multiple of its {n} layers")
            groups[op.layer].append(replace(op, count=op.count // n))
        return cls({g: tuple(v) for g, v in groups.items()})

    def stage_ops(self, dense: int, moe: int, first: bool, last: bool) -> list[Op]:
        """Operators of a stage holding ``dense`` + ``moe`` layers (embedding on the first,
        LM head and MTP module on the last)."""
        out: list[Op] = []
        if first:
            out += self.groups["embed"]
        out += [replace(op, count=op.count * dense) for op in self.groups["dense"]] if dense else []
        out += [replace(op, count=op.count * moe) for op in self.groups["moe"]] if moe else []
        if last:
            out += self.groups["head"] + self.groups["mtp"]
        return out


def _dense_moe(start: int, end: int, num_dense: int) -> tuple[int, int]:
    dense = max(0, min(end, num_dense) - start)
    return dense, (end - start) - dense


def split_layers(num_layers: int, num_dense: int, stages: int, first: int, last: int) -> tuple[tuple[int, int], ...]:
    """(dense, moe) layers per stage: ``first`` / ``last`` on the end stages, the rest even."""
    if stages == 1:
        return (_dense_moe(0, num_layers, num_dense),)
    middle = stages - 2
    rest = num_layers - first - last
    if first < 1 or last < 1 or rest < middle or (middle == 0 and rest != 0):
        raise ValueError(f"cannot place {num_layers} layers on {stages} stages with {first} first / {last} last")
    counts = [first]
    if middle:
        base, extra = divmod(rest, middle)
        counts += [base + (1 if i < extra else 0) for i in range(middle)]
    counts.append(last)
    out, start = [], 0
    for c in counts:
        out.append(_dense_moe(start, start + c, num_dense))
        start += c
    return tuple(out)


def even_split(model: ModelConfig, stages: int) -> tuple[tuple[int, int], ...]:
    """``workloads.ops.stage_layers`` for every stage (contiguous, extra layers first)."""
    return tuple(stage_layers(model, stages, s) for s in range(stages))


def balanced_split(model: ModelConfig, stages: int, held: Sequence[tuple[int, ...]],
                   stage_load: Callable[[int, int, bool, bool], float]) -> tuple[tuple[int, int], ...]:
    """The ``split_layers`` placement whose busiest device (``held[d]``: the stages device d
    holds) has the least load; ``stage_load(dense, moe, first, last)`` is a stage's seconds per
    micro-batch. No device may hold more decoder layers than under the even placement (their
    activations are what fills memory). Ties keep the even placement's end counts."""
    even = even_split(model, stages)
    if stages == 1:
        return even

    def most_layers(split: tuple[tuple[int, int], ...]) -> int:
        return max(sum(sum(split[s]) for s in h) for h in held)

    cap = most_layers(even)

    def device_max(split: tuple[tuple[int, int], ...]) -> float:
        loads = [stage_load(d, m, s == 0, s == stages - 1) for s, (d, m) in enumerate(split)]
        return max(sum(loads[s] for s in h) for h in held)

    best = (device_max(even), 0, even)
    base = model.num_layers // stages
    for first in range(1, 2 * base + 2):
        for last in range(1, 2 * base + 2):
            try:
                split = split_layers(model.num_layers, model.num_dense_layers, stages, first, last)
            except ValueError:
                continue
            if most_layers(split) > cap:
                continue
            cand = (device_max(split), abs(first - sum(even[0])) + abs(last - sum(even[-1])), split)
            if cand[:2] < best[:2]:
                best = cand
    return best[2]
