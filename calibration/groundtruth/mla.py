"""Whole MLA model (DeepSeek-V2-Lite shape) in plain torch with random bf16 weights.

Layers as the catalog's ``ModelConfig`` says: MLA attention (queries projected directly, or
through a low-rank ``q_lora_rank``), the first ``num_dense_layers`` with a dense SwiGLU FFN,
the rest an MoE FFN (:class:`calibration.groundtruth.moe.MoEBlock`, every expert on this GPU,
routing seeded uniform per layer). The KV cache holds, per token and layer, the normalized
latent (``kv_lora_rank``) and the rotated RoPE key (``qk_rope_head_dim``): ``[B, C, 576]``.

* **prefill** runs the non-absorbed form: the latent is decompressed by ``kv_b`` into per-head
  K_nope and V, q and k are assembled as ``cat(nope, rope)`` (:func:`assemble_q`,
  :func:`assemble_k`) and causal SDPA runs with head dims 192/128;
* **decode** runs the absorbed form: ``q_nope`` is multiplied into the latent space by W_UK
  (a bmm over heads), the 16 heads become the query rows of ONE latent KV head, SDPA runs with
  dims 576 (q.k) and 512 (v, the first 512 columns of the same cache), and W_UV maps back.

The glue functions are module-level so ``calibration.bench.mla_glue`` times the very ops the
model runs.
"""

from __future__ import annotations

import math

import numpy as np

from calibration.groundtruth.common import random_weight, rope, rope_tables, sdpa, sdpa_backend
from calibration.groundtruth.configs import MoEConfig
from calibration.groundtruth.moe import MoEBlock, make_route

MLA_ROPE_THETA = 10000.0
EPS = 1e-6


def split_q(q, nope: int):
    """Views ``(q_nope, q_pe)`` of a ``[..., H, nope + rope]`` query projection."""
    return q[..., :nope], q[..., nope:]


def assemble_q(q_nope, q_pe):
    """Non-absorbed query ``cat(q_nope, q_pe)`` -> ``[..., H, nope + rope]`` (one copy kernel)."""
    import torch

    return torch.cat((q_nope, q_pe), dim=-1)


def assemble_k(k_nope, k_pe):
    """Non-absorbed key: per-head K_nope with the shared rotated key broadcast over heads."""
    import torch

    return torch.cat((k_nope, k_pe.expand(*k_nope.shape[:-1], k_pe.shape[-1])), dim=-1)


def latent_norm(kv_a, weight, lat: int):
    """RMSNorm of the latent part (a strided view) of the ``kv_a`` projection output."""
    import torch.nn.functional as F

    return F.rms_norm(kv_a[..., :lat], (lat,), weight, EPS)


def write_cache(cache_lat, cache_pe, c, k_pe) -> None:
    """Store the normalized latent and the rotated key into their slots (two copies)."""
    cache_lat.copy_(c)
    cache_pe.copy_(k_pe)


def latent_query(q_lat, q_pe):
    """``cat(q_lat, q_pe)`` -> ``[B, H, lat + rope]`` from the head-major ``q_lat [H, B, lat]``."""
    import torch

    return torch.cat((q_lat.transpose(0, 1), q_pe), dim=-1)


def absorbed_query(q_nope, q_pe, w_uk):
    """``[B, H, lat + rope]``: q_nope through W_UK (bmm over heads) concatenated with q_pe."""
    import torch

    return latent_query(torch.bmm(q_nope.transpose(0, 1), w_uk), q_pe)  # [H, B, nope] x [H, nope, lat]


def merge_heads(o):
    """``[H, B, v]`` -> ``[B, H*v]`` (a transposing copy)."""
    return o.transpose(0, 1).reshape(o.shape[1], -1)


def absorbed_output(o_lat, w_uv_t):
    """``[B, H*v]`` from the latent attention output ``[B, H, lat]`` through W_UV (bmm)."""
    import torch

    return merge_heads(torch.bmm(o_lat.transpose(0, 1), w_uv_t))  # [H, B, lat] x [H, lat, v]


