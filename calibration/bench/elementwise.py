"""Memory-bound suite: rmsnorm, silu*mul, rotary embedding and copy over sizes (bf16).

``bytes`` counts the fewest bytes each op must move (inputs read once, output written once),
so ``gbps`` is achieved bandwidth by that count. ``hbm.csv`` holds the large device-to-device
copies (bytes read + written), the achieved HBM bandwidth. Ops as measured:

* rmsnorm: ``torch.nn.functional.rms_norm`` over rows of width 4096 (read x and weight, write y);
* silu_mul: ``silu(a) * b`` on two halves of a ``[T, 2F]`` tensor (read 2E, write E);
* rotary: ``x*cos + rotate_half(x)*sin`` on ``[T, 32, 128]`` (eager torch, several kernels: a
  fused kernel would be faster - counted bytes are read x, cos, sin, write y);
* copy: ``dst.copy_(src)``;
* add: ``a + b`` (a residual add: read 2E, write E);
* rotary_qkv: the rotary above on the query heads as a strided view of a fused ``[T, 48*128]``
  QKV projection output, as a model applies it (read x, cos, sin, write y);
* rotary_bshd: the same on a ``[B, S, 32, 128]`` view of a ``[B, S, 48*128]`` projection output
  with ``cos``/``sin`` of shape ``[1, S, 1, 128]`` broadcast over the batch (S <= 2048), the
  layout of a prefill step;
* quant_fp8: per-row e4m3 quantisation of a BF16 ``[T, 4096]`` activation before an FP8 GEMM, as
  plain torch runs it (``quant_fp8_rowwise``: |x|, row amax, scale = amax / 448, x / scale cast to
  e4m3; several kernels; counted bytes are read 2E, write E and one fp32 scale per row).

``rmsnorm_bf16.csv`` times ``F.rms_norm`` over ``rows x width`` for several widths: at small
row counts the time follows the row width (one block walks a row), not the bytes.
"""

from __future__ import annotations

from calibration.bench.common import BenchContext, free_cuda, rotation_count, time_calls
from calibration.store import CsvTable

ELEMENTS = tuple(2**i for i in range(12, 29, 2))  # 4K .. 256M elements
HBM_BYTES = tuple(int(2**i) for i in range(24, 34))  # 16 MiB .. 8 GiB per buffer
WIDTH = 4096
COLUMNS = ["op", "elements", "bytes", "seconds", "gbps", "method"]
KEY = ["op", "elements"]
HBM_COLUMNS = ["bytes", "seconds", "gbps", "method"]
HBM_KEY = ["bytes"]
OPS = ("copy", "rmsnorm", "silu_mul", "rotary", "add", "rotary_qkv", "rotary_bshd", "quant_fp8")
#: the largest finite e4m3 value: a row's amax maps onto it
E4M3_MAX = 448.0
NORM_WIDTHS = (1024, 2048, 4096, 7168, 8192, 16384)
NORM_ROWS = tuple(4**i for i in range(0, 9))  # 1 .. 65536
NORM_COLUMNS = ["rows", "width", "bytes", "seconds", "method"]
NORM_KEY = ["rows", "width"]


def quant_fp8_rowwise(x):
    """``(q, scale)``: ``x`` (BF16, rows x width) quantised to e4m3 per row the plain-torch way
    (|x|, row amax, fp32 scale = amax / 448, ``x / scale`` cast), ``x ~= q * scale``."""
    import torch

    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp_min(1e-12) / E4M3_MAX
    return (x / scale).to(torch.float8_e4m3fn), scale


