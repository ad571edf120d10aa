"""Model catalog: architectures as data, parsed into frozen typed configs.

The architectures ship in ``workloads/data/models.yaml`` (one entry per model, each with the
URL and revision of the public config it was copied from). ``get_model(name)`` returns a
frozen :class:`ModelConfig`; names and aliases are case-insensitive. Anything derived from an
architecture (parameter counts, KV bytes, FLOPs) lives in ``workloads.accounting``; the
per-step operator lists in ``workloads.ops``.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from importlib import resources
from typing import Annotated, Literal, Union

from hardware.yaml_io import safe_load
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ModelSource",
    "MLAConfig",
    "GQAConfig",
    "MoEConfig",
    "ModelConfig",
    "UnknownModelError",
    "list_models",
    "get_model",
    "load_models_yaml",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSource(_Frozen):
    """Where the architecture numbers were copied from."""

    url: str
    revision: str = ""
    also: str = ""


class MLAConfig(_Frozen):
    """Multi-head latent attention (DeepSeek-V2/V3).

    The KV cache holds the ``kv_lora_rank`` latent plus the ``qk_rope_head_dim`` decoupled RoPE
    key per token and layer. ``q_lora_rank`` None means queries are projected directly.
    """

    kind: Literal["mla"] = "mla"
    num_heads: int = Field(gt=0)
    q_lora_rank: int | None = Field(default=None, gt=0)
    kv_lora_rank: int = Field(gt=0)
    qk_nope_head_dim: int = Field(gt=0)
    qk_rope_head_dim: int = Field(gt=0)
    v_head_dim: int = Field(gt=0)

    @property
    def qk_head_dim(self) -> int:
        """Per-head query/key width in the non-absorbed form (nope + rope)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def num_kv_heads(self) -> int:
        """Non-absorbed MLA behaves like MHA after decompression: one KV head per query head."""
        return self.num_heads

    @property
    def absorbed_qk_head_dim(self) -> int:
        """Absorbed (MQA-like) query/key width: latent + rope (576 for DeepSeek-V3)."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def absorbed_v_head_dim(self) -> int:
        """Absorbed value width: the latent itself (512 for DeepSeek-V3)."""
        return self.kv_lora_rank


class GQAConfig(_Frozen):
    """Grouped-query attention (MHA when num_kv_heads == num_heads)."""

    kind: Literal["gqa"] = "gqa"
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    qkv_bias: bool = False

    @model_validator(mode="after")
    def _kv_divides_q(self) -> "GQAConfig":
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_kv_heads={self.num_kv_heads} does not divide num_heads={self.num_heads}"
            )
        return self

    @property
    def qk_head_dim(self) -> int:
        return self.head_dim

    @property
    def v_head_dim(self) -> int:
        return self.head_dim


AttentionConfig = Annotated[Union[MLAConfig, GQAConfig], Field(discriminator="kind")]


class MoEConfig(_Frozen):
    """DeepSeekMoE-style FFN: shared experts + top-k routed experts (SwiGLU experts).

    ``n_group``/``topk_group`` describe node/device-limited routing: experts are split into
    ``n_group`` groups and each token picks experts from at most ``topk_group`` groups.
    """

    num_routed_experts: int = Field(gt=0)
    num_shared_experts: int = Field(ge=0)
    top_k: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    n_group: int = Field(default=1, gt=0)
    topk_group: int = Field(default=1, gt=0)
    scoring: Literal["softmax", "sigmoid"] = "softmax"
    router_bias: bool = False

    @model_validator(mode="after")
    def _check(self) -> "MoEConfig":
        if self.top_k > self.num_routed_experts:
            raise ValueError(f"top_k={self.top_k} exceeds num_routed_experts={self.num_routed_experts}")
        if self.num_routed_experts % self.n_group:
            raise ValueError(f"n_group={self.n_group} does not divide {self.num_routed_experts} routed experts")
        if self.topk_group > self.n_group:
            raise ValueError(f"topk_group={self.topk_group} exceeds n_group={self.n_group}")
        return self


class ModelConfig(_Frozen):
    """One decoder-only transformer architecture (RMSNorm, RoPE, SwiGLU FFNs).

    Layers ``0 .. num_dense_layers-1`` have a dense FFN of width ``dense_intermediate_size``;
    the remaining ``num_layers - num_dense_layers`` layers are MoE layers (dense models set
    ``num_dense_layers == num_layers`` and ``moe: null``). ``num_mtp_modules`` counts
    DeepSeek-V3-style multi-token-prediction modules (one extra block each), kept outside
    ``num_layers``.
    """

    name: str
    aliases: tuple[str, ...] = ()
    family: str = ""
    source: ModelSource
    vocab_size: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_dense_layers: int = Field(ge=0)
    dense_intermediate_size: int = Field(ge=0)
    tie_word_embeddings: bool = False
    num_mtp_modules: int = Field(default=0, ge=0)
    attention: AttentionConfig
    moe: MoEConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.num_dense_layers > self.num_layers:
            raise ValueError(
                f"{self.name}: num_dense_layers={self.num_dense_layers} exceeds num_layers={self.num_layers}"
            )
        if self.moe is None and self.num_dense_layers != self.num_layers:
            raise ValueError(f"{self.name}: a dense model (moe: null) needs num_dense_layers == num_layers")
        if self.moe is not None and self.num_dense_layers == self.num_layers:
            raise ValueError(f"{self.name}: moe is set but every layer is dense")
        if self.num_dense_layers > 0 and self.dense_intermediate_size == 0:
            raise ValueError(f"{self.name}: dense layers need dense_intermediate_size > 0")
        return self

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.num_dense_layers

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def is_mla(self) -> bool:
        return self.attention.kind == "mla"

    @property
    def num_heads(self) -> int:
        return self.attention.num_heads


class UnknownModelError(LookupError):
    """Raised by ``get_model`` for a name that is neither a model nor an alias."""

    def __init__(self, name: str, known: list[str], candidates: list[str] | None = None):
        hint = difflib.get_close_matches(name.strip().lower(), candidates or known, n=1, cutoff=0.5)
        msg = f"unknown model {name!r}"
        if hint:
            msg += f" (did you mean {hint[0]!r}?)"
        msg += f"; known models: {', '.join(known)} (aliases accepted, case-insensitive)"
        super().__init__(msg)
        self.name = name
        self.known = tuple(known)


def load_models_yaml(text: str) -> tuple[ModelConfig, ...]:
    """Parse a models YAML document (``{models: [...]}``) into ModelConfigs."""
    doc = safe_load(text) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise ValueError("models YAML must be a mapping with a 'models' list")
    return tuple(ModelConfig.model_validate(entry) for entry in doc["models"])


@lru_cache(maxsize=1)
def _catalog() -> tuple[tuple[ModelConfig, ...], tuple[tuple[str, str], ...]]:
    # Cached immutable data (frozen models in tuples), not mutable global state.
    text = resources.files("workloads").joinpath("data").joinpath("models.yaml").read_text(encoding="utf-8")
    models = load_models_yaml(text)
    index: dict[str, str] = {}
    for m in models:
        for key in (m.name, *m.aliases):
            k = key.lower()
            if k in index:
                raise ValueError(f"duplicate model name or alias {key!r} in models.yaml")
            index[k] = m.name
    return models, tuple(index.items())


def list_models() -> list[str]:
    """Canonical model names in catalog order (aliases not included)."""
    return [m.name for m in _catalog()[0]]


def get_model(name: str | ModelConfig) -> ModelConfig:
    """The model called ``name`` (canonical name or alias, case-insensitive).

    A ModelConfig passes through unchanged, so APIs can accept either.
    """
    if isinstance(name, ModelConfig):
        return name
    models, index_items = _catalog()
    index = dict(index_items)
    canonical = index.get(str(name).strip().lower())
    if canonical is None:
        raise UnknownModelError(str(name), [m.name for m in models], sorted(index))
    return next(m for m in models if m.name == canonical)
