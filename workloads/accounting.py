"""Exact accounting from an architecture: parameters, weight bytes, KV bytes, FLOPs per token.

Everything here is a closed form over a :class:`~workloads.models.ModelConfig`; no fitted or
published numbers. ``workloads.ops`` builds per-step operator lists from the same shapes and
imports the shared helpers below (attention pair counts, FLOPs per pair, the activation dtype;
dtype sizes come from ``hardware.dtypes``, the one table), and the tests check that both agree.

Conventions (see workloads/README.md for the derivations):

* A GEMM of an ``m x k`` input with a ``k x n`` weight costs ``2*m*n*k`` FLOPs.
* *Activated* parameters are those a token's forward pass multiplies with or reads, **excluding
  the input-embedding table** (a row lookup, not a matmul) and including the LM head. For MoE
  layers that is the router, the shared experts and ``top_k`` routed experts.
* Training FLOPs per token = 3 x forward (forward + backward for activations and weights):
  ``6 * activated_matmul_params + 3 * attention_forward_flops_per_token``.
* Causal attention: query ``i`` (0-based) of a sequence attends ``i + 1`` keys, so a sequence
  of ``S`` new tokens over ``C`` cached tokens has ``S*C + S*(S+1)/2`` (query, key) pairs.
  Each pair costs ``2*d_qk`` (QK^T) + ``2*d_v`` (PV) FLOPs per head. Softmax/scale are
  elementwise and not counted.
* MTP modules (DeepSeek-V3) are reported separately and left out of the main figures unless
  ``include_mtp=True``.
"""

from __future__ import annotations


from hardware.dtypes import DTYPE_BYTES, dtype_bytes
from workloads.models import GQAConfig, MLAConfig, ModelConfig, get_model
from workloads.pairs import attention_pairs, causal_pairs_sum

__all__ = [
    "DTYPE_BYTES",
    "dtype_bytes",
    "ACTIVATION_DTYPE",
    "ACT_BYTES",
    "param_dtype",
    "attention_params",
    "dense_ffn_params",
    "moe_params",
    "layer_params",
    "mtp_params",
    "param_breakdown",
    "total_params",
    "checkpoint_params",
    "activated_params",
    "activated_matmul_params",
    "weight_bytes_breakdown",
    "weight_bytes",
    "gemm_weight_bytes",
    "kv_cache_bytes_per_token_per_layer",
    "kv_cache_bytes_per_token",
    "attention_pairs",
    "attention_flops_per_pair",
    "attention_forward_flops_per_token",
    "training_flops_breakdown",
    "training_flops_per_token",
    "forward_flops_per_token",
    "accounting_table",
]

#: Activations (GEMM outputs, norms, attention inputs and outputs, residuals, tensor-parallel
#: collectives) stay in this dtype whatever the weights are; a GEMM reads its input in the weight
#: dtype when that is narrower (W8A8: DeepSeek-V3's FP8 and CloudMatrix-Infer's INT8 serving).
ACTIVATION_DTYPE = "bf16"
ACT_BYTES = dtype_bytes(ACTIVATION_DTYPE)

#: Parameter groups kept in BF16 when the GEMM weights are quantized below 16 bits
#: (as in DeepSeek-V3's FP8 checkpoint: embedding, LM head, router gate and norms stay BF16).
HIGH_PRECISION_GROUPS = ("embedding", "lm_head", "router", "norm", "bias")

# FlashMLA FP8 KV layout: latent in FP8, one FP32 scale per 128 latent values, RoPE in BF16.
_FLASHMLA_FP8_TILE = 128


def param_dtype(group: str, dtype: str) -> str:
    """Storage dtype of a parameter group when GEMM weights are stored in ``dtype``.

    Groups in HIGH_PRECISION_GROUPS stay BF16 when ``dtype`` is narrower than 16 bits.
    """
    if group in HIGH_PRECISION_GROUPS and dtype_bytes(dtype) < 2:
        return "bf16"
    return dtype.lower()


def _m(model: ModelConfig | str) -> ModelConfig:
    return get_model(model)


# --------------------------------------------------------------------------- parameters


