"""Attention suites: causal prefill, GQA decode against a KV cache, and MLA absorbed decode.

Implementations measured (all bf16, ``torch.nn.functional.scaled_dot_product_attention``):

* **prefill** - ``q[B,Hq,S,Dqk]``, ``k[B,Hkv,S,Dqk]``, ``v[B,Hkv,S,Dv]``, ``is_causal=True``.
  Backends are tried in the order flash, cuDNN, memory-efficient; the first that runs is used
  and recorded in ``backend``. GQA uses ``enable_gqa=True`` (no KV copy); where a backend
  rejects it, K/V are expanded once with ``repeat_interleave`` outside the timed call
  (``gqa_impl=repeat_kv``). MLA prefill (Dqk=192, Dv=128) is the non-absorbed form.
* **decode** - one new token per sequence against a pre-allocated cache ``[B,Hkv,C,D]``.
  GQA is packed MQA-style: the Hq/Hkv query heads of a group become query rows,
  ``q[B,Hkv,Hq/Hkv,D]`` with ``is_causal=False`` (exact for one decode token), so the cache is
  read once per KV head (``gqa_impl=pack_q``).
* **MLA decode (absorbed)** - ``q[B,H,576]`` against the latent cache ``c[B,C,576]``; values are
  the first 512 columns of the same cache (a strided view, no copy), output ``[B,H,512]``.
  SDPA is tried with one "head" and H query rows (Dqk=576, Dv=512); when no fused backend
  takes head dim 576 it runs as two ``torch.bmm`` plus a float32 softmax (``impl=bmm``).
* **MLA decode per implementation** (``mla_decode_impls_bf16.csv``, suite ``mla_decode_impls``) -
  the same two implementations at the whole-model ground truth's shapes (C cached + 1 new keys,
  in-between batches), with the kernel torch picked for SDPA in ``backend``.
* **small-batch long-context decode** (``attn_decode_long_bf16.csv``, suite ``attn_decode_long``) -
  GQA decode at batch 1..8 and 2K..32K keys, Llama-8B and 70B TP-4 rank heads, where only a
  split over the keys can fill the GPU; ``backend`` names the kernel torch picked.

FLOPs: prefill ``2*B*Hq*S^2*(Dqk+Dv)/2`` (causal half), decode ``2*B*Hq*C*(Dqk+Dv)``.
"""

from __future__ import annotations

import math

from calibration.bench.common import BenchContext, free_cuda, rotation_count, time_calls
from calibration.store import CsvTable

PREFILL_CONFIGS = (  # (hq, hkv, dqk, dv, label)
    (32, 8, 128, 128, "llama-3.1-8b tp1 / 70b tp2"),
    (64, 8, 128, 128, "llama-3.1-70b tp1"),
    (8, 1, 128, 128, "llama-3.1-70b tp8"),
    (128, 128, 192, 128, "deepseek-v3 mla prefill"),
)
PREFILL_SEQ = tuple(2**i for i in range(7, 18))  # 128 .. 131072
PREFILL_BATCH = (1, 4, 16)
PREFILL_MAX_TOKENS = 65536  # batch*seq cap for batch > 1
PREFILL_MAX_FLOPS = 3e14

DECODE_CONFIGS = ((32, 8, 128, "llama-3.1-8b"), (64, 8, 128, "llama-3.1-70b"), (8, 1, 128, "70b tp8"))
DECODE_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
DECODE_CONTEXT = tuple(2**i for i in range(7, 18))  # 128 .. 131072
MAX_KV_BYTES = 40e9

