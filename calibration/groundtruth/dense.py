"""Dense GQA decoder (Llama-3.1 shapes) in plain torch with random bf16 weights.

Pre-norm, fused QKV, rotate-half RoPE, SDPA, SiLU-gated MLP, residuals. The KV cache is a
pre-allocated uniform ``[B, Hkv, C, D]`` tensor per layer. Prefill attention is causal SDPA
(``enable_gqa`` or repeat_kv); decode packs the query heads of a KV group as query rows; a
chunked-prefill step (``chunk_prefill``: n new tokens after C cached ones) writes its keys behind
the cached ones and attends lower-right causal (``common.sdpa_chunk``, the call the
``attn_prefill_ctx`` suite times).
"""

from __future__ import annotations

from calibration.bench.elementwise import quant_fp8_rowwise
from calibration.groundtruth.common import pick_chunk, rope, rope_tables, sdpa, sdpa_backend, sdpa_chunk
from calibration.groundtruth.configs import DenseConfig

LLAMA_ROPE_THETA = 500000.0
#: a layer's projections (what ``dtype="fp8"`` quantises)
PROJECTIONS = ("wqkv", "wo", "wgu", "wd")


class DenseModel:
    """Random-weight decoder for one rank; ``prefill`` and ``decode`` build step closures."""

    def __init__(self, cfg: DenseConfig, device: str, seed: int = 0, dtype: str = "bf16"):
        import torch

        if dtype not in ("bf16", "fp8"):
            raise ValueError(f"dense ground truth dtype {dtype!r} unknown (valid: bf16, fp8)")
        self.cfg, self.device, self.fp8 = cfg, torch.device(device), dtype == "fp8"
        g = torch.Generator(device=self.device).manual_seed(seed)
        bf = torch.bfloat16
        h, d = cfg.hidden, cfg.head_dim
        qkv_out = (cfg.heads_q + 2 * cfg.heads_kv) * d

        def w(*shape, scale):
            return (torch.randn(*shape, generator=g, device=self.device, dtype=torch.float32) * scale).to(bf)

        self.embed = w(cfg.vocab, h, scale=1.0)
        self.layers = []
        for _ in range(cfg.layers):
            self.layers.append(dict(
                n1=torch.ones(h, device=self.device, dtype=bf),
                wqkv=w(qkv_out, h, scale=h**-0.5),
                wo=w(h, cfg.heads_q * d, scale=(cfg.heads_q * d) ** -0.5),
                n2=torch.ones(h, device=self.device, dtype=bf),
                wgu=w(2 * cfg.ffn, h, scale=h**-0.5),
                wd=w(h, cfg.ffn, scale=cfg.ffn**-0.5),
            ))
        self.norm = torch.ones(h, device=self.device, dtype=bf)
        self.lm_head = w(cfg.vocab, h, scale=h**-0.5)
        self.gqa_mode = self._probe_gqa()
        if self.fp8:
            for L in self.layers:
                for name in PROJECTIONS:
                    L[name] = L[name].to(torch.float8_e4m3fn)
                    L[name + "_scale"] = torch.ones(1, L[name].shape[0], device=self.device, dtype=torch.float32)

    def _lin(self, x, L, name: str):
        """``x @ W.t()`` of projection ``name`` (BF16), or its FP8 form: ``x`` quantised per row,
        then ``torch._scaled_mm`` with the e4m3 weight (``dtype="fp8"``)."""
        if not self.fp8:
            return x @ L[name].t()
        import torch

        q, s = quant_fp8_rowwise(x.reshape(-1, x.shape[-1]))
        y = torch._scaled_mm(q, L[name].t(), scale_a=s, scale_b=L[name + "_scale"], out_dtype=torch.bfloat16)
        return y.view(*x.shape[:-1], y.shape[-1])

    def _probe_gqa(self) -> str:
        """'enable_gqa' if the preferred SDPA backend accepts it here, else 'repeat_kv'."""
        import torch

        c = self.cfg
        if c.heads_q == c.heads_kv:
            return "none"
        q = torch.randn(1, c.heads_q, 16, c.head_dim, device=self.device, dtype=torch.bfloat16)
        k = torch.randn(1, c.heads_kv, 16, c.head_dim, device=self.device, dtype=torch.bfloat16)
        try:
            sdpa(q, k, k, True, gqa=True)
            return "enable_gqa"
        except Exception:
            return "repeat_kv"

    def _rope_tables(self, positions):
        return rope_tables(positions, self.cfg.head_dim, self.device, LLAMA_ROPE_THETA)

    def _mlp(self, L, x):
        import torch.nn.functional as F

        h = F.rms_norm(x, (x.shape[-1],), L["n2"], 1e-5)
        gu = self._lin(h, L, "wgu")
        f = self.cfg.ffn
        return x + self._lin(F.silu(gu[..., :f]) * gu[..., f:], L, "wd")

    def prefill(self, batch: int, seq: int):
        """A closure running one prefill step of ``batch`` x ``seq`` tokens (static buffers)."""
        import torch
        import torch.nn.functional as F

        c, dev = self.cfg, self.device
        tokens = torch.randint(0, c.vocab, (batch, seq), device=dev)
        cos, sin = self._rope_tables(torch.arange(seq, device=dev))
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
        caches = [(torch.empty(batch, c.heads_kv, seq, c.head_dim, device=dev, dtype=torch.bfloat16),
                   torch.empty(batch, c.heads_kv, seq, c.head_dim, device=dev, dtype=torch.bfloat16))
                  for _ in self.layers]
        hq, hkv, d = c.heads_q, c.heads_kv, c.head_dim
        rep = hq // hkv

        def step():
            x = F.embedding(tokens, self.embed)
            for L, (kc, vc) in zip(self.layers, caches):
                h = F.rms_norm(x, (c.hidden,), L["n1"], 1e-5)
                qkv = self._lin(h, L, "wqkv").view(batch, seq, hq + 2 * hkv, d)
                q = rope(qkv[:, :, :hq], cos, sin).transpose(1, 2)
                k = rope(qkv[:, :, hq:hq + hkv], cos, sin).transpose(1, 2)
                v = qkv[:, :, hq + hkv:].transpose(1, 2)
                kc.copy_(k)
                vc.copy_(v)
                if self.gqa_mode == "repeat_kv":
                    a = sdpa(q, kc.repeat_interleave(rep, 1), vc.repeat_interleave(rep, 1), True)
                else:
                    a = sdpa(q, kc, vc, True, gqa=self.gqa_mode == "enable_gqa")
                x = x + self._lin(a.transpose(1, 2).reshape(batch, seq, hq * d), L, "wo")
                x = self._mlp(L, x)
            last = F.rms_norm(x[:, -1], (c.hidden,), self.norm, 1e-5)
            return last @ self.lm_head.t()

        step.tokens, step.caches = tokens, caches  # what a chunk after it reads (tests)
        return step

    def chunk_prefill(self, batch: int, new: int, context: int, tokens=None, history=None):
        """(closure, info) of one chunked-prefill step: ``batch`` sequences of ``new`` tokens after
        ``context`` cached ones. Per layer a ``[B, Hkv, C+n, D]`` cache holding a random history in
        its first C positions (``history``: per layer ``(k, v)`` ``[B, Hkv, C, D]`` to copy instead;
        ``tokens``: ``[B, n]`` ids instead of random ones, tests); the step writes the chunk's keys
        and values behind it (RoPE at positions C..C+n-1) and attends lower-right causal over all
        C+n keys; logits of the last token. ``info``: ``attn_backend``, the kernel that runs
        (``common.pick_chunk``)."""
        import torch
        import torch.nn.functional as F

        c, dev = self.cfg, self.device
        hq, hkv, d = c.heads_q, c.heads_kv, c.head_dim
        rep = hq // hkv
        if tokens is None:
            tokens = torch.randint(0, c.vocab, (batch, new), device=dev)
        cos, sin = self._rope_tables(torch.arange(context, context + new, device=dev))
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
        first = torch.randn(2, batch, hkv, context + new, d, device=dev, dtype=torch.bfloat16)
        caches = [first] + [first.clone() for _ in self.layers[1:]]  # one history, a cache per layer
        caches = [(kv[0], kv[1]) for kv in caches]
        for (kc, vc), (kh, vh) in zip(caches, history or ()):
            kc[:, :, :context].copy_(kh)
            vc[:, :, :context].copy_(vh)
        q0 = torch.empty(batch, hq, new, d, device=dev, dtype=torch.bfloat16)
        picked = pick_chunk(q0, caches[0][0], caches[0][1])
        if picked is None:
            raise RuntimeError(f"no fused kernel takes lower-right causal attention of {hq}q/{hkv}kv d={d}")
        gqa_impl, backend = picked

        def step():
            x = F.embedding(tokens, self.embed)
            for L, (kc, vc) in zip(self.layers, caches):
                h = F.rms_norm(x, (c.hidden,), L["n1"], 1e-5)
                qkv = self._lin(h, L, "wqkv").view(batch, new, hq + 2 * hkv, d)
                q = rope(qkv[:, :, :hq], cos, sin).transpose(1, 2)
                kc[:, :, context:].copy_(rope(qkv[:, :, hq:hq + hkv], cos, sin).transpose(1, 2))
                vc[:, :, context:].copy_(qkv[:, :, hq + hkv:].transpose(1, 2))
                if gqa_impl == "repeat_kv":
                    a = sdpa_chunk(q, kc.repeat_interleave(rep, 1), vc.repeat_interleave(rep, 1))
                else:
                    a = sdpa_chunk(q, kc, vc, gqa=gqa_impl == "enable_gqa")
                x = x + self._lin(a.transpose(1, 2).reshape(batch, new, hq * d), L, "wo")
                x = self._mlp(L, x)
            last = F.rms_norm(x[:, -1], (c.hidden,), self.norm, 1e-5)
            return last @ self.lm_head.t()

        return step, {"attn_backend": backend if gqa_impl != "repeat_kv" else f"{backend}+repeat_kv"}

    def decode(self, batch: int, context: int):
        """A closure running one decode step: B new tokens attending to C cached + themselves."""
        import torch
        import torch.nn.functional as F

        c, dev = self.cfg, self.device
        hq, hkv, d = c.heads_q, c.heads_kv, c.head_dim
        grp = hq // hkv
        tokens = torch.randint(0, c.vocab, (batch,), device=dev)
        cos, sin = self._rope_tables(torch.full((batch,), context, device=dev))
        cos, sin = cos[:, None, :], sin[:, None, :]
        caches = []
        for _ in self.layers:  # uniform pre-allocated layout: [B, Hkv, C+1, D], random history
            kv = torch.randn(2, batch, hkv, context + 1, d, device=dev, dtype=torch.bfloat16)
            caches.append((kv[0], kv[1]))

        def step():
            x = F.embedding(tokens, self.embed)  # [B, H]
            for L, (kc, vc) in zip(self.layers, caches):
                h = F.rms_norm(x, (c.hidden,), L["n1"], 1e-5)
                qkv = self._lin(h, L, "wqkv").view(batch, hq + 2 * hkv, d)
                q = rope(qkv[:, :hq], cos, sin)
                k = rope(qkv[:, hq:hq + hkv], cos, sin)
                kc[:, :, context].copy_(k)
                vc[:, :, context].copy_(qkv[:, hq + hkv:])
                a = sdpa(q.view(batch, hkv, grp, d), kc, vc, False)  # pack_q GQA
                x = x + self._lin(a.reshape(batch, hq * d), L, "wo")
                x = self._mlp(L, x)
            return F.rms_norm(x, (c.hidden,), self.norm, 1e-5) @ self.lm_head.t()

        return step

    def decode_backend(self, batch: int, context: int) -> str:
        """The SDPA backend torch picks for this decode shape (one layer's K as a stand-in)."""
        import torch

        c = self.cfg
        q = torch.empty(batch, c.heads_kv, c.heads_q // c.heads_kv, c.head_dim, device=self.device,
                        dtype=torch.bfloat16)
        k = torch.empty(batch, c.heads_kv, context + 1, c.head_dim, device=self.device, dtype=torch.bfloat16)
        return sdpa_backend(q, k, k, False)
