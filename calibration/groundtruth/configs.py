"""Shapes of the ground-truth models, taken from the workloads model catalog (no torch).

A ground-truth row names its model (``model`` column) and layer count; :func:`model_config`
turns that back into the ``workloads`` ``ModelConfig`` the row ran, so the predictor costs the
same architecture. The ``tiny-*`` models are synthetic, for CPU tests only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from workloads.models import GQAConfig, MLAConfig, ModelConfig, ModelSource, get_model
from workloads.models import MoEConfig as CatalogMoE


@dataclass(frozen=True)
class DenseConfig:
    """One rank's share of a dense decoder (heads and FFN already divided by ``tp``)."""

    name: str
    layers: int
    hidden: int
    heads_q: int
    heads_kv: int
    head_dim: int
    ffn: int
    vocab: int
    tp: int = 1


@dataclass(frozen=True)
class MoEConfig:
    """One EP rank's share of a DeepSeek-style MoE layer (``ep=1``: every expert on one GPU)."""

    name: str
    hidden: int
    moe_inter: int
    routed_experts: int
    top_k: int
    ep: int
    shared_experts: int = 1
    scoring: str = "sigmoid"

    @property
    def local_experts(self) -> int:
        return self.routed_experts // self.ep


_SYNTH = ModelSource(url="synthetic (calibration.groundtruth CPU tests)")
_TINY_GQA = GQAConfig(num_heads=4, num_kv_heads=2, head_dim=16)
TINY_MODELS = {m.name: m for m in (
    ModelConfig(name="tiny-dense", source=_SYNTH, vocab_size=256, hidden_size=64, num_layers=2,
                num_dense_layers=2, dense_intermediate_size=128, attention=_TINY_GQA),
    ModelConfig(name="tiny-moe", source=_SYNTH, vocab_size=256, hidden_size=64, num_layers=2,
                num_dense_layers=1, dense_intermediate_size=128, attention=_TINY_GQA,
                moe=CatalogMoE(num_routed_experts=16, num_shared_experts=1, top_k=4, intermediate_size=32,
                               scoring="sigmoid")),
    ModelConfig(name="tiny-mla", source=_SYNTH, vocab_size=256, hidden_size=64, num_layers=2,
                num_dense_layers=1, dense_intermediate_size=128,
                attention=MLAConfig(num_heads=4, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
                                    v_head_dim=16),
                moe=CatalogMoE(num_routed_experts=16, num_shared_experts=2, top_k=4, intermediate_size=32)),
)}


@lru_cache(maxsize=64)
def model_config(name: str, layers: int | None = None) -> ModelConfig:
    """The catalog (or tiny) model ``name`` with ``layers`` layers (first dense layers kept,
    at least one MoE layer left in an MoE model)."""
    m = TINY_MODELS.get(name) or get_model(name)
    if layers is None or layers == m.num_layers:
        return m
    dense = m.num_layers if not m.is_moe else min(m.num_dense_layers, layers - 1)
    return m.model_copy(update={"num_layers": layers, "num_dense_layers": dense})


def dense_config(name: str, tp: int = 1) -> DenseConfig:
    """One tensor-parallel rank of a dense GQA catalog model (heads, FFN and vocab / ``tp``)."""
    m = model_config(name)
    a = m.attention
    assert isinstance(a, GQAConfig) and not m.is_moe, f"{name} is not a dense GQA model"
    return DenseConfig(m.name, m.num_layers, m.hidden_size, a.num_heads // tp, a.num_kv_heads // tp, a.head_dim,
                       m.dense_intermediate_size // tp, m.vocab_size // tp, tp=tp)


def moe_config(name: str, ep: int = 1) -> MoEConfig:
    """One expert-parallel rank of an MoE catalog model's MoE layer."""
    m = model_config(name)
    e = m.moe
    assert e is not None, f"{name} has no MoE layers"
    return MoEConfig(m.name, m.hidden_size, e.intermediate_size, e.num_routed_experts, e.top_k, ep,
                     shared_experts=e.num_shared_experts, scoring=e.scoring)


LLAMA_8B = dense_config("llama-3.1-8b")
LLAMA_70B_TP4 = dense_config("llama-3.1-70b", tp=4)
DSV3_MOE_EP4 = moe_config("deepseek-v3", ep=4)
TINY_DENSE = dense_config("tiny-dense")
TINY_MOE = moe_config("tiny-moe", ep=4)
