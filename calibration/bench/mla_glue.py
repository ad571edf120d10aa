"""MLA glue kernels (``mla_glue_bf16.csv``): the split/concat/copy ops around MLA's GEMMs.

The very functions the whole-model MLA ground truth runs (``calibration.groundtruth.mla``),
timed alone on the layouts the model hands them (views of projection outputs, not contiguous
copies), for DeepSeek-V2-Lite/V3 dims (nope 128, rope 64, latent 512, v 128) at T tokens and
H heads. None of these is in the elementwise suite: they read strided views and broadcast.

Non-absorbed prefill (``[1, T, H, .]`` layout, cos/sin per token broadcast over heads):

* ``assemble_q``   - ``cat(q_nope, rope(q_pe))`` -> ``[T, H, 192]`` (q_nope a view of ``[T, H, 192]``);
* ``assemble_k``   - ``cat(k_nope, k_pe broadcast over heads)`` -> ``[T, H, 192]`` (k_nope a view of
  the ``kv_b`` output ``[T, H, 256]``);
* ``rope_q``       - rotate-half RoPE on the 64-wide q_pe view of ``[T, H, 192]``;
* ``rope_k``       - the same on the 64-wide k_pe view of the ``kv_a`` output ``[T, 576]`` (heads=1);
* ``latent_norm``  - RMSNorm of the 512-wide latent view of ``[T, 576]`` (heads=1);
* ``write_cache``  - the latent and the rotated key copied into a ``[T, 576]`` cache (heads=1).

Absorbed decode (T = batch rows):

* ``latent_query`` - ``cat(q_lat, q_pe)`` from the head-major bmm output ``[H, T, 512]`` -> ``[T, H, 576]``;
* ``merge_heads``  - ``[H, T, 128] -> [T, H*128]`` after the W_UV bmm.

``bytes`` counts each op's minimum reads and writes (a broadcast input read once).
"""

from __future__ import annotations

from calibration.bench.common import BenchContext, free_cuda, rotation_count, time_calls
from calibration.store import CsvTable

NOPE, ROPE, LAT, V = 128, 64, 512, 128
PER_HEAD_OPS = ("assemble_q", "assemble_k", "rope_q", "latent_query", "merge_heads")
LATENT_OPS = ("rope_k", "latent_norm", "write_cache")
OPS = PER_HEAD_OPS + LATENT_OPS
TOKENS = tuple(4**i for i in range(0, 9))  # 1 .. 65536
DECODE_OPS = ("latent_query", "merge_heads")
DECODE_MAX_TOKENS = 4096  # batch rows of a decode step
HEADS = (16, 128)
COLUMNS = ["op", "tokens", "heads", "bytes", "seconds", "gbps", "method"]
KEY = ["op", "tokens", "heads"]


def make(op: str, tokens: int, heads: int, dev):
    """(callable, bytes moved) of one glue op on fresh inputs."""
    import torch

    from calibration.groundtruth import mla
    from calibration.groundtruth.common import rope

    bf, T, H = torch.bfloat16, tokens, heads

    def rnd(*shape):
        return torch.randn(*shape, device=dev, dtype=bf)

    cos, sin = rnd(1, T, 1, ROPE), rnd(1, T, 1, ROPE)
    trig = 2 * T * ROPE * 2
    if op == "assemble_q":
        q, q_pe = rnd(1, T, H, NOPE + ROPE), rnd(1, T, H, ROPE)
        return (lambda: mla.assemble_q(q[..., :NOPE], q_pe)), 2 * T * H * (NOPE + ROPE) * 2
    if op == "assemble_k":
        kv, k_pe = rnd(1, T, H, NOPE + V), rnd(1, T, 1, ROPE)
        return (lambda: mla.assemble_k(kv[..., :NOPE], k_pe)), (T * H * NOPE + T * ROPE + T * H * (NOPE + ROPE)) * 2
    if op == "rope_q":
        q = rnd(1, T, H, NOPE + ROPE)
        return (lambda: rope(q[..., NOPE:], cos, sin)), 2 * T * H * ROPE * 2 + trig
    if op == "rope_k":
        kv_a = rnd(1, T, 1, LAT + ROPE)
        return (lambda: rope(kv_a[..., LAT:], cos, sin)), 2 * T * ROPE * 2 + trig
    if op == "latent_norm":
        kv_a, w = rnd(T, LAT + ROPE), rnd(LAT)
        return (lambda: mla.latent_norm(kv_a, w, LAT)), 2 * T * LAT * 2 + LAT * 2
    if op == "write_cache":
        cache, c, k_pe = rnd(T, LAT + ROPE), rnd(T, LAT), rnd(T, ROPE)
        return (lambda: mla.write_cache(cache[:, :LAT], cache[:, LAT:], c, k_pe)), 2 * T * (LAT + ROPE) * 2
    if op == "latent_query":
        q_lat, q_pe = rnd(H, T, LAT), rnd(T, H, ROPE)
        return (lambda: mla.latent_query(q_lat, q_pe)), 2 * T * H * (LAT + ROPE) * 2
    if op == "merge_heads":
        o = rnd(H, T, V)
        return (lambda: mla.merge_heads(o)), 2 * T * H * V * 2
    raise ValueError(f"mla_glue op {op!r} unknown (valid: {', '.join(OPS)})")


def plan(ctx: BenchContext) -> list[tuple[float, float, float]]:
    """(FLOPs, bytes, setup bytes) per point, for ``calibration.bench.plan``: a glue op moves
    about 2 bytes per element read and written, ``(NOPE + ROPE) * 4`` bytes per token-head."""
    out = []
    for op in OPS:
        for h in ((4,) if ctx.quick else HEADS) if op in PER_HEAD_OPS else (1,):
            for t in (1, 16) if ctx.quick else TOKENS:
                if not (op in DECODE_OPS and t > DECODE_MAX_TOKENS):
                    nbytes = t * h * (LAT + ROPE if op in ("latent_query",) + LATENT_OPS else NOPE + ROPE) * 4
                    out.append((0.0, nbytes, 2 * nbytes))
    return out


def run(ctx: BenchContext) -> None:
    import torch

    dev = torch.device(ctx.device)
    table = CsvTable(ctx.out_dir / "mla_glue_bf16.csv", COLUMNS, KEY)
    tokens = (1, 16) if ctx.quick else TOKENS
    done = 0
    for op in OPS:
        for h in ((4,) if ctx.quick else HEADS) if op in PER_HEAD_OPS else (1,):
            for t in tokens:
                if table.has(op=op, tokens=t, heads=h) or (op in DECODE_OPS and t > DECODE_MAX_TOKENS):
                    continue
                if ctx.out_of_time():
                    ctx.log("mla_glue: time budget reached")
                    return
                fn0, nbytes = make(op, t, h, dev)
                fns = [fn0] + [make(op, t, h, dev)[0] for _ in range(rotation_count(nbytes, ctx) - 1)]
                seconds, method = time_calls(fns, ctx)
                table.append(dict(op=op, tokens=t, heads=h, bytes=nbytes, seconds=seconds,
                                  gbps=nbytes / seconds / 1e9, method=method))
                done += 1
                fns = fn0 = None
                free_cuda()
    ctx.log(f"mla_glue: {done} points measured, {len(table)} in table")