MLA_HEADS = (16, 128)
MLA_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MLA_CONTEXT = (128, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
MLA_DQK, MLA_DV = 576, 512

PREFILL_COLUMNS = ["batch", "seq", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v", "causal",
                   "seconds", "tflops", "backend", "gqa_impl", "method"]
PREFILL_KEY = ["batch", "seq", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v"]
DECODE_COLUMNS = ["batch", "context", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v",
                  "seconds", "kv_bytes", "gbps", "tflops", "backend", "gqa_impl", "method"]
DECODE_KEY = ["batch", "context", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v"]
MLA_COLUMNS = ["batch", "context", "heads_q", "head_dim_qk", "head_dim_v", "impl", "seconds",
               "kv_bytes", "gbps", "tflops", "impl_detail", "method"]
MLA_KEY = ["batch", "context", "heads_q", "head_dim_qk", "head_dim_v", "impl"]
MLA_IMPLS = ("bmm", "sdpa")


def _backends(ctx: BenchContext):
    """SDPA backends in order of preference; None means 'let torch choose' (CPU).

    On CUDA the first candidate is the *set* {flash, cuDNN, efficient} with torch choosing
    among them per shape, exactly as the whole-model ground truth and torch-based serving
    call SDPA; forcing flash first measured decode attention up to 1.7x slower than what
    torch picks (benchmarks/attn_decode_layout_probe.py, 2026-11-29).
    """
    if not ctx.is_cuda:
        return [None]
    from torch.nn.attention import SDPBackend

    preferred = (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION)
    return [preferred, *preferred]


def _sdpa_call(backend, q, k, v, causal: bool, gqa: bool):
    import torch.nn.functional as F

    if backend is None:
        return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
    from torch.nn.attention import sdpa_kernel

    allowed = list(backend) if isinstance(backend, tuple) else [backend]

    def call():
        with sdpa_kernel(allowed):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)

    return call


def pick_sdpa(ctx: BenchContext, q, k, v, causal: bool):
    """First (backend, gqa_impl) that runs; returns (callable, backend_name, gqa_impl)."""
    import torch

    hq, hkv = q.shape[1], k.shape[1]
    errors = []
    for backend in _backends(ctx):
        name = ("auto" if backend is None else
                "torch_choice" if isinstance(backend, tuple) else backend.name.lower())
        variants = [("none", k, v, False)] if hq == hkv else [("enable_gqa", k, v, True)]
        if hq != hkv:
            rep = hq // hkv
            variants.append(("repeat_kv", None, None, False))
        for gqa_impl, kk, vv, gqa in variants:
            if gqa_impl == "repeat_kv":
                kk = k.repeat_interleave(rep, dim=1)
                vv = v.repeat_interleave(rep, dim=1)
            call = _sdpa_call(backend, q, kk, vv, causal, gqa)
            try:
                call()
                if ctx.is_cuda:
                    torch.cuda.synchronize()
                return call, name, gqa_impl
            except Exception as exc:  # backend refuses this shape; try the next
                errors.append(f"{name}/{gqa_impl}: {str(exc).splitlines()[0][:120]}")
    raise RuntimeError("no SDPA backend ran: " + "; ".join(errors))


def _time_sdpa(ctx: BenchContext, make_qkv, bytes_per_set: float, causal: bool, label: str,
               name_backend: bool = False):
    """(seconds, method, backend, gqa_impl) of SDPA on input sets from ``make_qkv()``, rotated
    past the L2; None (logged) when no backend runs the shape. ``name_backend``: ``backend``
    also names the kernel torch picked (``torch_choice:efficient_attention``)."""
    from calibration.groundtruth.common import sdpa_backend

    fns = []
    try:
        backend, gqa_impl = "", ""
        for i in range(rotation_count(bytes_per_set, ctx)):
            qkv = make_qkv()
            call, backend, gqa_impl = pick_sdpa(ctx, *qkv, causal=causal)
            if name_backend and i == 0:
                chosen = sdpa_backend(*qkv, causal)
            fns.append(call)
        qkv = None
        if name_backend:
            backend = f"{backend}:{chosen}"
        seconds, method = time_calls(fns, ctx)
        return seconds, method, backend, gqa_impl
    except Exception as exc:
        ctx.log(f"{label}: {type(exc).__name__}: {exc}")
        return None
    finally:
        fns = None
        free_cuda()


def run_prefill(ctx: BenchContext, q_view: bool = False) -> None:
    """Causal prefill grid. ``q_view``: q is the ``[B,S,Hq,D] -> [B,Hq,S,D]`` transposed view a
    model gets from its projection output (K/V contiguous, as a cache), written to
    ``attn_prefill_qview_bf16.csv``; otherwise q is contiguous ``[B,Hq,S,D]``."""
    import torch

    stem = "attn_prefill_qview_bf16" if q_view else "attn_prefill_bf16"
    table = CsvTable(ctx.out_dir / f"{stem}.csv", PREFILL_COLUMNS, PREFILL_KEY)
    dev = torch.device(ctx.device)
    configs = ((4, 2, 32, 32, "tiny"), (4, 4, 48, 32, "tiny mla")) if ctx.quick else PREFILL_CONFIGS
    seqs = (16, 64) if ctx.quick else PREFILL_SEQ
    batches = (1, 2) if ctx.quick else PREFILL_BATCH
    done = 0
    for hq, hkv, dqk, dv, _ in configs:
        for b in batches:
            for s in seqs:
                flops = 2.0 * b * hq * s * s * (dqk + dv) / 2
                if (b > 1 and b * s > PREFILL_MAX_TOKENS) or flops > PREFILL_MAX_FLOPS:
                    continue
                if table.has(batch=b, seq=s, heads_q=hq, heads_kv=hkv, head_dim_qk=dqk, head_dim_v=dv):
                    continue
                if ctx.out_of_time():
                    ctx.log("attn_prefill: time budget reached")
                    return
                def qkv(b=b, s=s, hq=hq, hkv=hkv, dqk=dqk, dv=dv):
                    if q_view:
                        q = torch.randn(b, s, hq, dqk, device=dev, dtype=torch.bfloat16).transpose(1, 2)
                    else:
                        q = torch.randn(b, hq, s, dqk, device=dev, dtype=torch.bfloat16)
                    return (q, torch.randn(b, hkv, s, dqk, device=dev, dtype=torch.bfloat16),
                            torch.randn(b, hkv, s, dv, device=dev, dtype=torch.bfloat16))

                timed = _time_sdpa(ctx, qkv, 2 * b * s * (hq * (dqk + dv) + hkv * (dqk + dv)), True,
                                   f"attn_prefill b={b} s={s} hq={hq}")
                if timed is None:
                    continue
                seconds, method, backend, gqa_impl = timed
                table.append(dict(batch=b, seq=s, heads_q=hq, heads_kv=hkv, head_dim_qk=dqk,
                                  head_dim_v=dv, causal=True, seconds=seconds,
                                  tflops=flops / seconds / 1e12, backend=backend,
                                  gqa_impl=gqa_impl, method=method))
                done += 1
    ctx.log(f"{stem}: {done} points measured, {len(table)} in table")


def _measure_decode(ctx: BenchContext, table: CsvTable, points, label: str, name_backend: bool = False) -> int:
    """Time GQA decode (pack_q) at each ``(batch, context, hq, hkv, d)`` not yet in ``table``
    (``name_backend``: see :func:`_time_sdpa`)."""
    import torch

    dev = torch.device(ctx.device)
    done = 0
    for b, c, hq, hkv, d in points:
        g = hq // hkv
        kv_bytes = 2.0 * b * hkv * c * d * 2
        if kv_bytes > MAX_KV_BYTES:
            continue
        if table.has(batch=b, context=c, heads_q=hq, heads_kv=hkv, head_dim_qk=d, head_dim_v=d):
            continue
        if ctx.out_of_time():
            ctx.log(f"{label}: time budget reached")
            return done
        def qkv(b=b, c=c, hkv=hkv, g=g, d=d):
            return tuple(torch.randn(*shape, device=dev, dtype=torch.bfloat16)
                         for shape in ((b, hkv, g, d), (b, hkv, c, d), (b, hkv, c, d)))

        timed = _time_sdpa(ctx, qkv, kv_bytes, False, f"{label} b={b} c={c} hq={hq}", name_backend)
        if timed is None:
            continue
        seconds, method, backend, _ = timed
        flops = 2.0 * b * hq * c * 2 * d
        table.append(dict(batch=b, context=c, heads_q=hq, heads_kv=hkv, head_dim_qk=d,
                          head_dim_v=d, seconds=seconds, kv_bytes=kv_bytes,
                          gbps=kv_bytes / seconds / 1e9, tflops=flops / seconds / 1e12,
                          backend=backend, gqa_impl="pack_q", method=method))
        done += 1
    return done


def run_decode(ctx: BenchContext) -> None:
    table = CsvTable(ctx.out_dir / "attn_decode_bf16.csv", DECODE_COLUMNS, DECODE_KEY)
    configs = ((4, 2, 32, "tiny"),) if ctx.quick else DECODE_CONFIGS
    batches = (1, 3) if ctx.quick else DECODE_BATCH
    contexts = (16, 128) if ctx.quick else DECODE_CONTEXT
    points = [(b, c, hq, hkv, d) for hq, hkv, d, _ in configs for b in batches for c in contexts]
    done = _measure_decode(ctx, table, points, "attn_decode")
    ctx.log(f"attn_decode: {done} points measured, {len(table)} in table")


LONG_CONFIGS = ((32, 8, 128, "llama-3.1-8b"), (16, 2, 128, "llama-3.1-70b tp4 rank"))
LONG_BATCH = (1, 2, 3, 4, 6, 8)
LONG_CONTEXT = (2049, 4097, 8193, 12289, 16385, 24577, 32769)  # C cached + the new token


def _long_points(ctx: BenchContext):
    configs = ((4, 2, 32, "tiny"),) if ctx.quick else LONG_CONFIGS
    batches = (1, 2) if ctx.quick else LONG_BATCH
    contexts = (33, 129) if ctx.quick else LONG_CONTEXT
    return [(b, c, hq, hkv, d) for hq, hkv, d, _ in configs for b in batches for c in contexts]


def plan_decode_long(ctx: BenchContext) -> list[tuple[float, float, float]]:
    """(FLOPs, bytes, setup bytes) per point, for ``calibration.bench.plan``."""
    out = []
    for b, c, hq, hkv, d in _long_points(ctx):
        kv = 2.0 * b * hkv * c * d * 2
        out.append((4.0 * b * hq * c * d, kv, kv * rotation_count(kv, ctx)))
    return out


def run_decode_long(ctx: BenchContext) -> None:
    """Small-batch long-context GQA decode (``attn_decode_long_bf16.csv``, the decode columns):
    batch 1..8 x C+1 keys for C = 2K..32K, Llama-8B (32q/8kv) and 70B TP-4 rank (16q/2kv) heads,
    where few (sequence, KV head) work items leave most SMs idle unless the kernel splits the
    keys (split-KV); ``backend`` names the kernel torch picked."""
    table = CsvTable(ctx.out_dir / "attn_decode_long_bf16.csv", DECODE_COLUMNS, DECODE_KEY)
    done = _measure_decode(ctx, table, _long_points(ctx), "attn_decode_long", name_backend=True)
    ctx.log(f"attn_decode_long: {done} points measured, {len(table)} in table")


DECODE_TILE_BASES = (1024, 4096)
DECODE_TILE_OFFSETS = (0, 1, 16, 32, 63, 64, 65, 96, 127, 128, 129, 192, 256)
DECODE_TILE_BATCH = (1, 64, 256)


def run_decode_tiles(ctx: BenchContext) -> None:
    """Decode attention just above and below round context lengths (32q/8kv heads, d=128).

    A decode step attends to C cached keys plus the new one, and attention kernels walk the keys
    in fixed tiles, so the time steps up at tile boundaries; ``calibration.profile`` fits the
    tile size from this table (``attn_decode_tiles.csv``, the decode table's columns).
    """
    table = CsvTable(ctx.out_dir / "attn_decode_tiles.csv", DECODE_COLUMNS, DECODE_KEY)
    hq, hkv, d = (4, 2, 32) if ctx.quick else (32, 8, 128)
    bases = (16,) if ctx.quick else DECODE_TILE_BASES
    offsets = (0, 1) if ctx.quick else DECODE_TILE_OFFSETS
    points = [(b, base + off, hq, hkv, d) for b in ((1, 2) if ctx.quick else DECODE_TILE_BATCH)
              for base in bases for off in offsets]
    _measure_decode(ctx, table, points, "attn_decode_tiles")
    ctx.log(f"attn_decode_tiles: {len(table)} rows")


def _mla_bmm_call(q, cache, dv: int, out):
    import torch

    scale = 1.0 / math.sqrt(q.shape[-1])

    def call():
        s = torch.bmm(q, cache.transpose(1, 2))
        p = torch.softmax(s.float() * scale, dim=-1).to(q.dtype)
        return torch.bmm(p, cache[:, :, :dv], out=out)

    return call


def _mla_callable(ctx: BenchContext, q, cache, dv: int, impl: str):
    """``impl="sdpa"``: SDPA with one head and H query rows (first backend that takes
    Dqk=576); ``impl="bmm"``: two bmm and a float32 softmax. Returns (callable, impl name)."""
    import torch

    b, h, dqk = q.shape
    if impl == "bmm":
        out = torch.empty(b, h, dv, device=q.device, dtype=q.dtype)
        return _mla_bmm_call(q, cache, dv, out), "bmm"
    q4 = q.view(b, 1, h, dqk)
    k4 = cache.view(b, 1, cache.shape[1], dqk)
    v4 = k4[..., :dv]
    for backend in _backends(ctx):
        call = _sdpa_call(backend, q4, k4, v4, False, False)
        try:
            call()
            if ctx.is_cuda:
                torch.cuda.synchronize()
            return call, "sdpa_" + ("auto" if backend is None else
                                    "torch_choice" if isinstance(backend, tuple) else backend.name.lower())
        except Exception:
            continue
    raise RuntimeError("no SDPA backend takes MLA head dims 576/512 here")


def _measure_mla(ctx: BenchContext, table: CsvTable, points, label: str, name_backend: bool = False) -> int:
    """Time MLA absorbed decode at each ``(impl, heads, batch, context)`` not yet in ``table``;
    ``name_backend`` adds the kernel torch picked (``backend`` column)."""
    import torch

    from calibration.groundtruth.common import sdpa_backend

    dev = torch.device(ctx.device)
    dqk, dv = MLA_DQK, MLA_DV
    done = 0
    for impl, h, b, c in points:
        kv_bytes = 2.0 * b * c * dqk
        if kv_bytes > MAX_KV_BYTES:
            continue
        if table.has(batch=b, context=c, heads_q=h, head_dim_qk=dqk, head_dim_v=dv, impl=impl):
            continue
        if ctx.out_of_time():
            ctx.log(f"{label}: time budget reached")
            return done
        try:
            fns, detail, backend = [], "", "bmm_fp32_softmax"
            for _ in range(rotation_count(kv_bytes, ctx)):
                q = torch.randn(b, h, dqk, device=dev, dtype=torch.bfloat16)
                cache = torch.randn(b, c, dqk, device=dev, dtype=torch.bfloat16)
                call, detail = _mla_callable(ctx, q, cache, dv, impl)
                fns.append(call)
            if name_backend and impl == "sdpa":
                k4 = cache.view(b, 1, c, dqk)
                backend = sdpa_backend(q.view(b, 1, h, dqk), k4, k4[..., :dv], False)
            seconds, method = time_calls(fns, ctx)
        except Exception as exc:
            ctx.log(f"{label} b={b} c={c} h={h}: {type(exc).__name__}: {exc}")
            continue
        finally:
            fns = q = cache = None
            free_cuda()
        flops = 2.0 * b * h * c * (dqk + dv)
        row = dict(batch=b, context=c, heads_q=h, head_dim_qk=dqk, head_dim_v=dv, seconds=seconds,
                   kv_bytes=kv_bytes, gbps=kv_bytes / seconds / 1e9, tflops=flops / seconds / 1e12, impl=impl,
                   impl_detail=detail, method=method)
        table.append({**row, "backend": backend} if name_backend else row)
        done += 1
    return done


def run_mla_decode(ctx: BenchContext) -> None:
    table = CsvTable(ctx.out_dir / "mla_decode_bf16.csv", MLA_COLUMNS, MLA_KEY)
    heads = (4,) if ctx.quick else MLA_HEADS
    batches = (1, 2) if ctx.quick else MLA_BATCH
    contexts = (16, 64) if ctx.quick else MLA_CONTEXT
    points = [(i, h, b, c) for i in MLA_IMPLS for h in heads for b in batches for c in contexts]
    done = _measure_mla(ctx, table, points, "mla_decode")
    ctx.log(f"mla_decode: {done} points measured, {len(table)} in table")


MLA_IMPLS_BATCH = (1, 2, 3, 4, 6, 8, 16, 32, 64, 128, 256)
MLA_IMPLS_CONTEXT = tuple(2**i + 1 for i in range(10, 16))  # 1025 .. 32769: C cached + the new token
MLA_IMPLS_COLUMNS = MLA_COLUMNS + ["backend"]


def _mla_impls_points(ctx: BenchContext):
    heads = (4,) if ctx.quick else MLA_HEADS
    batches = (1, 3) if ctx.quick else MLA_IMPLS_BATCH
    contexts = (17, 65) if ctx.quick else MLA_IMPLS_CONTEXT
    return [(i, h, b, c) for i in MLA_IMPLS for h in heads for b in batches for c in contexts]


def plan_mla_decode_impls(ctx: BenchContext) -> list[tuple[float, float, float]]:
    """(FLOPs, bytes, setup bytes) per point, for ``calibration.bench.plan``; the bmm form
    also writes and reads its fp32 scores (about 16 bytes per score)."""
    out = []
    for impl, h, b, c in _mla_impls_points(ctx):
        kv = 2.0 * b * c * MLA_DQK
        scores = 16.0 * b * h * c if impl == "bmm" else 0.0
        out.append((2.0 * b * h * c * (MLA_DQK + MLA_DV), kv + scores, kv * rotation_count(kv, ctx)))
    return out


def run_mla_decode_impls(ctx: BenchContext) -> None:
    """MLA absorbed decode per implementation at the ground truth's shapes
    (``mla_decode_impls_bf16.csv``): SDPA with torch's backend choice (the kernel it picked in
    ``backend``) and the two-bmm form, heads 16 and 128, batch 1..256 (with the in-between
    batches of small-batch decode), C cached + 1 new keys for C = 1K..32K."""
    table = CsvTable(ctx.out_dir / "mla_decode_impls_bf16.csv", MLA_IMPLS_COLUMNS, MLA_KEY)
    done = _measure_mla(ctx, table, _mla_impls_points(ctx), "mla_decode_impls", name_backend=True)
    ctx.log(f"mla_decode_impls: {done} points measured, {len(table)} in table")