def _make(op: str, elements: int, dev):
    """Return (callable, bytes moved). ``elements`` = elements of the op's output."""
    import torch
    import torch.nn.functional as F

    bf = torch.bfloat16
    if op == "copy":
        src = torch.randn(elements, device=dev, dtype=bf)
        dst = torch.empty_like(src)
        return (lambda: dst.copy_(src)), 4 * elements
    if op == "rmsnorm":
        rows = max(1, elements // WIDTH)
        width = elements // rows
        x = torch.randn(rows, width, device=dev, dtype=bf)
        w = torch.randn(width, device=dev, dtype=bf)
        return (lambda: F.rms_norm(x, (width,), w, 1e-6)), 4 * rows * width + 2 * width
    if op == "silu_mul":
        rows = max(1, elements // WIDTH)
        width = elements // rows
        ab = torch.randn(rows, 2 * width, device=dev, dtype=bf)
        a, b = ab[:, :width], ab[:, width:]
        return (lambda: F.silu(a) * b), 6 * rows * width
    if op == "add":
        a = torch.randn(elements, device=dev, dtype=bf)
        b = torch.randn(elements, device=dev, dtype=bf)
        return (lambda: a + b), 6 * elements
    if op == "quant_fp8":
        rows = max(1, elements // WIDTH)
        x = torch.randn(rows, elements // rows, device=dev, dtype=bf)
        return (lambda: quant_fp8_rowwise(x)), 3 * x.numel() + 4 * rows
    if op in ("rotary", "rotary_qkv", "rotary_bshd"):
        tokens = max(1, elements // (32 * 128))
        if op == "rotary":  # contiguous [T, 32, 128], cos/sin per token
            x = torch.randn(tokens, 32, 128, device=dev, dtype=bf)
            trig = (tokens, 1, 128)
        elif op == "rotary_qkv":  # q heads viewed out of a fused [T, 48*128] projection output
            x = torch.randn(tokens, 48 * 128, device=dev, dtype=bf)[:, : 32 * 128].view(tokens, 32, 128)
            trig = (tokens, 1, 128)
        else:  # prefill layout [B, S, 32, 128] with cos/sin broadcast over the batch
            s = min(tokens, 2048)
            b = max(1, tokens // s)
            x = torch.randn(b, s, 48 * 128, device=dev, dtype=bf)[..., : 32 * 128].view(b, s, 32, 128)
            trig = (1, s, 1, 128)
        cos = torch.randn(*trig, device=dev, dtype=bf)
        sin = torch.randn(*trig, device=dev, dtype=bf)

        def rot():
            x1, x2 = x[..., :64], x[..., 64:]
            return x * cos + torch.cat((-x2, x1), dim=-1) * sin

        return rot, 4 * x.numel() + 4 * cos.numel()
    raise ValueError(f"elementwise op {op!r} unknown (valid: {', '.join(OPS)})")


def run(ctx: BenchContext) -> None:
    import torch

    dev = torch.device(ctx.device)
    table = CsvTable(ctx.out_dir / "elementwise_bf16.csv", COLUMNS, KEY)
    sizes = (2**10, 2**14) if ctx.quick else ELEMENTS
    done = 0
    for op in OPS:
        for e in sizes:
            if table.has(op=op, elements=e):
                continue
            if ctx.out_of_time():
                ctx.log("elementwise: time budget reached")
                return
            fn0, nbytes = _make(op, e, dev)
            fns = [fn0] + [_make(op, e, dev)[0] for _ in range(rotation_count(nbytes, ctx) - 1)]
            seconds, method = time_calls(fns, ctx)
            table.append(dict(op=op, elements=e, bytes=nbytes, seconds=seconds,
                              gbps=nbytes / seconds / 1e9, method=method))
            done += 1
            fns = fn0 = None
            free_cuda()
    norms = CsvTable(ctx.out_dir / "rmsnorm_bf16.csv", NORM_COLUMNS, NORM_KEY)
    import torch.nn.functional as F

    for width in (64, 256) if ctx.quick else NORM_WIDTHS:
        for rows in (1, 8) if ctx.quick else NORM_ROWS:
            if norms.has(rows=rows, width=width) or rows * width > 2**28 or ctx.out_of_time():
                continue
            nbytes = 4 * rows * width + 2 * width
            fns = []
            for _ in range(rotation_count(nbytes, ctx)):
                x = torch.randn(rows, width, device=dev, dtype=torch.bfloat16)
                w = torch.randn(width, device=dev, dtype=torch.bfloat16)
                fns.append(lambda x=x, w=w, width=width: F.rms_norm(x, (width,), w, 1e-6))
            seconds, method = time_calls(fns, ctx)
            norms.append(dict(rows=rows, width=width, bytes=nbytes, seconds=seconds, method=method))
            fns = None
            free_cuda()
    hbm = CsvTable(ctx.out_dir / "hbm.csv", HBM_COLUMNS, HBM_KEY)
    for nb in (2**20, 2**22) if ctx.quick else HBM_BYTES:
        if hbm.has(bytes=2 * nb) or ctx.out_of_time():
            continue
        src = torch.randn(nb // 2, device=dev, dtype=torch.bfloat16)
        dst = torch.empty_like(src)
        seconds, method = time_calls([lambda: dst.copy_(src)], ctx, use_graph=False)
        hbm.append(dict(bytes=2 * nb, seconds=seconds, gbps=2 * nb / seconds / 1e9, method=method))
        src = dst = None
        free_cuda()
    ctx.log(f"elementwise: {done} points measured; hbm table {len(hbm)} rows")
