"""DeepSeek-style MoE layer (router, shared experts, routed experts, weighted scatter) in torch.

One expert-parallel rank: the router and the shared experts run on the rank's own T tokens; the
routed experts run on the token-expert pairs the rank would receive when all ``ep`` ranks'
tokens route uniformly at random (top-k of E, seeded; :func:`uniform_routing`), sorted by
expert, through ``torch._grouped_mm`` (ragged, CUTLASS) where available, else a loop of
per-expert matmuls; the weighted outputs are summed per received token with ``index_add_``.
``ep=1`` is the whole layer on one GPU. The dispatch/combine all-to-all is not included.
:class:`MoEBlock` is also the MoE FFN of the whole-model MLA ground truth (``mla.py``).

:class:`Fp8MoEBlock` is the same layer with FP8 (e4m3) expert and shared-expert weights, one fp32
scale per output channel, as plain torch serves an FP8 checkpoint: the rank's T tokens are
quantised per row once (``calibration.bench.elementwise.quant_fp8_rowwise``; an FP8 dispatch
sends them so) and feed the shared experts' ``torch._scaled_mm``; the received rows arrive in
e4m3 with their scales (prepared outside the step, as a dispatch delivers them), are gathered per
pair and run ``torch._scaled_grouped_mm`` (else a loop of ``torch._scaled_mm`` per expert); the
SwiGLU output is quantised again before each down projection. The router stays BF16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration.bench.elementwise import quant_fp8_rowwise
from calibration.groundtruth.common import log, random_weight
from calibration.groundtruth.configs import MoEConfig


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


@dataclass(frozen=True)
class Route:
    """One step's routing on one rank, as static device tensors (graph-capturable).

    ``pair_src[i]`` is the received row of pair i (pairs sorted by expert), ``offs`` the
    cumulative pair count per local expert (int32, ``torch._grouped_mm``'s ``offs``),
    ``offsets`` the same on the host (with a leading 0) for the per-expert loop."""

    rows: int
    pair_src: object
    pair_w: object
    offs: object
    offsets: tuple[int, ...]
    info: dict


def make_route(cfg: MoEConfig, tokens_per_rank: int, seed: int, device) -> Route:
    import torch

    exp, tok = uniform_routing(cfg, tokens_per_rank, seed)
    counts = np.bincount(exp, minlength=cfg.local_experts)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    uniq, inverse = np.unique(tok, return_inverse=True)
    info = dict(received_pairs=int(len(tok)), experts_touched=int((counts > 0).sum()),
                max_tokens_per_expert=int(counts.max(initial=0)), mean_tokens_per_expert=float(counts.mean()))
    return Route(rows=int(len(uniq)), pair_src=torch.as_tensor(inverse, device=device),
                 pair_w=torch.rand(len(tok), 1, device=device, dtype=torch.bfloat16),
                 offs=torch.as_tensor(offsets[1:], device=device, dtype=torch.int32),
                 offsets=tuple(int(o) for o in offsets), info=info)


def grouped_mm_works(device, hidden: int, experts: int, w_g) -> bool:
    """Whether ``torch._grouped_mm`` runs here on these (column-major) expert weights."""
    import torch

    if not hasattr(torch, "_grouped_mm") or device.type != "cuda":
        return False
    try:  # the kernel needs sm90 and these layouts
        probe = torch.zeros(2 * experts, hidden, device=device, dtype=torch.bfloat16)
        offs = torch.arange(1, experts + 1, device=device, dtype=torch.int32) * 2
        torch._grouped_mm(probe, w_g, offs=offs, out_dtype=torch.bfloat16)
        torch.cuda.synchronize()
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means: measure the loop
        log(f"grouped_mm unavailable ({type(exc).__name__}: {exc}); using the per-expert loop")
        return False


class MoEBlock:
    """One MoE layer's weights on one rank and its forward pieces (router, shared, routed)."""

    def __init__(self, cfg: MoEConfig, device, gen, impl: str | None = None):
        import torch

        self.cfg, self.device = cfg, torch.device(device)
        h, f, e = cfg.hidden, cfg.moe_inter, cfg.local_experts
        self.router = random_weight(gen, (cfg.routed_experts, h), h**-0.5, self.device)
        self.shared_gu = random_weight(gen, (2 * f * cfg.shared_experts, h), h**-0.5, self.device)
        self.shared_d = random_weight(gen, (h, f * cfg.shared_experts), f**-0.5, self.device)
        self.w1 = random_weight(gen, (e, 2 * f, h), h**-0.5, self.device)  # [E, 2f, h]
        self.w2 = random_weight(gen, (e, h, f), f**-0.5, self.device)  # [E, h, f]
        # the same weights as the column-major B operands of the ragged grouped GEMM
        self.w1_g, self.w2_g = self.w1.transpose(-2, -1), self.w2.transpose(-2, -1)
        self.impl = impl or ("grouped_mm" if grouped_mm_works(self.device, h, e, self.w1_g) else "loop")

    def route_scores(self, x):
        """Router logits, scores and top-k (the choice is not used: routing is seeded uniform)."""
        import torch

        logits = (x @ self.router.t()).float()
        scores = torch.sigmoid(logits) if self.cfg.scoring == "sigmoid" else torch.softmax(logits, dim=-1)
        return torch.topk(scores, self.cfg.top_k, dim=-1)

    def shared(self, x):
        import torch.nn.functional as F

        f = self.cfg.moe_inter * self.cfg.shared_experts
        gu = x @ self.shared_gu.t()
        return (F.silu(gu[:, :f]) * gu[:, f:]) @ self.shared_d.t()

    def routed(self, recv, route: Route, out):
        """Experts on the received rows' pairs, weighted and summed into ``out`` (rows x h)."""
        import torch
        import torch.nn.functional as F

        f = self.cfg.moe_inter
        xs = recv.index_select(0, route.pair_src)
        if self.impl == "grouped_mm":
            h = torch._grouped_mm(xs, self.w1_g, offs=route.offs, out_dtype=torch.bfloat16)
            ys = torch._grouped_mm(F.silu(h[:, :f]) * h[:, f:], self.w2_g, offs=route.offs,
                                   out_dtype=torch.bfloat16)
        else:
            ys = torch.empty_like(xs)
            for e in range(self.cfg.local_experts):
                a, b = route.offsets[e], route.offsets[e + 1]
                if b > a:
                    h = xs[a:b] @ self.w1[e].t()
                    ys[a:b] = (F.silu(h[:, :f]) * h[:, f:]) @ self.w2[e].t()
        out.zero_()
        out.index_add_(0, route.pair_src, ys * route.pair_w)
        return out


class MoELayer:
    """One EP rank's MoE layer; ``step(tokens_per_rank, seed)`` builds a step closure."""

    #: the layer's weights and forward pieces
    BLOCK = MoEBlock

    def __init__(self, cfg: MoEConfig, device: str, seed: int = 0):
        import torch

        self.cfg, self.device = cfg, torch.device(device)
        self.block = self.BLOCK(cfg, self.device, torch.Generator(device=self.device).manual_seed(seed))
        self.impl, self.w1_g, self.w2_g = self.block.impl, self.block.w1_g, self.block.w2_g

    def step(self, tokens_per_rank: int, seed: int):
        """(closure, info): router + shared expert on T local tokens, routed experts on the
        received pairs; info holds the routing counts and the implementation."""
        import torch

        c, dev = self.cfg, self.device
        route = make_route(c, tokens_per_rank, seed, dev)
        x = torch.randn(tokens_per_rank, c.hidden, device=dev, dtype=torch.bfloat16)
        recv = torch.randn(route.rows, c.hidden, device=dev, dtype=torch.bfloat16)  # dispatched tokens
        out = torch.empty(route.rows, c.hidden, device=dev, dtype=torch.bfloat16)
        blk = self.block

        def run():
            blk.route_scores(x)
            shared = blk.shared(x)
            return shared, blk.routed(recv, route, out)

        return run, dict(route.info, impl=self.impl)


def _fp8(w):
    """e4m3 copy of BF16 weights (values ~N(0, 1/h) sit well inside e4m3's range: unit scales)."""
    import torch

    return w.to(torch.float8_e4m3fn)


def scaled_grouped_mm_works(device, xq, w_g, scale_b) -> bool:
    """Whether ``torch._scaled_grouped_mm`` runs here on these e4m3 operands."""
    import torch

    if not hasattr(torch, "_scaled_grouped_mm") or device.type != "cuda":
        return False
    try:
        g = w_g.shape[0]
        rows = xq[: 2 * g] if xq.shape[0] >= 2 * g else xq.new_zeros(2 * g, xq.shape[1])
        offs = torch.arange(1, g + 1, device=device, dtype=torch.int32) * 2
        torch._scaled_grouped_mm(rows, w_g, torch.ones(2 * g, device=device), scale_b, offs=offs,
                                 out_dtype=torch.bfloat16)
        torch.cuda.synchronize()
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means: measure the loop
        log(f"_scaled_grouped_mm unavailable ({type(exc).__name__}: {exc}); using a loop of _scaled_mm")
        return False


class Fp8MoEBlock(MoEBlock):
    """:class:`MoEBlock` with FP8 expert and shared-expert weights (see the module docstring)."""

    def __init__(self, cfg: MoEConfig, device, gen):
        import torch

        super().__init__(cfg, device, gen, impl="loop")  # BF16 draws, converted and released below
        dev, e, f, h = self.device, cfg.local_experts, cfg.moe_inter, cfg.hidden
        self.shared_gu, self.shared_d = _fp8(self.shared_gu), _fp8(self.shared_d)
        self.w1, self.w2 = _fp8(self.w1), _fp8(self.w2)
        self.w1_g, self.w2_g = self.w1.transpose(-2, -1), self.w2.transpose(-2, -1)
        ones = lambda *shape: torch.ones(*shape, device=dev, dtype=torch.float32)  # noqa: E731
        self.s_gu, self.s_d = ones(1, self.shared_gu.shape[0]), ones(1, h)
        self.s1, self.s2 = ones(e, 2 * f), ones(e, h)
        if dev.type == "cuda":  # give the released BF16 copies back before the probe
            torch.cuda.empty_cache()
        probe = _fp8(torch.zeros(1, h, device=dev, dtype=torch.bfloat16))
        self.impl = "scaled_grouped_mm" if scaled_grouped_mm_works(dev, probe, self.w1_g, self.s1) else "scaled_mm_loop"

    def shared_q(self, xq, sx):
        """Shared experts on the rank's quantised tokens (e4m3 ``xq``, row scales ``sx``)."""
        import torch
        import torch.nn.functional as F

        f = self.cfg.moe_inter * self.cfg.shared_experts
        gu = torch._scaled_mm(xq, self.shared_gu.t(), scale_a=sx, scale_b=self.s_gu, out_dtype=torch.bfloat16)
        aq, sa = quant_fp8_rowwise(F.silu(gu[:, :f]) * gu[:, f:])
        return torch._scaled_mm(aq, self.shared_d.t(), scale_a=sa, scale_b=self.s_d, out_dtype=torch.bfloat16)

    def routed_q(self, recv_q, recv_s, route: Route, out):
        """Experts on the received e4m3 rows' pairs (row scales ``recv_s``), weighted and summed
        into ``out`` (rows x h, BF16)."""
        import torch
        import torch.nn.functional as F

        f = self.cfg.moe_inter
        # gather e4m3 rows as bytes (index_select has no float8 kernel everywhere)
        xs = recv_q.view(torch.uint8).index_select(0, route.pair_src).view(torch.float8_e4m3fn)
        sx = recv_s.index_select(0, route.pair_src)
        if self.impl == "scaled_grouped_mm":
            h = torch._scaled_grouped_mm(xs, self.w1_g, sx.reshape(-1), self.s1, offs=route.offs,
                                         out_dtype=torch.bfloat16)
            aq, sa = quant_fp8_rowwise(F.silu(h[:, :f]) * h[:, f:])
            ys = torch._scaled_grouped_mm(aq, self.w2_g, sa.reshape(-1), self.s2, offs=route.offs,
                                          out_dtype=torch.bfloat16)
        else:
            ys = torch.empty(xs.shape[0], self.cfg.hidden, device=xs.device, dtype=torch.bfloat16)
            for e in range(self.cfg.local_experts):
                a, b = route.offsets[e], route.offsets[e + 1]
                if b > a:
                    h = torch._scaled_mm(xs[a:b], self.w1[e].t(), scale_a=sx[a:b], scale_b=self.s1[e:e + 1],
                                         out_dtype=torch.bfloat16)
                    aq, sa = quant_fp8_rowwise(F.silu(h[:, :f]) * h[:, f:])
                    ys[a:b] = torch._scaled_mm(aq, self.w2[e].t(), scale_a=sa, scale_b=self.s2[e:e + 1],
                                               out_dtype=torch.bfloat16)
        out.zero_()
        out.index_add_(0, route.pair_src, ys * route.pair_w)
        return out


class Fp8MoELayer(MoELayer):
    """One EP rank's FP8 MoE layer (:class:`Fp8MoEBlock`); ``step`` as :class:`MoELayer`'s."""

    BLOCK = Fp8MoEBlock

    def step(self, tokens_per_rank: int, seed: int):
        """(closure, info): router on T local tokens (BF16), their row quantisation, shared experts
        (FP8), routed experts on the received e4m3 pairs; info holds the routing counts."""
        import torch

        c, dev, blk = self.cfg, self.device, self.block
        route = make_route(c, tokens_per_rank, seed, dev)
        x = torch.randn(tokens_per_rank, c.hidden, device=dev, dtype=torch.bfloat16)
        recv_q, recv_s = quant_fp8_rowwise(torch.randn(route.rows, c.hidden, device=dev, dtype=torch.bfloat16))
        out = torch.empty(route.rows, c.hidden, device=dev, dtype=torch.bfloat16)

        def run():
            blk.route_scores(x)
            xq, sx = quant_fp8_rowwise(x)
            shared = blk.shared_q(xq, sx)
            return shared, blk.routed_q(recv_q, recv_s, route, out)

        return run, dict(route.info, impl=self.impl)
