"""Operators that only training runs: FP8 quantisation kernels and the loss.

``workloads.ops.step_ops`` describes the forward of a serving step: its FP8 GEMMs are timed on
already-quantised operands and it has no loss. Training adds, per micro-batch and stage:

* **FP8 casts** (DeepSeek-V3 §3.3, fine-grained quantisation; §3.5.2 on the transposes), for
  every FP8 GEMM of the stage (inputs ``M x K``, output ``M x N``):

  - forward: the BF16 input is quantised to FP8 with one FP32 scale per 1x128 tile (read 2 B,
    write 1 B + 4 B per 128 elements). The routed experts' input is quantised once per token
    before the FP8 dispatch, not once per copy (§3.3.3: "quantize the activation before MoE
    up-projections into FP8 and then apply dispatch components");
  - backward for inputs: the BF16 output gradient is quantised for the dgrad GEMM, and in the
    same pass written a second time in the transposed 128x1 tiling the wgrad GEMM needs
    (read 2 B, write 2 x (1 B + scales)); the down projection's gradient is quantised once per
    token before it is dispatched back (§3.3.3, "activation gradient before MoE
    down-projections");
  - backward for weights: the cached FP8 input is read out, transposed and re-quantised into
    128x1 tiles for the wgrad GEMM (§3.5.2 "Support for Transposed GEMM Operations": read 1 B +
    scales, write the same).

* **Loss**: softmax cross-entropy over the vocabulary for every LM head of the last stage (the
  main head and the MTP module's): the forward reads the BF16 logits once (max and log-sum-exp
  per row), the backward reads them again and writes the BF16 gradient.

All are memory-bound elementwise operators timed by the cost model like any other (the
profile's copy curve or the roofline).
"""

from __future__ import annotations

from workloads.accounting import ACT_BYTES, dtype_bytes
from workloads.op import GEMM, GROUPED_GEMM, Op
from workloads.ops_blocks import elementwise

__all__ = ["FP8_WRITE", "fp8_cast_ops", "loss_ops"]

#: bytes written per element by a 1x128-tile FP8 quantisation, in BF16-tensor units (2 B):
#: 1 B of FP8 plus a 4-byte scale per 128 elements
FP8_WRITE = (dtype_bytes("fp8") + dtype_bytes("fp32") / 128) / ACT_BYTES


def _gemm_elements(op: Op) -> tuple[float, float]:
    """(input elements M x K, output elements M x N) of one GEMM call."""
    s = op.shape
    rows = s["tokens_total"] if op.kind == GROUPED_GEMM else s["m"] * s.get("batch", 1)
    return float(rows * s["k"]), float(rows * s["n"])


def fp8_cast_ops(ops: list[Op], topk: int) -> tuple[list[Op], list[Op], list[Op]]:
    """(forward, backward-input, backward-weight) cast operators for the FP8 GEMMs in ``ops``;
    ``topk`` = routed experts per token (the expert GEMMs see ``topk`` copies of each token)."""
    fwd, b_in, b_w = [], [], []
    for op in ops:
        if op.kind not in (GEMM, GROUPED_GEMM) or op.dtype != "fp8":
            continue
        ins, outs = _gemm_elements(op)
        routed_in = op.name.endswith("experts_gate_up")  # quantised per token, before dispatch
        routed_out = op.name.endswith("experts_down")  # its gradient: per token, before the backward dispatch
        kw = {"layer": op.layer, "count": op.count, "flops_per_elem": 2.0}
        fwd.append(elementwise(f"{op.name}.fp8_quant", ins / topk if routed_in else ins,
                               reads=1.0, writes=FP8_WRITE, **kw))
        b_in.append(elementwise(f"{op.name}.grad_fp8_quant", outs / topk if routed_out else outs,
                                reads=1.0, writes=2 * FP8_WRITE, **kw))
        b_w.append(elementwise(f"{op.name}.act_fp8_transpose", ins, reads=FP8_WRITE, writes=FP8_WRITE, **kw))
    return fwd, b_in, b_w


def loss_ops(ops: list[Op]) -> tuple[list[Op], list[Op]]:
    """(forward, backward) cross-entropy operators for every LM head in ``ops``."""
    fwd, bwd = [], []
    for op in ops:
        if op.kind == GEMM and op.name.endswith("lm_head"):
            logits = float(op.shape["m"] * op.shape.get("batch", 1) * op.shape["n"])
            kw = {"layer": op.layer, "count": op.count, "flops_per_elem": 4.0}
            fwd.append(elementwise(f"{op.name}.cross_entropy", logits, reads=1.0, writes=0.0, **kw))
            bwd.append(elementwise(f"{op.name}.cross_entropy_grad", logits, reads=1.0, writes=1.0, **kw))
    return fwd, bwd
