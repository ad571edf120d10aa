"""Whole-model ground truth: torch reference forward steps with random bf16 weights.

``python -m calibration.groundtruth --out DIR`` measures, on one GPU:

* a Llama-3.1-8B-shaped model (32 layers, hidden 4096, 32q/8kv heads of 128, FFN 14336,
  vocab 128256): prefill of B sequences of S tokens (logits of the last token only) and
  one decode step of B sequences at context C;
* one tensor-parallel rank of a Llama-3.1-70B-shaped model under TP 4 (80 layers, hidden
  8192, 16q/2kv heads, FFN 7168, a quarter of the vocabulary in the LM head). The TP
  all-reduces (two per layer) and the logits gather are NOT included on one GPU;
* one expert-parallel rank of a DeepSeek-V3-shaped MoE layer under EP 4: router on the
  rank's T tokens (sigmoid, top-8 of 256), the shared expert on those T tokens, and the
  rank's 64 local experts on the token-expert pairs it would receive when all 4 ranks' 4T
  tokens are routed uniformly at random (top-8 of 256, seeded), weighted and summed per
  token. The dispatch/combine all-to-all is NOT included on one GPU.

The layer (pre-norm, fused QKV, RoPE, SDPA, SiLU-gated MLP, residuals) is written out in
plain torch; the KV cache is a pre-allocated uniform ``[B, Hkv, C, D]`` tensor per layer.
Prefill attention is causal SDPA (``enable_gqa`` or repeat_kv, as ``calibration.bench``);
decode packs the query heads of a KV group as query rows (``pack_q``). Each step is timed
eagerly and as a CUDA-graph replay (``seconds`` is the graph replay, ``seconds_eager`` the
eager step; ``cuda_graph`` says whether capture succeeded). These tables are ground truth
for the simulator and are kept apart from the profile that predicts them.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from calibration.bench.common import CsvTable


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
    """One EP rank's share of a DeepSeek-V3-shaped MoE layer."""

    name: str
    hidden: int
    moe_inter: int
    routed_experts: int
    top_k: int
    ep: int
    shared_experts: int = 1

    @property
    def local_experts(self) -> int:
        return self.routed_experts // self.ep


