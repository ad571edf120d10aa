"""In-step gap suite: what a chain of dependent kernels costs beyond its ops timed alone.

The per-op tables time repeated independent calls of one op (``time_calls``: a CUDA graph of
calls rotating over input sets). A model step is a chain: every op reads what the one before it
wrote, and in graph replay each kernel waits on its predecessor. This suite measures that
difference directly, so that a profile made by ``calibrate`` carries its own in-step gap
(``simulator.costmodel.profile_in_step_gap_s``) instead of one fitted to ground truth.

For a dense transformer layer's decode ops at ``tokens`` rows (rmsnorm, QKV projection, output
projection, residual add, rmsnorm, gate-up projection, ``silu(a) * b``, down projection,
residual add: ``OPS_PER_LAYER`` ops, each one op of the cost model's op lists and of its
tables), repeated over ``layers`` layers with weights of their own:

* ``chain_s``: one graph replay of the whole chain (``time_calls`` of one call), per chain;
* ``ops_alone_s``: the sum over the chain's ops of each op timed alone the way the tables time
  it (``time_calls`` over rotated input sets: weights and activations not in L2);
* ``gap_s = (chain_s - ops_alone_s) / ops``: the gap per op.

Configurations (``CONFIGS``): Llama-3.1-8B's widths (4,096 / QKV 6,144 / FFN 14,336, 4 layers)
and Llama-3.1-70B's (8,192 / 10,240 / 28,672, 2 layers), tokens 1..256.
"""

from __future__ import annotations

from calibration.bench.common import BenchContext, free_cuda, rotation_count, time_calls
from calibration.store import CsvTable

TABLE = "in_step_gap"
COLUMNS = ["config", "hidden", "qkv", "ffn", "layers", "tokens", "ops", "chain_s", "ops_alone_s", "gap_s", "method"]
KEY = ["config", "tokens"]
#: (name, hidden, QKV output width, FFN width, layers in the chain)
CONFIGS = (("llama8b", 4096, 6144, 14336, 4), ("llama70b", 8192, 10240, 28672, 2))
QUICK_CONFIGS = (("tiny", 64, 96, 128, 2),)
TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
QUICK_TOKENS = (1, 4)
#: the kinds of a layer's ops in the chain, in order (``_layer_ops``)
LAYER_OPS = ("rmsnorm", "gemm", "gemm", "add", "rmsnorm", "gemm", "silu_mul", "gemm", "add")
OPS_PER_LAYER = len(LAYER_OPS)


def _weights(hidden: int, qkv: int, ffn: int, dev, dtype):
    """One layer's weights: (norm1, W_qkv, W_o, norm2, W_gate_up, W_down), scaled to keep values finite."""
    import torch

    def w(k: int, n: int):
        return torch.randn(k, n, device=dev, dtype=dtype) / k ** 0.5

    ones = torch.ones(hidden, device=dev, dtype=dtype)
    return ones, w(hidden, qkv), w(qkv, hidden), ones.clone(), w(hidden, 2 * ffn), w(ffn, hidden)


def _layer_ops(x, wts, ffn: int):
    """The layer's ops as (name, callable) over its own buffers: each reads what the one before wrote
    (``x`` the residual stream, updated in place by the two adds)."""
    import torch
    import torch.nn.functional as F

    n1, wqkv, wo, n2, wgu, wd = wts
    hidden = x.shape[1]
    buf = {}

    def norm1():
        buf["h"] = F.rms_norm(x, (hidden,), n1, 1e-6)

    def qkv():
        buf["q"] = buf["h"] @ wqkv

    def o():
        buf["o"] = buf["q"] @ wo

    def add1():
        torch.add(x, buf["o"], out=x)

    def norm2():
        buf["h2"] = F.rms_norm(x, (hidden,), n2, 1e-6)

    def gate_up():
        buf["u"] = buf["h2"] @ wgu

    def act():
        u = buf["u"]
        buf["a"] = F.silu(u[:, :ffn]) * u[:, ffn:]

    def down():
        buf["d"] = buf["a"] @ wd

    def add2():
        torch.add(x, buf["d"], out=x)

    # run once so every buffer exists (an op timed alone reads its input from here)
    ops = list(zip(LAYER_OPS, (norm1, qkv, o, add1, norm2, gate_up, act, down, add2)))
    for _, f in ops:
        f()
    return ops


