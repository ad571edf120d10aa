"""Torch microbenchmark suites and their registry. Every module here imports torch lazily.

``REGISTRY`` maps a suite's name to a :class:`Suite`: the runner (``"module:function"``,
imported only when the suite runs), the CSV tables it writes, and its expected duration. A
runner is ``fn(ctx, **kwargs)`` taking a :class:`calibration.bench.common.BenchContext` and appending
rows to its tables (``calibration.store.CsvTable``; rows already there are skipped: resume). A *distributed* suite runs on
every rank of a process group instead: its runner is ``fn(ctx, comm)`` with a
:class:`calibration.bench.dist.Comm`, and ``calibration.run`` launches it (``torchrun``, or one
spawned process per GPU). To add a suite, add one entry here; ``calibration.run`` drives it,
shows its progress and reports its tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable


class SuiteSkipped(Exception):
    """Raised by a runner that cannot run here; the message says why (shown in the summary)."""


@dataclass(frozen=True)
class Suite:
    """One microbenchmark suite.

    ``tables``: CSV stems it writes (progress and summary count their rows). ``planner``
    (``"module:function"``, optional): sizes the grid for ``calibration.bench.plan`` (FLOPs,
    bytes and set-up bytes per point). ``eta_s``: seconds of the full grid where neither a planner
    nor the shipped H200 run's ``suite_seconds`` says (the distributed suites: an estimate for 8
    GPUs); ``eta_quick_s``: the ``--quick`` grid on CPU.
    """

    name: str
    runner: str
    tables: tuple[str, ...]
    planner: str | None = None
    eta_s: float | None = None
    eta_quick_s: float = 2.0
    distributed: bool = False
    description: str = ""
    kwargs: tuple[tuple[str, object], ...] = ()  # fixed keyword arguments of the runner

    def load(self) -> Callable:
        return _resolve(self.runner)

    def load_planner(self) -> Callable | None:
        return _resolve(self.planner) if self.planner else None


def _resolve(path: str) -> Callable:
    module, _, fn = path.partition(":")
    return getattr(import_module(module), fn)


_B = "calibration.bench."
_COLL_OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")

REGISTRY: dict[str, Suite] = {s.name: s for s in (
    Suite("gemm", _B + "gemm:run", ("gemm_bf16", "gemm_fp8", "gemm_fp8_rowwise"),
          description="dense GEMMs, bf16 and fp8 (per-tensor and rowwise scales)"),
    Suite("grouped_gemm", _B + "grouped_gemm:run", ("grouped_gemm_bf16", "grouped_mm_bf16"),
          description="expert GEMMs: padded bmm and ragged torch._grouped_mm"),
    Suite("attn_prefill", _B + "attention:run_prefill", ("attn_prefill_bf16",),
          description="causal prefill attention (SDPA)"),
    Suite("attn_decode", _B + "attention:run_decode", ("attn_decode_bf16",),
          description="GQA decode attention against a KV cache"),
    Suite("mla_decode", _B + "attention:run_mla_decode", ("mla_decode_bf16",), description="MLA absorbed decode"),
    Suite("elementwise", _B + "elementwise:run", ("elementwise_bf16", "hbm", "rmsnorm_bf16"),
          description="memory-bound kernels and HBM copy"),
    # eta_s of these two: the shipped profile's routing_and_tiles_run record (metadata.json)
    Suite("moe_routing", _B + "routing:run", ("moe_topk", "moe_scatter"), eta_s=7.3,
          description="router top-k and the expert-output scatter-add"),
    Suite("attn_decode_tiles", _B + "attention:run_decode_tiles", ("attn_decode_tiles",), eta_s=8.8,
          description="decode attention around key-tile boundaries"),
    Suite("attn_prefill_qview", _B + "attention:run_prefill", ("attn_prefill_qview_bf16",), eta_s=26.0,
          description="prefill with q as a transposed view (evidence, not read by the cost model)",
          kwargs=(("q_view", True),)),
    Suite("grouped_mm_routed", _B + "grouped_gemm:run_grouped_mm_routed", ("grouped_mm_routed_bf16",), eta_s=15.0,
          description="ragged grouped GEMM at routed group sizes (evidence)"),
    Suite("grouped_mm_fp8", _B + "grouped_gemm:run_grouped_mm_fp8", ("grouped_mm_fp8",), eta_s=20.0,
          description="FP8 ragged grouped GEMM (torch._scaled_grouped_mm, rowwise scales)"),
    Suite("grouped_mm_sparse", _B + "grouped_sparse:run", ("grouped_mm_sparse_bf16",),
          planner=_B + "grouped_sparse:plan", description="ragged grouped GEMM with few active experts"),
    Suite("mla_decode_impls", _B + "attention:run_mla_decode_impls", ("mla_decode_impls_bf16",),
          planner=_B + "attention:plan_mla_decode_impls", description="MLA decode implementations"),
    Suite("attn_decode_long", _B + "attention:run_decode_long", ("attn_decode_long_bf16",),
          planner=_B + "attention:plan_decode_long", description="long-context GQA decode"),
    Suite("mla_glue", _B + "mla_glue:run", ("mla_glue_bf16",), planner=_B + "mla_glue:plan",
          description="MLA glue kernels"),
    Suite("attn_prefill_ctx", _B + "attn_chunk:run", ("attn_prefill_ctx_bf16",), planner=_B + "attn_chunk:plan",
          description="prefill chunk after cached context (lower-right causal SDPA), fit/holdout split"),
    Suite("in_step_gap", _B + "in_step_gap:run", ("in_step_gap",), eta_s=10.0,
          description="dense layer chains in graph replay against their ops alone: the in-step gap per op"),
    Suite("collectives", _B + "collectives:measure", tuple(f"collective_{op}" for op in _COLL_OPS), eta_s=120.0,
          eta_quick_s=10.0, distributed=True,
          description="NCCL all_reduce/all_gather/reduce_scatter/all_to_all/send_recv, 4 KiB..1 GiB, groups 2..N"),
    Suite("moe_dispatch", _B + "moe_dispatch:measure", ("moe_dispatch",), eta_s=150.0, eta_quick_s=10.0,
          distributed=True,
          description="MoE dispatch/combine: all_to_all_single with uniform top-k splits (DeepSeek-V3, V2-Lite)"),
)}

#: Suite names in the order ``--suite all`` runs them.
SUITES: tuple[str, ...] = tuple(REGISTRY)
