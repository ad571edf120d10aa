"""The operator record: one unit of work a step performs on one device.

``step_ops`` (in ``workloads.ops``) returns lists of these; it is the single answer to
"what work does this step do". The accounting in ``workloads.accounting`` and the cost model
in ``simulator`` both read these records. Fields are in SI units (FLOPs, bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

# Operator kinds. Compute kinds are timed from calibration profiles; collective kinds from
# the fabric's collective models.
GEMM = "gemm"  # shape: m, n, k
GROUPED_GEMM = "grouped_gemm"  # shape: groups, m_per_group (busiest group), n, k, tokens_total
ATTN_PREFILL = "attn_prefill"  # shape: batch, seq, heads_q, heads_kv, head_dim_qk, head_dim_v, causal
ATTN_DECODE = "attn_decode"  # shape: batch, context, heads_q, heads_kv, head_dim_qk, head_dim_v
MLA_DECODE = "mla_decode"  # shape: batch, context, heads_q, head_dim_qk(576), head_dim_v(512)
ELEMENTWISE = "elementwise"  # memory-bound: norms, activations, rope, copies; shape: elements
EMBEDDING = "embedding"  # shape: tokens, hidden
COLLECTIVE = "collective"  # collective: all_reduce / all_gather / reduce_scatter / all_to_all / dispatch / combine / send_recv

COMPUTE_KINDS = (GEMM, GROUPED_GEMM, ATTN_PREFILL, ATTN_DECODE, MLA_DECODE, ELEMENTWISE, EMBEDDING)


@dataclass(frozen=True, slots=True)
class Op:
    """One operator on one device.

    ``count`` repeats the op (e.g. identical layers) so lists stay short; totals multiply by it.
    For collectives ``collective`` names the algorithm family, ``group_size`` the number of
    ranks and ``bytes_per_rank`` the message each rank contributes.
    """

    name: str
    kind: str
    shape: Mapping[str, int | float | bool]
    flops: float
    bytes_read: float
    bytes_written: float
    dtype: str = "bf16"
    count: int = 1
    layer: str = ""  # "dense", "moe", "head", "embed", "mtp"
    stream: str = "compute"  # "compute" or "comm"
    collective: str = ""
    group_size: int = 1
    bytes_per_rank: float = 0.0
    meta: Mapping[str, object] = field(default_factory=dict)

    @property
    def bytes_moved(self) -> float:
        return self.bytes_read + self.bytes_written

    @property
    def total_flops(self) -> float:
        return self.flops * self.count
