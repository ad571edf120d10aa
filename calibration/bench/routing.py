"""MoE routing suite: the router's top-k and the eager weighted scatter-add of expert outputs.

These are the two routing kernels a plain-torch MoE layer runs besides its GEMMs, and neither is
bandwidth-shaped like a copy, so each gets its own table:

* ``moe_topk.csv`` - ``torch.topk(torch.sigmoid(logits.float()), k)`` on bf16 router logits
  ``[T, E]`` (cast, sigmoid, top-k: the top-k kernel dominates and is not linear in bytes);
* ``moe_scatter.csv`` - ``out.zero_(); out.index_add_(0, src, ys * w)``: expert outputs ``ys``
  ``[P, H]`` (one row per token-expert pair, sorted by expert) weighted by their gate and summed
  into ``R`` token rows. bf16 ``index_add_`` is atomics-bound. The pairs are those one of ``ep``
  ranks receives when ``tokens_all`` tokens route uniformly at random to ``top_k`` of ``E``
  experts (DeepSeek-V3 shape: E=256, k=8, H=7168), so ``R`` and the collisions per row are
  realistic.
"""

from __future__ import annotations

from calibration.bench.common import BenchContext, free_cuda, rotation_count, time_calls
from calibration.store import CsvTable

TOPK_TOKENS = tuple(2**i for i in range(0, 17))  # 1 .. 65536
TOPK_EXPERTS = ((256, 8), (160, 6), (64, 6))
SCATTER_TOKENS = tuple(2**i for i in range(5, 16))  # tokens per rank 32 .. 32768
SCATTER_SHAPES = ((256, 8, 4, 7168), (256, 8, 8, 7168), (64, 6, 4, 2048))  # (E, k, ep, H)
TOPK_COLUMNS = ["tokens", "experts", "top_k", "seconds", "method"]
TOPK_KEY = ["tokens", "experts", "top_k"]
SCATTER_COLUMNS = ["tokens_per_rank", "experts", "top_k", "ep", "hidden", "pairs", "rows", "bytes",
                   "seconds", "gbps", "method"]
SCATTER_KEY = ["tokens_per_rank", "experts", "top_k", "ep", "hidden"]


def local_pairs(tokens_per_rank: int, experts: int, top_k: int, ep: int, seed: int = 0):
    """(source-row index per pair sorted by expert, number of distinct rows) on rank 0."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = tokens_per_rank * ep
    choice = np.argsort(rng.random((n, experts)), axis=1)[:, :top_k]
    tok = np.repeat(np.arange(n), top_k)
    exp = choice.reshape(-1)
    keep = exp < experts // ep
    tok, exp = tok[keep], exp[keep]
    tok = tok[np.argsort(exp, kind="stable")]
    uniq, inverse = np.unique(tok, return_inverse=True)
    return inverse, len(uniq)


def run(ctx: BenchContext) -> None:
    import torch

    dev = torch.device(ctx.device)
    bf = torch.bfloat16
    topk = CsvTable(ctx.out_dir / "moe_topk.csv", TOPK_COLUMNS, TOPK_KEY)
    for e, k in ((16, 4),) if ctx.quick else TOPK_EXPERTS:
        for t in (1, 8) if ctx.quick else TOPK_TOKENS:
            if topk.has(tokens=t, experts=e, top_k=k) or ctx.out_of_time():
                continue
            fns = []
            for _ in range(rotation_count(t * e * 2, ctx)):
                logits = torch.randn(t, e, device=dev, dtype=bf)
                fns.append(lambda x=logits: torch.topk(torch.sigmoid(x.float()), k, dim=-1))
            seconds, method = time_calls(fns, ctx)
            topk.append(dict(tokens=t, experts=e, top_k=k, seconds=seconds, method=method))
            fns = None
            free_cuda()
    sc = CsvTable(ctx.out_dir / "moe_scatter.csv", SCATTER_COLUMNS, SCATTER_KEY)
    for e, k, ep, h in ((16, 4, 4, 64),) if ctx.quick else SCATTER_SHAPES:
        for t in (4, 16) if ctx.quick else SCATTER_TOKENS:
            if sc.has(tokens_per_rank=t, experts=e, top_k=k, ep=ep, hidden=h) or ctx.out_of_time():
                continue
            inverse, rows = local_pairs(t, e, k, ep, seed=t)
            p = len(inverse)
            if p == 0:
                continue
            nbytes = p * h * 2 * 2 + p * 2 + rows * h * 2 * 2  # read ys, write/read weighted, out
            fns = []
            for _ in range(rotation_count(nbytes, ctx)):
                src = torch.as_tensor(inverse, device=dev)
                ys = torch.randn(p, h, device=dev, dtype=bf)
                w = torch.rand(p, 1, device=dev, dtype=bf)
                out = torch.empty(rows, h, device=dev, dtype=bf)

                def call(out=out, src=src, ys=ys, w=w):
                    out.zero_()
                    out.index_add_(0, src, ys * w)

                fns.append(call)
            seconds, method = time_calls(fns, ctx)
            sc.append(dict(tokens_per_rank=t, experts=e, top_k=k, ep=ep, hidden=h, pairs=p, rows=rows,
                           bytes=nbytes, seconds=seconds, gbps=nbytes / seconds / 1e9, method=method))
            fns = None
            free_cuda()
    ctx.log(f"moe_routing: topk {len(topk)} rows, scatter {len(sc)} rows")
