"""What each ground-truth row ran, as ``workloads`` operators (no torch).

:func:`row_ops` maps one row of a ground-truth table to the operator list of the same step
(``workloads.ops.step_ops`` with the row's model, batch and parallelism), so the predictor
(``clustersim.validation``) costs exactly what was measured and the run plan
(``calibration.groundtruth.plan``) can size each point before measuring it. Steps measured on
one GPU leave out their collectives; callers drop ops on the ``comm`` stream.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from calibration.groundtruth.configs import model_config
from workloads.layout import Layout
from workloads.op import GROUPED_GEMM, OpRole
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
    "gt_dense_chunk.csv": "dense chunk prefill",
    "gt_moe_fp8.csv": "moe fp8",
    "gt_dense_prefill_fp8.csv": "dense prefill fp8",
    "gt_dense_decode_fp8.csv": "dense decode fp8",
    "gt_dense_prefill_oos.csv": "dense prefill oos",
    "gt_dense_decode_oos.csv": "dense decode oos",
    "gt_moe_oos.csv": "moe oos",
    "gt_mla_decode_oos.csv": "mla decode oos",
    "gt_mla_prefill_oos.csv": "mla prefill oos",
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


def _has(row: Mapping, col: str) -> bool:
    v = row.get(col)
    return v is not None and v == v  # present and not NaN


def with_routing(ops, pairs: float, touched: float) -> list:
    """``ops`` of one MoE layer with the routing one measured step drew instead of its expectation:
    ``pairs`` (token, expert) pairs landing on ``touched`` of the rank's experts. The routed
    experts' ops (``OpRole.ROUTED_EXPERT``) scale with the pairs; the grouped GEMMs also take
    the touched experts as their active groups. Every other op is unchanged."""
    out = []
    for o in ops:
        if o.kind == GROUPED_GEMM:
            s = dict(o.shape)
            f = pairs / max(float(s["tokens_total"]), 1e-12)
            s.update(tokens_total=int(round(pairs)), active_groups=float(touched))
            per = o.meta.get("weight_bytes", 0.0) / max(float(s["groups"]), 1.0)
            w_read = per * touched
            act_read = o.bytes_read - float(o.meta.get("weight_bytes_read", 0.0))
            o = replace(o, shape=s, flops=o.flops * f, bytes_read=w_read + act_read * f,
                        bytes_written=o.bytes_written * f,
                        meta={**o.meta, "active_groups": float(touched), "weight_bytes_read": w_read,
                              "routing": "recorded"})
        elif o.role is OpRole.ROUTED_EXPERT:
            f = pairs / max(float(next(x.shape["tokens_total"] for x in ops if x.kind == GROUPED_GEMM)), 1e-12)
            o = replace(o, shape={"elements": int(round(o.shape["elements"] * f))}, flops=o.flops * f,
                        bytes_read=o.bytes_read * f, bytes_written=o.bytes_written * f)
        out.append(o)
    return out


def row_ops(table: str, row: Mapping, kernels: str = "eager", recorded_routing: bool = True) -> RowWork:
    """The operators of the step that ``row`` of ground-truth table ``table`` measured.

    ``kernels="eager"``: the ground truth is plain torch, so its glue kernels are the eager set.
    ``recorded_routing``: an MoE layer row that records its routing draw (``received_pairs``,
    ``experts_touched``: the wide table) is costed at that draw, as its batch shape is costed
    at the measured one; False costs the expectation under uniform routing (what an estimate
    assumes). The whole-model MLA rows draw anew per layer and are always costed at the
    expectation.
    """
    family = FAMILIES[table]
    layers = int(row["layers"]) if "layers" in row else None
    m = model_config(str(row["model"]), layers)
    if family.startswith("dense"):
        b, tp = _int(row, "batch"), _int(row, "tp")
        fp8 = family.endswith(" fp8")
        family_kind = family.removesuffix(" fp8").removesuffix(" oos")
        if family_kind == "dense prefill":
            shape, point = BatchShape.prefill(b, _int(row, "seq")), f"B={b} S={row['seq']}"
        elif family_kind == "dense chunk prefill":  # n new tokens per sequence after C cached ones
            n, c = _int(row, "new"), _int(row, "context")
            shape, point = BatchShape.prefill(b, n, context_tokens=c), f"B={b} n={n} C={c}"
        else:
            shape, point = BatchShape.decode(b, _int(row, "context")), f"B={b} C={row['context']}"
        suffix = {"dense prefill": "prefill", "dense decode": "decode", "dense decode long": "decode long",
                  "dense chunk prefill": "chunk prefill"}[family_kind] + (" fp8" if fp8 else "")
        ops = step_ops(m, shape, Layout(tp=tp), dtype="fp8" if fp8 else "bf16", kernels=kernels)
        return RowWork(family, f"{m.name} tp{tp} {suffix}", point, tuple(ops))
    if family in ("moe layer", "moe small", "moe fp8", "moe oos"):
        ep, t = _int(row, "ep"), _int(row, "tokens_per_rank")
        ops = moe_layer_ops(step_ops(m, BatchShape.prefill(ep, t), Layout(dp=ep, ep=ep, moe_tp=1),
                                     dtype="fp8" if family == "moe fp8" else "bf16", kernels=kernels))
        if recorded_routing and _has(row, "experts_touched") and _has(row, "received_pairs"):
            ops = with_routing(ops, float(row["received_pairs"]), float(row["experts_touched"]))
        return RowWork(family, f"{m.name} ep{ep} {family}", f"T={t}", tuple(ops))
    b = _int(row, "batch")
    if family in ("mla decode", "mla decode oos"):
        shape, point = BatchShape.decode(b, _int(row, "context")), f"B={b} C={row['context']}"
    else:
        shape, point = BatchShape.prefill(b, _int(row, "seq")), f"B={b} S={row['seq']}"
    return RowWork(family, f"{m.name} L{m.num_layers} {family}", point,
                   tuple(step_ops(m, shape, Layout(), kernels=kernels)))
