"""Kernel sets: which implementation runs each operator of a step (``pool.kernels``, ``--kernels``).

The same layer costs several-fold differently depending on the kernels that run it (issue 14):
plain PyTorch runs MLA decode attention through SDPA's memory-efficient kernel with the heads as
query rows of one latent head, a serving engine through FlashMLA; torch's SDPA decode walks each
(sequence, KV head)'s keys in one thread block, a serving engine's decode kernel splits the keys
(flash-decoding). A :class:`KernelSet` names, per operator family, the implementation an estimate
assumes; ``workloads.ops_blocks`` writes it into each op's ``meta["impl"]`` and the cost model
(``simulator.costmodel``, ``calibration.profile``) times the op as that implementation.

Two sets:

* ``eager`` - plain PyTorch, what ``calibration.groundtruth`` measures and the profile's
  microbenchmarks time: unfused glue (separate norm, residual add, rotate-half RoPE on q and k,
  ``silu(a) * b``, K and V copies, ``topk(sigmoid)``, ``index_add_``; MLA's split/concat/copy
  kernels), SDPA decode without a key split, MLA decode by SDPA (memory-efficient, 576/512),
  ``torch._grouped_mm`` experts, ``torch._scaled_mm`` FP8 GEMMs;
* ``fused`` - a serving engine (SGLang / vLLM with DeepSeek's kernels): fused glue, split-KV decode
  attention (flash-decoding), FlashMLA, a fused MoE grouped GEMM, DeepGEMM FP8 GEMMs.

Where the implementation of a set has no measurement of its own, the op is timed by the named
stand-in and says so (``KernelSet.timing``): the fused MoE grouped GEMM by the measured ragged
``torch._grouped_mm`` (both read only the touched experts' weights; an FP8 MoE by DeepGEMM's own
measured masked kernel where the profile has it), DeepGEMM's dense GEMMs by the measured
``torch._scaled_mm`` table; FlashMLA is measured as itself (its published figures where a profile
lacks the table).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

#: the implementations an op's ``meta["impl"]`` may name, per operator family
ATTN_DECODE_IMPLS = ("sdpa", "split_kv")
MLA_DECODE_IMPLS = ("sdpa", "bmm", "flashmla")
GROUPED_GEMM_IMPLS = ("grouped_mm", "fused_moe")
GEMM_FP8_IMPLS = ("scaled_mm", "scaled_mm_rowwise", "deepgemm")
#: the FP8 GEMM implementation a profile times from its own table (``gemm_fp8_rowwise``)
ROWWISE_FP8_GEMM = "scaled_mm_rowwise"
#: the fused set's FP8 GEMMs (timed by a profile's ``deepgemm_fp8`` table where it answers)
DEEPGEMM = "deepgemm"
#: the fused set's MLA decode (timed by a profile's ``mla_decode_flashmla_bf16`` table where it has one)
FLASHMLA = "flashmla"


@dataclass(frozen=True)
class KernelSet:
    """The implementation of each operator family one step assumes (see the module docstring).

    ``glue``: "eager" (each torch op its own kernel) or "fused" (a serving engine's fused glue,
    ``workloads.ops_blocks``). ``attn_decode``: GQA/MHA decode attention, "sdpa" (one thread
    block per (sequence, KV head) walking all keys) or "split_kv" (keys split over thread blocks
    until the GPU is full, partial results combined). ``mla_decode``: absorbed MLA decode,
    "sdpa" (memory-efficient SDPA, heads as query rows of one latent head), "bmm" (two batched
    GEMMs and a float32 softmax) or "flashmla". ``grouped_gemm``: routed experts.
    ``gemm_fp8``: FP8 GEMMs. ``timing``: which measurement or figure times each implementation
    that is not measured as itself.
    """

    name: str
    description: str
    glue: str
    attn_decode: str
    mla_decode: str
    grouped_gemm: str
    gemm_fp8: str
    timing: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for field, valid in (("attn_decode", ATTN_DECODE_IMPLS), ("mla_decode", MLA_DECODE_IMPLS),
                             ("grouped_gemm", GROUPED_GEMM_IMPLS), ("gemm_fp8", GEMM_FP8_IMPLS),
                             ("glue", ("eager", "fused"))):
            if getattr(self, field) not in valid:
                raise ValueError(f"kernel set {self.name}: {field} {getattr(self, field)!r} unknown "
                                 f"(valid: {', '.join(valid)})")

    def describe(self) -> dict:
        """Plain dict for estimate outputs and summaries (every estimate names its set)."""
        d = asdict(self)
        d["timing"] = dict(self.timing)
        return d


_FUSED_TIMING = (
    ("attn_decode", "attn_decode_bf16 read as the split it runs (batch x splits, context / splits) plus the combine"),
    ("mla_decode", ("FlashMLA as measured (mla_decode_flashmla_bf16, 2 query tokens per sequence read as 2 "
                    "sequences); its published figures (simulator/data/published_kernels.yaml) where the profile "
                    "lacks that table")),
    ("grouped_gemm", ("BF16: measured torch._grouped_mm at the active experts (a fused MoE kernel too reads only "
                      "the touched experts' weights); FP8: DeepGEMM's masked grouped GEMM as measured "
                      "(deepgemm_fp8, calibration.deepgemm_lookup), else the fitted grouped roofline")),
    ("gemm_fp8", ("measured torch._scaled_mm table (gemm_fp8) standing in for DeepGEMM (transferred to H800: "
                  "a median 4.4% from DeepGEMM's published table; our H200 measurement of DeepGEMM 2.6.1, "
                  "deepgemm_fp8, transferred to H800 misses that table by -27% to +31%, so it is not used for "
                  "dense GEMMs)")),
)
_EAGER_TIMING = (
    ("attn_decode", "attn_decode_bf16 and attn_decode_long_bf16 (torch SDPA, one block per (sequence, KV head))"),
    ("mla_decode", "mla_decode_impls_bf16 / mla_decode_bf16, impl sdpa (memory-efficient attention)"),
    ("grouped_gemm", ("grouped_mm_sparse_bf16 up to 16 tokens per touched expert, else grouped_mm_bf16 over the "
                      "touched experts")),
    ("gemm_fp8", ("measured torch._scaled_mm with rowwise scales, on inputs quantised per row by their own kernels "
                  "(gemm_fp8_rowwise; the per-tensor gemm_fp8 where a profile lacks it)")),
)

KERNEL_SETS: dict[str, KernelSet] = {
    "fused": KernelSet(
        name="fused",
        description="a serving engine's kernels (fused glue, split-KV decode, FlashMLA, fused MoE, DeepGEMM)",
        glue="fused", attn_decode="split_kv", mla_decode="flashmla", grouped_gemm="fused_moe", gemm_fp8="deepgemm",
        timing=_FUSED_TIMING),
    "eager": KernelSet(
        name="eager",
        description="plain PyTorch ops (what calibration.groundtruth measures)",
        glue="eager", attn_decode="sdpa", mla_decode="sdpa", grouped_gemm="grouped_mm", gemm_fp8="scaled_mm_rowwise",
        timing=_EAGER_TIMING),
}


#: the YAML choices of ``pool.kernels``: the keys of ``KERNEL_SETS`` (a new set is one entry above)
KernelSetName = Literal[tuple(KERNEL_SETS)]  # type: ignore[valid-type]


def kernel_set(name: str) -> KernelSet:
    """The kernel set called ``name``; ValueError listing the valid names otherwise."""
    try:
        return KERNEL_SETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"kernels {name!r} unknown (valid: {', '.join(KERNEL_SETS)})") from None
