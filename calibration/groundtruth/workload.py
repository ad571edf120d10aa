"""What each ground-truth row ran, as ``workloads`` operators (no torch).

:func:`row_ops` maps one row of a ground-truth table to the operator list of the same step
(``workloads.ops.step_ops`` with the row's model, batch and parallelism), so the predictor
(``clustersim.validation``) costs exactly what was measured and the run plan
(``calibration.groundtruth.plan``) can size each point before measuring it. Steps measured on
one GPU leave out their collectives; callers drop ops on the ``comm`` stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from calibration.groundtruth.configs import model_config
from workloads.layout import Layout
from workloads.ops import BatchShape, moe_layer_ops, step_ops

#: file name -> family (the unit the accuracy report groups by)
FAMILIES = {
    "gt_dense_prefill.csv": "dense prefill",
    "gt_dense_decode.csv": "dense decode",
    "gt_moe_layer.csv": "moe layer",
    "gt_dense_decode_long.csv": "dense decode long",
    "gt_moe_small.csv": "moe small",
    "gt_mla_decode.csv": "mla decode",
    "gt_mla_prefill.csv": "mla prefill",
}
#: tables of the first ground-truth run (and its repeats), which carry no ``split`` column
MAIN_TABLES = ("gt_dense_prefill.csv", "gt_dense_decode.csv", "gt_moe_layer.csv")


@dataclass(frozen=True)
class RowWork:
    """One row's identity for reports and the operators of its step on one device."""

    family: str
    case: str
    point: str
    ops: tuple


def _int(row: Mapping, col: str) -> int:
    return int(row[col])


def row_ops(table: str, row: Mapping, kernels: str = "eager") -> RowWork:
    """The operators of the step that ``row`` of ground-truth table ``table`` measured.

    ``kernels="eager"``: the ground truth is plain torch, so its glue kernels are the eager set.
    """
    family = FAMILIES[table]
    layers = int(row["layers"]) if "layers" in row else None
    m = model_config(str(row["model"]), layers)
    if family in ("dense prefill", "dense decode", "dense decode long"):
        b, tp = _int(row, "batch"), _int(row, "tp")
        if family == "dense prefill":
            shape, point = BatchShape.prefill(b, _int(row, "seq")), f"B={b} S={row['seq']}"
        else:
            shape, point = BatchShape.decode(b, _int(row, "context")), f"B={b} C={row['context']}"
        suffix = {"dense prefill": "prefill", "dense decode": "decode", "dense decode long": "decode long"}[family]
        ops = step_ops(m, shape, Layout(tp=tp), kernels=kernels)
        return RowWork(family, f"{m.name} tp{tp} {suffix}", point, tuple(ops))
    if family in ("moe layer", "moe small"):
        ep, t = _int(row, "ep"), _int(row, "tokens_per_rank")
        ops = moe_layer_ops(step_ops(m, BatchShape.prefill(ep, t), Layout(dp=ep, ep=ep, moe_tp=1),
                                     kernels=kernels))
        return RowWork(family, f"{m.name} ep{ep} {family}", f"T={t}", tuple(ops))
    b = _int(row, "batch")
    if family == "mla decode":
        shape, point = BatchShape.decode(b, _int(row, "context")), f"B={b} C={row['context']}"
    else:
        shape, point = BatchShape.prefill(b, _int(row, "seq")), f"B={b} S={row['seq']}"
    return RowWork(family, f"{m.name} L{m.num_layers} {family}", point,
                   tuple(step_ops(m, shape, Layout(), kernels=kernels)))