def attention_params(model: ModelConfig | str) -> dict[str, int]:
    """Parameters of one attention block, by tensor (norms inside MLA included).

    MLA: ``wq_a``/``q_a_norm``/``wq_b`` (or ``wq`` without q-LoRA), ``wkv_a`` (down-projection to
    latent + rope key), ``kv_a_norm``, ``wkv_b`` (latent -> per-head nope key and value),
    ``wo``. GQA: ``wq``, ``wk``, ``wv``, ``wo`` and ``qkv_bias``.
    """
    m = _m(model)
    h, a = m.hidden_size, m.attention
    if isinstance(a, MLAConfig):
        out: dict[str, int] = {}
        if a.q_lora_rank:
            out["wq_a"] = h * a.q_lora_rank
            out["q_a_norm"] = a.q_lora_rank
            out["wq_b"] = a.q_lora_rank * a.num_heads * a.qk_head_dim
        else:
            out["wq"] = h * a.num_heads * a.qk_head_dim
        out["wkv_a"] = h * (a.kv_lora_rank + a.qk_rope_head_dim)
        out["kv_a_norm"] = a.kv_lora_rank
        out["wkv_b"] = a.kv_lora_rank * a.num_heads * (a.qk_nope_head_dim + a.v_head_dim)
        out["wo"] = a.num_heads * a.v_head_dim * h
        return out
    assert isinstance(a, GQAConfig)
    q, kv = a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim
    return {
        "wq": h * q,
        "wk": h * kv,
        "wv": h * kv,
        "wo": q * h,
        "qkv_bias": (q + 2 * kv) if a.qkv_bias else 0,
    }


def dense_ffn_params(model: ModelConfig | str, intermediate_size: int | None = None) -> dict[str, int]:
    """SwiGLU FFN: fused gate+up (``h -> 2*I``) and down (``I -> h``)."""
    m = _m(model)
    inter = m.dense_intermediate_size if intermediate_size is None else intermediate_size
    return {"w_gate_up": 2 * m.hidden_size * inter, "w_down": inter * m.hidden_size}


def moe_params(model: ModelConfig | str) -> dict[str, int]:
    """One MoE FFN: router (+ correction bias), all routed experts, shared experts."""
    m = _m(model)
    if m.moe is None:
        return {}
    e = m.moe
    per_expert = 3 * m.hidden_size * e.intermediate_size
    return {
        "router": e.num_routed_experts * m.hidden_size,
        "router_bias": e.num_routed_experts if e.router_bias else 0,
        "routed_experts": e.num_routed_experts * per_expert,
        "shared_experts": e.num_shared_experts * per_expert,
    }


def layer_params(model: ModelConfig | str, kind: str) -> dict[str, int]:
    """All parameters of one decoder layer of ``kind`` 'dense' or 'moe', by tensor group."""
    m = _m(model)
    out = {f"attn.{k}": v for k, v in attention_params(m).items()}
    out["norms"] = 2 * m.hidden_size  # pre-attention and pre-FFN RMSNorm
    if kind == "dense":
        out.update({f"ffn.{k}": v for k, v in dense_ffn_params(m).items()})
    elif kind == "moe":
        out.update({f"moe.{k}": v for k, v in moe_params(m).items()})
    else:
        raise ValueError(f"layer kind must be 'dense' or 'moe', got {kind!r}")
    return out


def mtp_params(model: ModelConfig | str) -> dict[str, int]:
    """Parameters of the MTP modules (all of them), by group.

    Each DeepSeek-V3 MTP module has two RMSNorms (``enorm``, ``hnorm``), a projection
    ``eh_proj`` (``2h -> h``), one MoE decoder block and an output norm; it shares the
    embedding and LM head with the main model. The released checkpoint stores copies of
    those two; they are listed as ``shared_embedding_copy`` / ``shared_head_copy``.
    """
    m = _m(model)
    n = m.num_mtp_modules
    if n == 0:
        return {}
    h = m.hidden_size
    block = sum(layer_params(m, "moe" if m.is_moe else "dense").values())
    return {
        "norms": n * 3 * h,
        "eh_proj": n * 2 * h * h,
        "block": n * block,
        "shared_embedding_copy": n * m.vocab_size * h,
        "shared_head_copy": n * m.vocab_size * h,
    }