LLAMA_8B = DenseConfig("llama-3.1-8b", 32, 4096, 32, 8, 128, 14336, 128256)
LLAMA_70B_TP4 = DenseConfig("llama-3.1-70b", 80, 8192, 64 // 4, 8 // 4, 128, 28672 // 4, 128256 // 4, tp=4)
DSV3_MOE_EP4 = MoEConfig("deepseek-v3", 7168, 2048, 256, 8, 4)

LLAMA_8B_PREFILL = ((1, 512), (1, 2048), (4, 1024), (1, 8192), (8, 2048))
LLAMA_8B_DECODE = ((1, 1024), (16, 1024), (64, 2048), (128, 4096), (256, 1024))
LLAMA_70B_PREFILL = ((1, 512), (1, 2048), (4, 2048), (1, 8192))
LLAMA_70B_DECODE = ((1, 2048), (32, 2048), (128, 4096), (256, 2048))
MOE_TOKENS = (128, 256, 512, 1024, 2048, 4096, 8192)

TINY_DENSE = DenseConfig("tiny-dense", 2, 64, 4, 2, 16, 128, 256)
TINY_MOE = MoEConfig("tiny-moe", 64, 32, 16, 4, 4)

PREFILL_COLUMNS = ["model", "tp", "layers", "batch", "seq", "seconds", "seconds_eager", "cuda_graph"]
DECODE_COLUMNS = ["model", "tp", "layers", "batch", "context", "seconds", "seconds_eager", "cuda_graph"]
MOE_COLUMNS = ["model", "ep", "local_experts", "tokens_per_rank", "impl", "received_pairs",
               "max_tokens_per_expert", "mean_tokens_per_expert", "seed", "seconds",
               "seconds_eager", "cuda_graph"]


# ----------------------------------------------------------------------------- timing


def time_step(fn, device: str, repeats: int = 7, use_graph: bool = True) -> tuple[float, float, bool]:
    """(graph seconds, eager seconds, graph used) for a step ``fn`` with static inputs."""
    import torch

    if not device.startswith("cuda"):
        fn()
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        t = statistics.median(ts)
        return t, t, False
    fn()
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def median_of(call):
        ts = []
        for _ in range(repeats):
            start.record()
            call()
            end.record()
            end.synchronize()
            ts.append(start.elapsed_time(end) * 1e-3)
        return statistics.median(ts)

    eager = median_of(fn)
    if not use_graph:
        return eager, eager, False
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        graph.replay()
        torch.cuda.synchronize()
        t = median_of(graph.replay)
        del graph
        return t, eager, True
    except Exception as exc:  # record, fall back to eager
        print(f"  graph capture failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        torch.cuda.synchronize()
        return eager, eager, False


# ----------------------------------------------------------------------------- dense model


class DenseModel:
    """Random-weight decoder for one rank; ``prefill`` and ``decode`` build step closures."""

    def __init__(self, cfg: DenseConfig, device: str, seed: int = 0):
        import torch

        self.cfg, self.device = cfg, torch.device(device)
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

    def _probe_gqa(self) -> str:
        """'enable_gqa' if the preferred SDPA backend accepts it here, else 'repeat_kv'."""
        import torch

        c = self.cfg
        if c.heads_q == c.heads_kv:
            return "none"
        q = torch.randn(1, c.heads_q, 16, c.head_dim, device=self.device, dtype=torch.bfloat16)
        k = torch.randn(1, c.heads_kv, 16, c.head_dim, device=self.device, dtype=torch.bfloat16)
        try:
            self._sdpa(q, k, k, True, gqa=True)
            return "enable_gqa"
        except Exception:
            return "repeat_kv"

    def _sdpa(self, q, k, v, causal: bool, gqa: bool = False):
        import torch.nn.functional as F

        if self.device.type == "cuda":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                              SDPBackend.EFFICIENT_ATTENTION]):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)

    def _rope_tables(self, positions):
        import torch

        d = self.cfg.head_dim
        inv = 1.0 / (500000.0 ** (torch.arange(0, d, 2, device=self.device, dtype=torch.float32) / d))
        ang = positions.float()[:, None] * inv[None, :]
        ang = torch.cat((ang, ang), dim=-1)
        return ang.cos().to(torch.bfloat16), ang.sin().to(torch.bfloat16)

    @staticmethod
    def _rope(x, cos, sin):
        import torch

        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def _mlp(self, L, x):
        import torch.nn.functional as F

        h = F.rms_norm(x, (x.shape[-1],), L["n2"], 1e-5)
        gu = h @ L["wgu"].t()
        f = self.cfg.ffn
        return x + (F.silu(gu[..., :f]) * gu[..., f:]) @ L["wd"].t()

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
                qkv = (h @ L["wqkv"].t()).view(batch, seq, hq + 2 * hkv, d)
                q = self._rope(qkv[:, :, :hq], cos, sin).transpose(1, 2)
                k = self._rope(qkv[:, :, hq:hq + hkv], cos, sin).transpose(1, 2)
                v = qkv[:, :, hq + hkv:].transpose(1, 2)
                kc.copy_(k)
                vc.copy_(v)
                if self.gqa_mode == "repeat_kv":
                    a = self._sdpa(q, kc.repeat_interleave(rep, 1), vc.repeat_interleave(rep, 1), True)
                else:
                    a = self._sdpa(q, kc, vc, True, gqa=self.gqa_mode == "enable_gqa")
                x = x + a.transpose(1, 2).reshape(batch, seq, hq * d) @ L["wo"].t()
                x = self._mlp(L, x)
            last = F.rms_norm(x[:, -1], (c.hidden,), self.norm, 1e-5)
            return last @ self.lm_head.t()

        return step

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
                qkv = (h @ L["wqkv"].t()).view(batch, hq + 2 * hkv, d)
                q = self._rope(qkv[:, :hq], cos, sin)
                k = self._rope(qkv[:, hq:hq + hkv], cos, sin)
                kc[:, :, context].copy_(k)
                vc[:, :, context].copy_(qkv[:, hq + hkv:])
                a = self._sdpa(q.view(batch, hkv, grp, d), kc, vc, False)  # pack_q GQA
                x = x + a.reshape(batch, hq * d) @ L["wo"].t()
                x = self._mlp(L, x)
            return F.rms_norm(x, (c.hidden,), self.norm, 1e-5) @ self.lm_head.t()

        return step


