"""Shared pieces of the ground-truth models: step timing, random weights, RoPE and SDPA calls.

Every model in this package builds *step closures* over static buffers; :func:`time_step` times
one eagerly and as a CUDA-graph replay. torch is imported inside functions only.
"""

from __future__ import annotations

import statistics
import sys
import time

#: SDPA backends the ground truth lets torch choose among on CUDA (as serving code calls it)
PREFERRED_BACKENDS = ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free(torch) -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def time_step(fn, device: str, repeats: int = 7, use_graph: bool = True,
              eager_repeats: int | None = None) -> tuple[float, float, bool]:
    """(graph seconds, eager seconds, graph used) for a step ``fn`` with static inputs.

    CUDA: two warm-up calls, the median of ``eager_repeats`` (default ``repeats``) eager steps
    between CUDA events, then the median of ``repeats`` replays of one captured step. CPU: the
    median of three host-timed calls (tests)."""
    import torch

    from calibration.bench.common import event_median_s

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
    eager = event_median_s(fn, eager_repeats or repeats)
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
        t = event_median_s(graph.replay, repeats)
        del graph
        return t, eager, True
    except Exception as exc:  # record, fall back to eager
        print(f"  graph capture failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        torch.cuda.synchronize()
        return eager, eager, False


def random_weight(gen, shape, scale: float, device):
    """bf16 N(0, scale^2) weights drawn directly in bf16 (no float32 copy of large tensors)."""
    import torch

    return torch.randn(*shape, generator=gen, device=device, dtype=torch.bfloat16).mul_(scale)


def rope_tables(positions, dim: int, device, theta: float = 10000.0):
    """(cos, sin) in bf16 of shape ``[len(positions), dim]`` for rotate-half RoPE."""
    import torch

    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    ang = positions.float()[:, None] * inv[None, :]
    ang = torch.cat((ang, ang), dim=-1)
    return ang.cos().to(torch.bfloat16), ang.sin().to(torch.bfloat16)


def rope(x, cos, sin):
    """Rotate-half RoPE in plain torch ops (several kernels), as reference implementations do."""
    import torch

    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def sdpa(q, k, v, causal: bool, gqa: bool = False, scale: float | None = None):
    """``F.scaled_dot_product_attention`` with torch choosing among flash / cuDNN / efficient
    on CUDA (the same set ``calibration.bench.attention`` measures), any backend on CPU."""
    import torch.nn.functional as F

    if q.device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([getattr(SDPBackend, b) for b in PREFERRED_BACKENDS]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa, scale=scale)


def sdpa_backend(q, k, v, causal: bool, scale: float | None = None) -> str:
    """The SDPA backend torch picks for these inputs under :func:`sdpa`'s preferences
    (``torch._fused_sdp_choice``), lower-case; ``"unknown"`` where torch cannot say."""
    import torch

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        if q.device.type == "cuda":
            with sdpa_kernel([getattr(SDPBackend, b) for b in PREFERRED_BACKENDS]):
                choice = torch._fused_sdp_choice(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=causal,
                                                 scale=scale)
        else:
            choice = torch._fused_sdp_choice(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=causal,
                                             scale=scale)
        return SDPBackend(choice).name.lower()
    except Exception:  # noqa: BLE001 - a private API; its absence must not stop a measurement
        return "unknown"


def sdpa_chunk(q, k, v, gqa: bool = False, scale: float | None = None):
    """Attention of a prefill chunk: ``q[B, Hq, n, D]`` against ``k``/``v`` ``[B, Hkv, c+n, D]``
    (c cached keys first, then the chunk's own), LOWER-RIGHT causal: the chunk's i-th query sees
    the c cached keys and the new keys up to its own position, as a serving engine's chunked
    prefill runs it. ``torch.nn.attention.bias.causal_lower_right`` dispatches to the flash kernel
    (FlashAttention-2 aligns a causal mask to the bottom right) or the memory-efficient one (a
    lower-right mask type) when either takes the shapes, else to a materialized mask (math);
    at c = 0 it is plain causal SDPA with torch's choice (:func:`sdpa`). :func:`chunk_backend`
    names the kernel."""
    import torch.nn.functional as F
    from torch.nn.attention.bias import causal_lower_right

    mask = causal_lower_right(q.shape[-2], k.shape[-2])
    if q.device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([getattr(SDPBackend, b) for b in PREFERRED_BACKENDS]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa, scale=scale)


def pick_chunk(q, k, v) -> tuple[str, str] | None:
    """``(gqa_impl, backend)`` of the lower-right chunk attention :func:`sdpa_chunk` runs for these
    inputs: GQA natively (``enable_gqa``) when a fused kernel takes it, else with K/V expanded
    (``repeat_kv``); None on CUDA when only the materialized-mask (math) path would run, which is
    not a kernel an engine runs (on CPU: the math path, tests)."""
    hq, hkv = q.shape[1], k.shape[1]
    variants = ("none",) if hq == hkv else ("enable_gqa", "repeat_kv")
    for gqa_impl in variants:
        if gqa_impl == "repeat_kv":  # the expanded K/V's layout (contents do not matter to the choice)
            k = k.new_empty((k.shape[0], hq, *k.shape[2:]))
            v = v.new_empty((v.shape[0], hq, *v.shape[2:]))
        backend = chunk_backend(q, k, v, gqa_impl == "enable_gqa")
        if q.device.type != "cuda" or backend not in ("math_mask", "math"):
            return gqa_impl, backend
    return None


def chunk_backend(q, k, v, gqa: bool = False) -> str:
    """The kernel :func:`sdpa_chunk` runs for these inputs, mirroring the dispatch of
    ``torch.nn.attention.bias.CausalBias`` with torch's own predicates: ``flash_attention``,
    ``efficient_attention`` or ``math_mask`` (the materialized lower-right mask); at c = 0
    :func:`sdpa_backend`'s answer; ``"unknown"`` where torch cannot say."""
    if q.shape[-2] == k.shape[-2]:
        return sdpa_backend(q, k, v, True)
    try:
        from torch.backends.cuda import SDPAParams, can_use_efficient_attention, can_use_flash_attention

        def pick():
            params = SDPAParams(q, k, v, None, 0.0, False, gqa)
            if can_use_flash_attention(params):
                return "flash_attention"
            if can_use_efficient_attention(params):
                return "efficient_attention"
            return "math_mask"

        if q.device.type == "cuda":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel([getattr(SDPBackend, b) for b in PREFERRED_BACKENDS]):
                return pick()
        return pick()
    except Exception:  # noqa: BLE001 - private dispatch details; never stop a measurement for them
        return "unknown"