def param_breakdown(model: ModelConfig | str) -> dict[str, int]:
    """Main-model parameters by component (MTP excluded). Sums to ``total_params``."""
    m = _m(model)
    h = m.hidden_size
    attn = attention_params(m)
    attn_norms = attn.get("q_a_norm", 0) + attn.get("kv_a_norm", 0)
    bias = attn.get("qkv_bias", 0)
    attn_gemm = sum(attn.values()) - attn_norms - bias
    out = {
        "embedding": m.vocab_size * h,
        "lm_head": 0 if m.tie_word_embeddings else m.vocab_size * h,
        "final_norm": h,
        "attention": m.num_layers * attn_gemm,
        "attention_bias": m.num_layers * bias,
        "norms": m.num_layers * (2 * h + attn_norms),
        "dense_ffn": m.num_dense_layers * sum(dense_ffn_params(m).values()),
    }
    if m.moe is not None:
        moe = moe_params(m)
        L = m.num_moe_layers
        out["moe_router"] = L * (moe["router"] + moe["router_bias"])
        out["moe_shared_experts"] = L * moe["shared_experts"]
        out["moe_routed_experts"] = L * moe["routed_experts"]
    return out


def total_params(model: ModelConfig | str, include_mtp: bool = False) -> int:
    """All parameters incl. embedding, untied LM head and norms.

    ``include_mtp`` adds the MTP modules' own parameters (not the checkpoint's copies of the
    shared embedding/head; see ``checkpoint_params``).
    """
    m = _m(model)
    n = sum(param_breakdown(m).values())
    if include_mtp:
        mtp = mtp_params(m)
        n += sum(v for k, v in mtp.items() if not k.startswith("shared_"))
    return n


def checkpoint_params(model: ModelConfig | str) -> int:
    """Parameters stored in the released checkpoint: main model + MTP incl. shared copies."""
    m = _m(model)
    return total_params(m) + sum(mtp_params(m).values())


def _activated_breakdown(m: ModelConfig) -> dict[str, int]:
    b = param_breakdown(m)
    out = {k: v for k, v in b.items() if k not in ("embedding", "moe_routed_experts")}
    if m.moe is not None:
        per_expert = 3 * m.hidden_size * m.moe.intermediate_size
        out["moe_routed_experts"] = m.num_moe_layers * m.moe.top_k * per_expert
    return out


def activated_params(model: ModelConfig | str) -> int:
    """Parameters used per token: everything but the embedding table and unchosen experts."""
    return sum(_activated_breakdown(_m(model)).values())


def activated_matmul_params(model: ModelConfig | str) -> int:
    """Activated parameters that are GEMM weights (norms, biases, router bias excluded)."""
    m = _m(model)
    b = _activated_breakdown(m)
    n = sum(v for k, v in b.items() if k not in ("final_norm", "norms", "attention_bias"))
    if m.moe is not None and m.moe.router_bias:
        n -= m.num_moe_layers * m.moe.num_routed_experts
    return n


# --------------------------------------------------------------------------- bytes


