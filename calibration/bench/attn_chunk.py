"""Prefill attention of a chunk after cached context (``attn_prefill_ctx_bf16.csv``, suite ``attn_prefill_ctx``).

What chunked prefill's later chunks, prefix-cache hits and P/D chunks run: ``B`` sequences of ``n``
new tokens, each after ``c`` tokens already in the KV cache. bf16 SDPA of ``q[B, Hq, n, Dqk]``
against ``k[B, Hkv, c+n, Dqk]``, ``v[B, Hkv, c+n, Dv]`` with LOWER-RIGHT causal alignment (the
chunk's i-th query sees the c cached keys and the new keys up to its own position):
``torch.nn.attention.bias.causal_lower_right(n, c+n)`` as the mask
(:func:`calibration.groundtruth.common.sdpa_chunk`, the call the whole-model chunk ground truth
makes too). Torch runs it on the flash kernel (FlashAttention-2 aligns causal masks to the bottom
right, GQA native: what serving engines' varlen kernels do) or the memory-efficient kernel (its
lower-right mask type; MLA's 192/128 head dims, which flash refuses); ``backend`` names the kernel
(:func:`calibration.groundtruth.common.chunk_backend`). A shape only the materialized-mask (math)
path takes is skipped on CUDA: it is not the kernel an engine runs. At c = 0 the call is plain
causal SDPA with torch's choice, the ``attn_prefill_bf16`` measurement. GQA: ``enable_gqa``
(flash), else K/V expanded once outside the timed call (``gqa_impl = repeat_kv``).

Grid (:data:`CONFIGS`): Llama-3.1-8B heads (32q/8kv, d 128), DeepSeek MLA non-absorbed prefill
(128q/128kv, 192/128) and, as a hold-out head configuration, 64q/8kv (Llama-3.1-70B TP 1: the
lookup answers it by its equivalent-batch rule from 32q/8kv); batch 1..8, n = 128..4096, c = 0..64K,
trimmed by the K/V bytes of one input set (:data:`MAX_KV_BYTES`) and the FLOPs of one call
(:data:`MAX_FLOPS`). ``split`` (fit | holdout) is fixed here, before measuring: c = 0 rows are
fit (the anchors of the interpolation in context); the others a checkerboard over (n, c) per head
configuration; the 64q/8kv configuration is all holdout. FLOPs: ``2*B*Hq*pairs*(Dqk+Dv)`` with
``pairs = n*c + n(n+1)/2`` per sequence (``workloads.accounting.attention_pairs``).
"""

from __future__ import annotations

from calibration.bench.common import BenchContext, free_cuda, rotation_count, time_calls
from calibration.store import CsvTable