def _op_bytes(name: str, tokens: int, k: int, n: int) -> float:
    """Bytes an op moves (to size its rotation as the tables do)."""
    if name == "gemm":
        return 2.0 * (tokens * k + k * n + tokens * n)
    return 6.0 * tokens * max(k, n)


def _sets(tokens: int, hidden: int, qkv: int, ffn: int, ctx: BenchContext) -> list[int]:
    """Input sets each op of a layer rotates over when timed alone (as the tables size them)."""
    shapes = ((hidden, hidden), (hidden, qkv), (qkv, hidden), (hidden, hidden), (hidden, hidden), (hidden, 2 * ffn),
              (ffn, ffn), (ffn, hidden), (hidden, hidden))
    return [rotation_count(_op_bytes(n, tokens, *kn), ctx) for n, kn in zip(LAYER_OPS, shapes)]


def config_weights(ctx: BenchContext, config: tuple, tokens_grid) -> list:
    """Every layer's weights one configuration's points use, made once (as a model holds its weights
    for its life: allocating and freeing gigabytes per point was measured to slow the chain's GEMMs
    by up to 14%, 2026-12-02): the chain's ``layers`` and the copies its ops alone rotate over."""
    import torch

    _, hidden, qkv, ffn, layers = config
    copies = max(max(_sets(t, hidden, qkv, ffn, ctx)) for t in tokens_grid) - 1
    return [_weights(hidden, qkv, ffn, torch.device(ctx.device), torch.bfloat16) for _ in range(layers + copies)]


def measure(ctx: BenchContext, config: tuple, tokens: int, weights: list) -> dict:
    """One row: the chain and its ops alone at ``tokens`` rows (``weights``: ``config_weights``)."""
    import torch

    name, hidden, qkv, ffn, layers = config
    dev, bf = torch.device(ctx.device), torch.bfloat16
    x = torch.randn(tokens, hidden, device=dev, dtype=bf)
    chain = []
    for w in weights[:layers]:
        chain += _layer_ops(x, w, ffn)

    def run_chain():
        for _, f in chain:
            f()

    chain_s, method = time_calls([run_chain], ctx)
    sets = _sets(tokens, hidden, qkv, ffn, ctx)
    # copies of layer 0 with their own weights and activations, which an op alone rotates over
    copies = [chain[:OPS_PER_LAYER]] + [_layer_ops(torch.randn(tokens, hidden, device=dev, dtype=bf), w, ffn)
                                        for w in weights[layers:layers + max(sets) - 1]]
    alone = 0.0
    for i in range(OPS_PER_LAYER):  # op i of a layer, timed alone as the tables time an op
        alone += layers * time_calls([c[i][1] for c in copies[:sets[i]]], ctx)[0]
    ops = layers * OPS_PER_LAYER
    return dict(config=name, hidden=hidden, qkv=qkv, ffn=ffn, layers=layers, tokens=tokens, ops=ops,
                chain_s=chain_s, ops_alone_s=alone, gap_s=(chain_s - alone) / ops, method=method)


def run(ctx: BenchContext) -> None:
    table = CsvTable(ctx.out_dir / f"{TABLE}.csv", COLUMNS, KEY)
    grid = QUICK_TOKENS if ctx.quick else TOKENS
    for config in QUICK_CONFIGS if ctx.quick else CONFIGS:
        todo = [t for t in grid if not table.has(config=config[0], tokens=t)]
        if not todo:
            continue
        weights = config_weights(ctx, config, todo)
        for tokens in todo:
            if ctx.out_of_time():
                ctx.log("in_step_gap: time budget reached")
                return
            table.append(measure(ctx, config, tokens, weights))
        weights = None
        free_cuda()


def gap_from_rows(rows: list[dict]) -> float | None:
    """The in-step gap a profile states from this suite's rows: the median of their ``gap_s``
    (None without rows). A median, as a few points at the largest token counts carry most of the
    timing noise of their long ops."""
    gaps = sorted(float(r["gap_s"]) for r in rows)
    if not gaps:
        return None
    mid = len(gaps) // 2
    return gaps[mid] if len(gaps) % 2 else 0.5 * (gaps[mid - 1] + gaps[mid])