def weight_bytes_breakdown(
    model: ModelConfig | str, dtype: str = "bf16", include_mtp: bool = False
) -> dict[str, float]:
    """Weight bytes by component. GEMM weights in ``dtype``; embedding, LM head, router,
    norms and biases in ``param_dtype(group, dtype)`` (BF16 when dtype is below 16 bits).
    Block-quantization scales (e.g. FP8 128x128 blocks, ~0.02 % of bytes) are not counted.
    """
    m = _m(model)
    b = param_breakdown(m)
    group = {
        "embedding": "embedding",
        "lm_head": "lm_head",
        "final_norm": "norm",
        "norms": "norm",
        "attention_bias": "bias",
        "moe_router": "router",
    }
    out = {k: v * dtype_bytes(param_dtype(group.get(k, "gemm"), dtype)) for k, v in b.items()}
    if include_mtp and m.num_mtp_modules:
        # MTP modules' own weights (the shared embedding/head are not stored twice in memory),
        # split like the main model's so callers can shard routed experts over EP.
        n, mtp = m.num_mtp_modules, mtp_params(m)
        block = layer_params(m, "moe" if m.is_moe else "dense")
        norm_b, gemm_b = dtype_bytes(param_dtype("norm", dtype)), dtype_bytes(dtype)
        norms = block["norms"] + block.get("attn.q_a_norm", 0) + block.get("attn.kv_a_norm", 0)
        router = block.get("moe.router", 0) + block.get("moe.router_bias", 0)
        bias = block.get("attn.qkv_bias", 0)
        routed, shared = block.get("moe.routed_experts", 0), block.get("moe.shared_experts", 0)
        other_gemm = sum(block.values()) - norms - router - bias - routed - shared
        out["mtp_norms"] = (mtp["norms"] + n * norms) * norm_b
        out["mtp_other"] = (mtp["eh_proj"] + n * other_gemm) * gemm_b + n * bias * dtype_bytes(
            param_dtype("bias", dtype))
        if m.moe is not None:
            out["mtp_moe_router"] = n * router * dtype_bytes(param_dtype("router", dtype))
            out["mtp_moe_shared_experts"] = n * shared * gemm_b
            out["mtp_moe_routed_experts"] = n * routed * gemm_b
    return out


def weight_bytes(model: ModelConfig | str, dtype: str = "bf16", include_mtp: bool = False) -> float:
    """Bytes to hold all weights (see ``weight_bytes_breakdown`` for the dtype rule)."""
    return sum(weight_bytes_breakdown(model, dtype, include_mtp).values())


def gemm_weight_bytes(model: ModelConfig | str, dtype: str = "bf16") -> float:
    """Bytes of the weights that GEMMs read (incl. LM head, router and its bias, qkv bias):
    ``weight_bytes`` minus the embedding table and the norms. With tied embeddings the LM head
    GEMM reads the embedding table, which is then counted here."""
    m = _m(model)
    wb = weight_bytes_breakdown(m, dtype)
    n = sum(v for k, v in wb.items() if k not in ("embedding", "final_norm", "norms"))
    if m.tie_word_embeddings:
        n += wb["embedding"]
    return n