TABLE = "attn_prefill_ctx_bf16"
#: (hq, hkv, dqk, dv, label, batches, news, holdout config)
CONFIGS = (
    (32, 8, 128, 128, "llama-3.1-8b", (1, 2, 4, 8), (128, 256, 512, 1024, 2048, 4096), False),
    (128, 128, 192, 128, "deepseek mla non-absorbed prefill", (1, 2, 4, 8), (128, 256, 512, 1024, 2048, 4096),
     False),
    (64, 8, 128, 128, "llama-3.1-70b tp1 (holdout head config)", (1, 4), (256, 1024, 4096), True),
)
CONTEXTS = (0, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
QUICK_CONFIGS = ((4, 2, 32, 32, "tiny", (1, 2), (8, 16), False), (4, 4, 48, 32, "tiny mla", (1,), (8, 16), False),
                 (8, 2, 32, 32, "tiny holdout heads", (1,), (16,), True))
QUICK_CONTEXTS = (0, 16, 32, 64)
MAX_KV_BYTES = 8e9  # K and V of one input set: B * (c+n) * Hkv * (Dqk+Dv) * 2 bytes
MAX_FLOPS = 1.2e13  # one call (about 20-40 ms on an H200)

COLUMNS = ["batch", "new", "context", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v", "split", "seconds",
           "pairs", "tflops", "backend", "gqa_impl", "method"]
KEY = ["batch", "new", "context", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v"]


def pairs_per_seq(n: int, c: int) -> float:
    """(query, key) pairs of one sequence: ``n*c + n(n+1)/2`` (lower-right causal)."""
    from workloads.accounting import attention_pairs

    return attention_pairs(n, c, True)


def kv_bytes(b: int, n: int, c: int, hkv: int, dqk: int, dv: int) -> float:
    return 2.0 * b * (c + n) * hkv * (dqk + dv)


def flops(b: int, n: int, c: int, hq: int, dqk: int, dv: int) -> float:
    return 2.0 * b * hq * pairs_per_seq(n, c) * (dqk + dv)  # QK^T (Dqk) and PV (Dv), 2 FLOPs per MAC


def split_of(ni: int, ci: int, context: int, holdout_config: bool) -> str:
    """``fit`` | ``holdout`` of a point at n index ``ni`` and context index ``ci`` (see module docstring)."""
    if holdout_config:
        return "holdout"
    if context == 0:
        return "fit"
    return "fit" if (ni + ci) % 2 == 0 else "holdout"


def points(ctx: BenchContext) -> list[dict]:
    """Every point of the grid, in measuring order, with its ``split``."""
    configs, contexts = (QUICK_CONFIGS, QUICK_CONTEXTS) if ctx.quick else (CONFIGS, CONTEXTS)
    out = []
    for hq, hkv, dqk, dv, _, batches, news, hold in configs:
        for b in batches:
            for ni, n in enumerate(news):
                for ci, c in enumerate(contexts):
                    if kv_bytes(b, n, c, hkv, dqk, dv) > MAX_KV_BYTES or flops(b, n, c, hq, dqk, dv) > MAX_FLOPS:
                        continue
                    out.append(dict(batch=b, new=n, context=c, heads_q=hq, heads_kv=hkv, head_dim_qk=dqk,
                                    head_dim_v=dv, split=split_of(ni, ci, c, hold)))
    return out


def plan(ctx: BenchContext) -> list[tuple[float, float, float]]:
    """(FLOPs, bytes, setup bytes) per point, for ``calibration.bench.plan``."""
    out = []
    for p in points(ctx):
        b, n, c, hq, hkv, dqk, dv = (p[k] for k in KEY)
        kv = kv_bytes(b, n, c, hkv, dqk, dv)
        q_o = 2.0 * b * n * hq * (dqk + dv)
        out.append((flops(b, n, c, hq, dqk, dv), kv + q_o, (kv + q_o) * rotation_count(kv + q_o, ctx)))
    return out


def _callable(ctx: BenchContext, q, k, v):
    """(call, backend, gqa_impl) of the lower-right chunk attention
    (:func:`calibration.groundtruth.common.pick_chunk`); None where only the materialized-mask
    path would run on CUDA (not an engine's kernel)."""
    from calibration.groundtruth.common import pick_chunk, sdpa_chunk

    picked = pick_chunk(q, k, v)
    if picked is None:
        return None
    gqa_impl, backend = picked
    if gqa_impl == "repeat_kv":  # expanded once, outside the timed call
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    return (lambda: sdpa_chunk(q, k, v, gqa_impl == "enable_gqa")), backend, gqa_impl


def _measure(ctx: BenchContext, p: dict) -> tuple[float, str, str, str] | None:
    """(seconds, method, backend, gqa_impl) of one point, rotating input sets past the L2."""
    import torch

    b, n, c, hq, hkv, dqk, dv = (p[k] for k in KEY)
    dev = torch.device(ctx.device)
    nbytes = kv_bytes(b, n, c, hkv, dqk, dv) + 2.0 * b * n * hq * (dqk + dv)
    fns, backend, gqa_impl = [], "", ""
    try:
        for _ in range(rotation_count(nbytes, ctx)):
            q = torch.randn(b, hq, n, dqk, device=dev, dtype=torch.bfloat16)
            k = torch.randn(b, hkv, c + n, dqk, device=dev, dtype=torch.bfloat16)
            v = torch.randn(b, hkv, c + n, dv, device=dev, dtype=torch.bfloat16)
            picked = _callable(ctx, q, k, v)
            if picked is None:
                ctx.log(f"{TABLE} b={b} n={n} c={c} hq={hq}: only the materialized-mask path takes it; skipped")
                return None
            call, backend, gqa_impl = picked
            fns.append(call)
        q = k = v = None
        seconds, method = time_calls(fns, ctx)
        return seconds, method, backend, gqa_impl
    except Exception as exc:  # noqa: BLE001 - log the shape and go on with the grid
        ctx.log(f"{TABLE} b={b} n={n} c={c} hq={hq}: {type(exc).__name__}: {exc}")
        return None
    finally:
        fns = None
        free_cuda()


def run(ctx: BenchContext) -> None:
    table = CsvTable(ctx.out_dir / f"{TABLE}.csv", COLUMNS, KEY)
    done = 0
    for p in points(ctx):
        if table.has(**{k: p[k] for k in KEY}):
            continue
        if ctx.out_of_time():
            ctx.log(f"{TABLE}: time budget reached")
            return
        timed = _measure(ctx, p)
        if timed is None:
            continue
        seconds, method, backend, gqa_impl = timed
        b, n, c, hq, _, dqk, dv = (p[k] for k in KEY)
        table.append(dict(p, seconds=seconds, pairs=b * pairs_per_seq(n, c),
                          tflops=flops(b, n, c, hq, dqk, dv) / seconds / 1e12, backend=backend,
                          gqa_impl=gqa_impl, method=method))
        done += 1
    ctx.log(f"{TABLE}: {done} points measured, {len(table)} in table")
