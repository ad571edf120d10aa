"""The operator record: one unit of work a step performs on one device.

``step_ops`` (in ``workloads.ops``) returns lists of these; it is the single answer to
"what work does this step do". The accounting in ``workloads.accounting`` and the cost model
in ``simulator`` both read these records. Fields are in SI units (FLOPs, bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Mapping


class OpKind(StrEnum):
    """What kind of work an op is. Compute kinds are timed from calibration profiles (or a
    roofline); ``COLLECTIVE`` from the fabric's collective models. A member is its string
    (``OpKind.GEMM == "gemm"``), so tables and reports keyed by the name read it unchanged."""

    GEMM = "gemm"  # shape: m, n, k
    GROUPED_GEMM = "grouped_gemm"  # shape: groups, m_per_group (busiest group), n, k, tokens_total
    ATTN_PREFILL = "attn_prefill"  # shape: batch, seq, heads_q, heads_kv, head_dim_qk, head_dim_v, causal
    ATTN_DECODE = "attn_decode"  # shape: batch, context, heads_q, heads_kv, head_dim_qk, head_dim_v
    MLA_DECODE = "mla_decode"  # shape: batch, context, heads_q, head_dim_qk(576), head_dim_v(512)
    ELEMENTWISE = "elementwise"  # memory-bound: norms, activations, rope, copies; shape: elements
    EMBEDDING = "embedding"  # shape: tokens, hidden
    COLLECTIVE = "collective"  # all_reduce / all_gather / reduce_scatter / all_to_all / dispatch / combine / send_recv


class OpRole(StrEnum):
    """Which work of a layer an op is, where that decides how it is placed or scaled (rather
    than its name)."""

    COMMON = "common"  # every op not named below
    #: the routed experts' compute (permute, grouped GEMMs, activation, unpermute): partitioned
    #: over expert parallelism, so it stays per package where replicated work runs per die
    ROUTED_EXPERT = "routed_expert"


# the members under the names the op builders and the cost model import
GEMM = OpKind.GEMM
GROUPED_GEMM = OpKind.GROUPED_GEMM
ATTN_PREFILL = OpKind.ATTN_PREFILL
ATTN_DECODE = OpKind.ATTN_DECODE
MLA_DECODE = OpKind.MLA_DECODE
ELEMENTWISE = OpKind.ELEMENTWISE
EMBEDDING = OpKind.EMBEDDING
COLLECTIVE = OpKind.COLLECTIVE

COMPUTE_KINDS = tuple(k for k in OpKind if k is not OpKind.COLLECTIVE)


#: ``Op``'s ``meta`` when none is given (a fresh dict each time, as ``default_factory=dict``)
_NO_META: Mapping[str, object] = MappingProxyType({})
_set = object.__setattr__


@dataclass(frozen=True, slots=True, init=False)
class Op:
    """One operator on one device.

    ``count`` repeats the op (e.g. identical layers) so lists stay short; totals multiply by it.
    For collectives ``collective`` names the algorithm family, ``group_size`` the number of
    ranks and ``bytes_per_rank`` the message each rank contributes. ``kind`` is an
    :class:`OpKind` (a kind's string is accepted and converted; an unknown one raises).
    """

    name: str
    kind: OpKind
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
    role: OpRole = OpRole.COMMON
    #: not part of the op's value: what one consumer last derived from this op, as
    #: ``(consumer, value)`` (``simulator.costmodel.CostModel.op_cost`` keeps the op's cost here,
    #: so an op list built once and costed again is not timed twice). Dies with the op.
    derived: tuple | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __init__(self, name: str, kind: OpKind | str, shape: Mapping[str, int | float | bool], flops: float,
                 bytes_read: float, bytes_written: float, dtype: str = "bf16", count: int = 1, layer: str = "",
                 stream: str = "compute", collective: str = "", group_size: int = 1, bytes_per_rank: float = 0.0,
                 meta: Mapping[str, object] = _NO_META, role: OpRole = OpRole.COMMON) -> None:
        """The dataclass's own ``__init__`` (the same parameters and defaults, which
        ``tests/test_op_init.py`` checks against the fields), written out: a step-cost miss
        builds tens of ops, and the generated one spends a third more on each."""
        _set(self, "name", name)
        _set(self, "kind", kind if type(kind) is OpKind else OpKind(kind))
        _set(self, "shape", shape)
        _set(self, "flops", flops)
        _set(self, "bytes_read", bytes_read)
        _set(self, "bytes_written", bytes_written)
        _set(self, "dtype", dtype)
        _set(self, "count", count)
        _set(self, "layer", layer)
        _set(self, "stream", stream)
        _set(self, "collective", collective)
        _set(self, "group_size", group_size)
        _set(self, "bytes_per_rank", bytes_per_rank)
        _set(self, "meta", {} if meta is _NO_META else meta)
        _set(self, "role", role)
        _set(self, "derived", None)

    @property
    def bytes_moved(self) -> float:
        return self.bytes_read + self.bytes_written

    @property
    def total_flops(self) -> float:
        return self.flops * self.count