# ----------------------------------------------------------------------------- MoE layer


def uniform_routing(cfg: MoEConfig, tokens_per_rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Expert ids and source-token ids of the pairs landing on rank 0's experts.

    All ``ep`` ranks' tokens choose ``top_k`` distinct experts uniformly at random; the pairs
    whose expert is one of rank 0's ``local_experts`` are returned sorted by expert.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    n = tokens_per_rank * cfg.ep
    choice = np.argsort(rng.random((n, cfg.routed_experts)), axis=1)[:, : cfg.top_k]
    tok = np.repeat(np.arange(n), cfg.top_k)
    exp = choice.reshape(-1)
    keep = exp < cfg.local_experts
    tok, exp = tok[keep], exp[keep]
    order = np.argsort(exp, kind="stable")
    return exp[order], tok[order]


class MoELayer:
    """One EP rank's MoE layer; ``step(tokens_per_rank, seed)`` builds a step closure."""

    def __init__(self, cfg: MoEConfig, device: str, seed: int = 0):
        import torch

        self.cfg, self.device = cfg, torch.device(device)
        g = torch.Generator(device=self.device).manual_seed(seed)
        h, f = cfg.hidden, cfg.moe_inter

        def w(*shape, scale):
            return (torch.randn(*shape, generator=g, device=self.device) * scale).to(torch.bfloat16)

        self.router = w(cfg.routed_experts, h, scale=h**-0.5)
        self.shared_gu = w(2 * f * cfg.shared_experts, h, scale=h**-0.5)
        self.shared_d = w(h, f * cfg.shared_experts, scale=f**-0.5)
        self.w1 = [w(2 * f, h, scale=h**-0.5) for _ in range(cfg.local_experts)]
        self.w2 = [w(h, f, scale=f**-0.5) for _ in range(cfg.local_experts)]
        # the same weights stacked for the ragged grouped GEMM (column-major B operands)
        self.w1_g = torch.stack(self.w1).transpose(-2, -1)  # [E, h, 2f]
        self.w2_g = torch.stack(self.w2).transpose(-2, -1)  # [E, f, h]
        self.impl = "loop"
        if hasattr(torch, "_grouped_mm") and self.device.type == "cuda":
            try:  # probe once: the kernel needs sm90 and these layouts
                probe = torch.zeros(2 * cfg.local_experts, h, device=self.device, dtype=torch.bfloat16)
                offs = torch.arange(1, cfg.local_experts + 1, device=self.device, dtype=torch.int32) * 2
                torch._grouped_mm(probe, self.w1_g, offs=offs, out_dtype=torch.bfloat16)
                torch.cuda.synchronize()
                self.impl = "grouped_mm"
            except Exception as exc:  # noqa: BLE001 - any failure means: measure the loop
                print(f"grouped_mm unavailable ({type(exc).__name__}: {exc}); using the per-expert loop")

    def step(self, tokens_per_rank: int, seed: int):
        import torch
        import torch.nn.functional as F

        c, dev = self.cfg, self.device
        exp, tok = uniform_routing(c, tokens_per_rank, seed)
        counts = np.bincount(exp, minlength=c.local_experts)
        offsets = np.concatenate(([0], np.cumsum(counts)))
        uniq, inverse = np.unique(tok, return_inverse=True)
        x = torch.randn(tokens_per_rank, c.hidden, device=dev, dtype=torch.bfloat16)
        recv = torch.randn(len(uniq), c.hidden, device=dev, dtype=torch.bfloat16)  # dispatched tokens
        pair_src = torch.as_tensor(inverse, device=dev)
        pair_w = torch.rand(len(tok), 1, device=dev, dtype=torch.bfloat16)
        out = torch.empty(len(uniq), c.hidden, device=dev, dtype=torch.bfloat16)
        f = c.moe_inter
        offs_t = torch.as_tensor(offsets[1:], device=dev, dtype=torch.int32)
        info = dict(received_pairs=int(len(tok)), max_tokens_per_expert=int(counts.max(initial=0)),
                    mean_tokens_per_expert=float(counts.mean()), impl=self.impl)

        def run():
            # router on local tokens (its choice feeds the dispatch, not timed here)
            scores = torch.sigmoid((x @ self.router.t()).float())
            torch.topk(scores, c.top_k, dim=-1)
            # shared expert on local tokens
            gu = x @ self.shared_gu.t()
            shared = (F.silu(gu[:, :f]) * gu[:, f:]) @ self.shared_d.t()
            # routed experts on received pairs, then weighted sum per received token
            xs = recv.index_select(0, pair_src)
            if self.impl == "grouped_mm":
                h = torch._grouped_mm(xs, self.w1_g, offs=offs_t, out_dtype=torch.bfloat16)
                ys = torch._grouped_mm(F.silu(h[:, :f]) * h[:, f:], self.w2_g, offs=offs_t,
                                       out_dtype=torch.bfloat16)
                out.zero_()
                out.index_add_(0, pair_src, ys * pair_w)
                return shared, out
            ys = torch.empty_like(xs)
            for e in range(c.local_experts):
                a, b = int(offsets[e]), int(offsets[e + 1])
                if b > a:
                    h = xs[a:b] @ self.w1[e].t()
                    ys[a:b] = (F.silu(h[:, :f]) * h[:, f:]) @ self.w2[e].t()
            out.zero_()
            out.index_add_(0, pair_src, ys * pair_w)
            return shared, out

        return run, info


# ----------------------------------------------------------------------------- driver


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_dense(out_dir: Path, cfg: DenseConfig, prefill_pts, decode_pts, device: str, deadline: float) -> None:
    import torch

    pre = CsvTable(out_dir / "gt_dense_prefill.csv", PREFILL_COLUMNS, ["model", "tp", "layers", "batch", "seq"])
    dec = CsvTable(out_dir / "gt_dense_decode.csv", DECODE_COLUMNS, ["model", "tp", "layers", "batch", "context"])
    # (table, phase, length column, points not yet measured, timing repeats)
    phases = [(pre, "prefill", "seq", prefill_pts, 5), (dec, "decode", "context", decode_pts, 9)]
    ident = dict(model=cfg.name, tp=cfg.tp, layers=cfg.layers)
    phases = [(t, ph, col, [p for p in pts if not t.has(**ident, batch=p[0], **{col: p[1]})], reps)
              for t, ph, col, pts, reps in phases]
    if not any(todo for _, _, _, todo, _ in phases) or time.monotonic() > deadline:
        return
    t0 = time.monotonic()
    model = DenseModel(cfg, device)
    _log(f"{cfg.name} tp{cfg.tp}: built in {time.monotonic() - t0:.1f}s (gqa {model.gqa_mode})")
    for table, phase, col, todo, reps in phases:
        build = model.prefill if phase == "prefill" else model.decode
        for b, length in todo:
            if time.monotonic() > deadline:
                _log("ground truth: time budget reached")
                return
            t, te, gr = time_step(build(b, length), device, repeats=reps)
            table.append(dict(**ident, batch=b, **{col: length}, seconds=t, seconds_eager=te, cuda_graph=gr))
            _log(f"  {phase} b={b} {col[0]}={length}: {t * 1e3:.2f} ms (eager {te * 1e3:.2f})")
            _free(torch)
    del model
    _free(torch)


def run_moe(out_dir: Path, cfg: MoEConfig, tokens, device: str, deadline: float, seed: int = 20250101) -> None:
    import torch

    tab = CsvTable(out_dir / "gt_moe_layer.csv", MOE_COLUMNS, ["model", "ep", "tokens_per_rank", "seed"])
    todo = [t for t in tokens if not tab.has(model=cfg.name, ep=cfg.ep, tokens_per_rank=t, seed=seed + t)]
    if not todo or time.monotonic() > deadline:
        return
    layer = MoELayer(cfg, device)
    for t_rank in todo:
        if time.monotonic() > deadline:
            _log("ground truth: time budget reached")
            return
        step, info = layer.step(t_rank, seed + t_rank)
        t, te, gr = time_step(step, device, repeats=7)
        tab.append(dict(model=cfg.name, ep=cfg.ep, local_experts=cfg.local_experts,
                        tokens_per_rank=t_rank, seed=seed + t_rank, seconds=t, seconds_eager=te,
                        cuda_graph=gr, **info))
        _log(f"  moe T={t_rank} pairs={info['received_pairs']} max/expert={info['max_tokens_per_expert']}:"
             f" {t * 1e3:.2f} ms (eager {te * 1e3:.2f})")
        _free(torch)
    del layer
    _free(torch)


def _free(torch) -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibration.groundtruth", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", default=None)
    p.add_argument("--quick", action="store_true", help="tiny models (CPU tests)")
    p.add_argument("--layers", type=int, default=None, help="override layer counts (smoke runs)")
    p.add_argument("--max-points", type=int, default=None, help="first N points of each list (smoke runs)")
    p.add_argument("--parts", default="llama8b,llama70b_tp4,moe_ep4")
    p.add_argument("--max-seconds", type=float, default=None)
    args = p.parse_args(argv)
    import torch

    from calibration import metadata

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    deadline = math.inf if args.max_seconds is None else time.monotonic() + args.max_seconds
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    n = args.max_points

    def cut(pts):
        return pts[:n] if n else pts

    def lay(cfg):
        return replace(cfg, layers=args.layers) if args.layers else cfg

    parts = args.parts.split(",")
    if args.quick:
        tiny = lay(TINY_DENSE)
        if "llama8b" in parts:
            run_dense(out, tiny, ((1, 8), (2, 16)), ((1, 8), (3, 16)), device, deadline)
        if "moe_ep4" in parts:
            run_moe(out, TINY_MOE, (4, 16), device, deadline)
    else:
        if "llama8b" in parts:
            run_dense(out, lay(LLAMA_8B), cut(LLAMA_8B_PREFILL), cut(LLAMA_8B_DECODE), device, deadline)
        if "llama70b_tp4" in parts:
            run_dense(out, lay(LLAMA_70B_TP4), cut(LLAMA_70B_PREFILL), cut(LLAMA_70B_DECODE), device, deadline)
        if "moe_ep4" in parts:
            run_moe(out, DSV3_MOE_EP4, cut(MOE_TOKENS), device, deadline)
    meta = metadata.collect(device, extra={
        "kind": "ground truth (whole-model steps, one GPU)",
        "quick": args.quick, "layers_override": args.layers, "parts": parts,
        "weights": "random bf16 (seeded); activations bf16",
        "excluded": ["llama-3.1-70b tp4: the 2 TP all-reduces per layer and the vocab-parallel logits gather",
                     "deepseek-v3 ep4: dispatch/combine all-to-all; the router's own choice does not drive "
                     "the dispatch (uniform random routing over all 4 ranks' tokens does, seeded)"],
        "timing": "CUDA events; median of 5-9 repeats after 2 warm-ups; 'seconds' is a CUDA-graph replay "
                  "of the whole step when cuda_graph=1, 'seconds_eager' the eager step",
        "attention": "SDPA (flash preferred); prefill GQA via enable_gqa or repeat_kv; decode GQA via pack_q",
        "kv_cache": "pre-allocated uniform [B, Hkv, C+1, D] per layer (bf16), random history",
        "moe_experts": "torch._grouped_mm (ragged, CUTLASS) over pairs sorted by expert when available (impl column), else a loop of per-expert matmuls; then index_add_",
    })
    metadata.write(out / "groundtruth_metadata.json", meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