class MLAModel:
    """Random-weight MLA model; ``prefill`` and ``decode`` build (step, info)."""

    def __init__(self, model, device: str, seed: int = 0):
        import torch

        self.m, self.device = model, torch.device(device)
        a, e, h = model.attention, model.moe, model.hidden_size
        self.a = a
        g = torch.Generator(device=self.device).manual_seed(seed)
        dev, bf = self.device, torch.bfloat16
        H, dqk = a.num_heads, a.qk_nope_head_dim + a.qk_rope_head_dim
        lat, r, dn, dv = a.kv_lora_rank, a.qk_rope_head_dim, a.qk_nope_head_dim, a.v_head_dim
        self.embed = random_weight(g, (model.vocab_size, h), 1.0, dev)
        self.moe_cfg = MoEConfig(model.name, h, e.intermediate_size, e.num_routed_experts, e.top_k, 1,
                                 e.num_shared_experts, e.scoring) if e else None
        impl = None
        self.layers = []
        for i in range(model.num_layers):
            L = dict(n1=torch.ones(h, device=dev, dtype=bf), n2=torch.ones(h, device=dev, dtype=bf),
                     kv_norm=torch.ones(lat, device=dev, dtype=bf),
                     wkv_a=random_weight(g, (lat + r, h), h**-0.5, dev),
                     wkv_b=random_weight(g, (H * (dn + dv), lat), lat**-0.5, dev),
                     wo=random_weight(g, (h, H * dv), (H * dv) ** -0.5, dev))
            if a.q_lora_rank:
                L["wq_a"] = random_weight(g, (a.q_lora_rank, h), h**-0.5, dev)
                L["q_norm"] = torch.ones(a.q_lora_rank, device=dev, dtype=bf)
                L["wq_b"] = random_weight(g, (H * dqk, a.q_lora_rank), a.q_lora_rank**-0.5, dev)
            else:
                L["wq"] = random_weight(g, (H * dqk, h), h**-0.5, dev)
            kv_b = L["wkv_b"].view(H, dn + dv, lat)
            L["w_uk"], L["w_uv_t"] = kv_b[:, :dn, :], kv_b[:, dn:, :].transpose(1, 2)
            if i < model.num_dense_layers:
                f = model.dense_intermediate_size
                L["wgu"], L["wd"] = random_weight(g, (2 * f, h), h**-0.5, dev), random_weight(g, (h, f), f**-0.5, dev)
            else:
                L["moe"] = MoEBlock(self.moe_cfg, dev, g, impl=impl)
                impl = L["moe"].impl
            self.layers.append(L)
        self.norm = torch.ones(h, device=dev, dtype=bf)
        self.lm_head = random_weight(g, (model.vocab_size, h), h**-0.5, dev)
        self.moe_impl = impl or "none"

    # -- pieces shared by prefill and decode

    def _q(self, L, h):
        import torch.nn.functional as F

        if self.a.q_lora_rank:
            qa = F.rms_norm(h @ L["wq_a"].t(), (self.a.q_lora_rank,), L["q_norm"], EPS)
            return qa @ L["wq_b"].t()
        return h @ L["wq"].t()

    def _ffn(self, L, x, route, out):
        """x + FFN(norm(x)) on ``[T, h]`` rows: dense SwiGLU or the MoE block."""
        import torch.nn.functional as F

        h = F.rms_norm(x, (x.shape[-1],), L["n2"], EPS)
        if "moe" in L:
            blk = L["moe"]
            blk.route_scores(h)
            return x + blk.shared(h) + blk.routed(h, route, out)
        f = self.m.dense_intermediate_size
        gu = h @ L["wgu"].t()
        return x + (F.silu(gu[..., :f]) * gu[..., f:]) @ L["wd"].t()

    def _routes(self, tokens: int, seed: int):
        """Per layer: a seeded uniform routing of ``tokens`` tokens (None for dense layers)."""
        import torch

        routes = [make_route(self.moe_cfg, tokens, seed + i, self.device) if "moe" in L else None
                  for i, L in enumerate(self.layers)]
        out = torch.empty(tokens, self.m.hidden_size, device=self.device, dtype=torch.bfloat16)
        touched = [r.info["experts_touched"] for r in routes if r is not None]
        return routes, out, dict(experts_touched_mean=float(np.mean(touched)) if touched else 0.0)

    def _tables(self, positions):
        return rope_tables(positions, self.a.qk_rope_head_dim, self.device, MLA_ROPE_THETA)

    # -- steps

    def prefill(self, batch: int, seq: int, seed: int = 1):
        """Non-absorbed prefill of ``batch`` x ``seq`` new tokens (logits of the last token)."""
        import torch
        import torch.nn.functional as F

        a, dev, hd = self.a, self.device, self.m.hidden_size
        H, dn, r, lat, dv = a.num_heads, a.qk_nope_head_dim, a.qk_rope_head_dim, a.kv_lora_rank, a.v_head_dim
        T = batch * seq
        tokens = torch.randint(0, self.m.vocab_size, (batch, seq), device=dev)
        cos, sin = self._tables(torch.arange(seq, device=dev))
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
        caches = [torch.empty(batch, seq, lat + r, device=dev, dtype=torch.bfloat16) for _ in self.layers]
        routes, out, info = self._routes(T, seed)
        scale = 1.0 / math.sqrt(dn + r)

        def step():
            x = F.embedding(tokens, self.embed)  # [B, S, h]
            for L, cache, route in zip(self.layers, caches, routes):
                h = F.rms_norm(x, (hd,), L["n1"], EPS)
                q_nope, q_pe = split_q(self._q(L, h).view(batch, seq, H, dn + r), dn)
                kv_a = h @ L["wkv_a"].t()  # [B, S, lat + r]
                c = latent_norm(kv_a, L["kv_norm"], lat)
                k_pe = rope(kv_a[..., lat:].view(batch, seq, 1, r), cos, sin)
                write_cache(cache[..., :lat], cache[..., lat:], c, k_pe.view(batch, seq, r))
                kv = (c @ L["wkv_b"].t()).view(batch, seq, H, dn + dv)
                q = assemble_q(q_nope, rope(q_pe, cos, sin))
                k = assemble_k(kv[..., :dn], k_pe)
                o = sdpa(q.transpose(1, 2), k.transpose(1, 2), kv[..., dn:].transpose(1, 2), True, scale=scale)
                x = x + o.transpose(1, 2).reshape(batch, seq, H * dv) @ L["wo"].t()
                x = self._ffn(L, x.view(T, hd), route, out).view(batch, seq, hd)
            return F.rms_norm(x[:, -1], (hd,), self.norm, EPS) @ self.lm_head.t()

        q0 = torch.empty(batch, seq, H, dn + r, device=dev, dtype=torch.bfloat16).transpose(1, 2)
        v0 = torch.empty(batch, seq, H, dn + dv, device=dev, dtype=torch.bfloat16)[..., dn:].transpose(1, 2)
        info["attn_backend"] = sdpa_backend(q0, q0, v0, True, scale)
        return step, dict(info, moe_impl=self.moe_impl)

    def decode(self, batch: int, context: int, seed: int = 1):
        """Absorbed decode: one new token per sequence against ``context`` cached tokens."""
        import torch
        import torch.nn.functional as F

        a, dev, hd = self.a, self.device, self.m.hidden_size
        H, dn, r, lat = a.num_heads, a.qk_nope_head_dim, a.qk_rope_head_dim, a.kv_lora_rank
        tokens = torch.randint(0, self.m.vocab_size, (batch,), device=dev)
        cos, sin = self._tables(torch.full((batch,), context, device=dev))
        cos, sin = cos[:, None, :], sin[:, None, :]
        # random history: [B, C+1, lat + rope] per layer; the new token's slot is C
        caches = [torch.randn(batch, context + 1, lat + r, device=dev, dtype=torch.bfloat16) for _ in self.layers]
        routes, out, info = self._routes(batch, seed)
        scale = 1.0 / math.sqrt(dn + r)  # the model's softmax scale (absorption keeps q.k)

        def step():
            x = F.embedding(tokens, self.embed)  # [B, h]
            for L, cache, route in zip(self.layers, caches, routes):
                h = F.rms_norm(x, (hd,), L["n1"], EPS)
                q_nope, q_pe = split_q(self._q(L, h).view(batch, H, dn + r), dn)
                kv_a = h @ L["wkv_a"].t()  # [B, lat + r]
                c = latent_norm(kv_a, L["kv_norm"], lat)
                k_pe = rope(kv_a[:, None, lat:], cos, sin)  # [B, 1, r]
                write_cache(cache[:, context, :lat], cache[:, context, lat:], c, k_pe.view(batch, r))
                q = absorbed_query(q_nope, rope(q_pe, cos, sin), L["w_uk"])  # [B, H, lat + r]
                kc = cache.view(batch, 1, context + 1, lat + r)
                o = sdpa(q.view(batch, 1, H, lat + r), kc, kc[..., :lat], False, scale=scale)
                x = x + absorbed_output(o.reshape(batch, H, lat), L["w_uv_t"]) @ L["wo"].t()
                x = self._ffn(L, x, route, out)
            return F.rms_norm(x, (hd,), self.norm, EPS) @ self.lm_head.t()

        q0 = torch.empty(batch, 1, H, lat + r, device=dev, dtype=torch.bfloat16)
        kc0 = caches[0].view(batch, 1, context + 1, lat + r)
        info["attn_backend"] = sdpa_backend(q0, kc0, kc0[..., :lat], False, scale)
        return step, dict(info, moe_impl=self.moe_impl)