def kv_cache_bytes_per_token_per_layer(model: ModelConfig | str, kv_dtype: str = "bf16") -> float:
    """KV-cache bytes one token occupies in one layer.

    MLA caches the ``kv_lora_rank`` latent plus the ``qk_rope_head_dim`` RoPE key (shared by all
    heads). ``kv_dtype='fp8'`` for MLA is FlashMLA's layout: FP8 latent + one FP32 scale per
    128 latent values + BF16 RoPE key (656 B for DeepSeek-V3). GQA caches K and V for each KV
    head; FP8 there is one byte per element with per-tensor scales (not counted).
    """
    m = _m(model)
    a = m.attention
    nbytes = dtype_bytes(kv_dtype)
    if isinstance(a, MLAConfig):
        if kv_dtype.lower() == "fp8":
            scales = -(-a.kv_lora_rank // _FLASHMLA_FP8_TILE) * 4
            return a.kv_lora_rank * 1 + scales + a.qk_rope_head_dim * 2
        return (a.kv_lora_rank + a.qk_rope_head_dim) * nbytes
    return 2 * a.num_kv_heads * a.head_dim * nbytes


def kv_cache_bytes_per_token(
    model: ModelConfig | str, kv_dtype: str = "bf16", include_mtp: bool = False
) -> float:
    """KV-cache bytes per token over all layers (+ MTP modules' layers if ``include_mtp``)."""
    m = _m(model)
    layers = m.num_layers + (m.num_mtp_modules if include_mtp else 0)
    return layers * kv_cache_bytes_per_token_per_layer(m, kv_dtype)


# --------------------------------------------------------------------------- FLOPs


def attention_flops_per_pair(model: ModelConfig | str, absorbed: bool = False) -> float:
    """Forward FLOPs per (query, key) pair over all heads of one layer: ``2*H*(d_qk + d_v)``.

    ``absorbed`` selects MLA's absorbed form (d_qk = latent + rope, d_v = latent), which does
    more attention FLOPs per pair than the non-absorbed form but reads only the latent cache.
    """
    m = _m(model)
    a = m.attention
    if absorbed:
        if not isinstance(a, MLAConfig):
            raise ValueError(f"{m.name}: absorbed attention applies to MLA models only")
        return 2.0 * a.num_heads * (a.absorbed_qk_head_dim + a.absorbed_v_head_dim)
    return 2.0 * a.num_heads * (a.qk_head_dim + a.v_head_dim)


def attention_forward_flops_per_token(
    model: ModelConfig | str, seq_len: int = 4096, causal: bool = True
) -> float:
    """Forward attention (QK^T + PV) FLOPs per token, averaged over a ``seq_len`` sequence,
    over all layers, in MLA's non-absorbed (training) form."""
    m = _m(model)
    pairs_per_token = attention_pairs(seq_len, 0, causal) / seq_len
    return m.num_layers * attention_flops_per_pair(m) * pairs_per_token


def training_flops_breakdown(
    model: ModelConfig | str, seq_len: int = 4096, causal: bool = True, include_mtp: bool = False
) -> dict[str, float]:
    """Training FLOPs per token by part: ``matmul`` = 6 x activated GEMM params,
    ``attention`` = 3 x forward attention FLOPs; ``mtp`` if requested (MTP block + eh_proj)."""
    m = _m(model)
    out = {
        "matmul": 6.0 * activated_matmul_params(m),
        "attention": 3.0 * attention_forward_flops_per_token(m, seq_len, causal),
    }
    if include_mtp and m.num_mtp_modules:
        blk = layer_params(m, "moe" if m.is_moe else "dense")
        active = sum(v for k, v in blk.items() if k.startswith("attn.w") or k == "moe.router")
        if m.moe is not None:
            active += (m.moe.num_shared_experts + m.moe.top_k) * 3 * m.hidden_size * m.moe.intermediate_size
        else:
            active += sum(dense_ffn_params(m).values())
        n = m.num_mtp_modules
        per_pair = attention_flops_per_pair(m) * attention_pairs(seq_len, 0, causal) / seq_len
        head = 0 if m.tie_word_embeddings else m.vocab_size * m.hidden_size  # shared head, rerun
        out["mtp"] = n * (6.0 * (active + 2 * m.hidden_size**2 + head) + 3.0 * per_pair)
    return out


def training_flops_per_token(
    model: ModelConfig | str, seq_len: int = 4096, causal: bool = True, include_mtp: bool = False
) -> float:
    """Training FLOPs per token (forward + backward) at ``seq_len``; see module docstring."""
    return sum(training_flops_breakdown(model, seq_len, causal, include_mtp).values())


def forward_flops_per_token(model: ModelConfig | str, seq_len: int = 4096, causal: bool = True) -> float:
    """Forward-only FLOPs per token (one third of ``training_flops_per_token``)."""
    return training_flops_per_token(model, seq_len, causal) / 3.0


def accounting_table(model: ModelConfig | str, seq_len: int = 4096) -> dict:
    """The headline figures plus per-component breakdowns, as a plain dict."""
    m = _m(model)
    return {
        "model": m.name,
        "total_params": total_params(m),
        "activated_params": activated_params(m),
        "kv_cache_bytes_per_token": kv_cache_bytes_per_token(m, "bf16"),
        "training_flops_per_token": training_flops_per_token(m, seq_len),
        "seq_len": seq_len,
        "params_breakdown": param_breakdown(m),
        "activated_breakdown": _activated_breakdown(m),
        "activated_matmul_params": activated_matmul_params(m),
        "mtp_params": sum(v for k, v in mtp_params(m).items() if not k.startswith("shared_")),
        "checkpoint_params": checkpoint_params(m),
        "weight_bytes": {d: weight_bytes(m, d) for d in ("bf16", "fp8")},
        "kv_cache_bytes_per_token_by_dtype": {d: kv_cache_bytes_per_token(m, d) for d in ("bf16", "fp8")},
        "kv_cache_bytes_per_token_per_layer": kv_cache_bytes_per_token_per_layer(m, "bf16"),
        "training_flops_breakdown": training_flops_breakdown(m, seq_len),
    }
