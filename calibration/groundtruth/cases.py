"""The ground-truth tables and the point sets measured into them (no torch).

Three sets, each a list of :class:`Case` (one model build, one table, its points):

* ``main``  - the first run's tables (``gt_dense_prefill/decode.csv``, ``gt_moe_layer.csv``;
  formats unchanged, no ``split`` column);
* ``wide``  - the widened ground truth of issue 14: MoE layers at 1..64 tokens per rank
  (``gt_moe_small.csv``), whole V2-Lite-shaped MLA models in absorbed decode over batch x
  context (``gt_mla_decode.csv``) and non-absorbed prefill (``gt_mla_prefill.csv``), and
  small-batch long-context dense decode (``gt_dense_decode_long.csv``). Every row carries
  ``split``: ``fit`` or ``holdout``, a checkerboard over each grid's axes (or an alternation
  along a list), so both halves span the regime and no point is in both;
* ``chunk`` - chunked prefill (``gt_dense_chunk.csv``): a Llama-3.1-8B-shaped model running a
  prefill chunk of n new tokens per sequence after c cached ones (KV caches pre-filled, lower-right
  causal attention), B in {1, 4}, n in {512, 2048}, c in {2K, 8K, 32K}; ``split`` a checkerboard
  over (n, c), shifted per batch;
* ``fp8moe`` - FP8 MoE layers (``gt_moe_fp8.csv``): one EP rank of DeepSeek-V3's MoE layer with
  e4m3 expert and shared-expert weights (``moe.Fp8MoEBlock``: rowwise activation quantisation,
  ``torch._scaled_mm`` / ``torch._scaled_grouped_mm``) at EP 4 and 32, 1..8192 tokens per rank;
  ``split`` alternates along the token list (nothing is fitted to it today: every row is a
  hold-out of the FP8 tables and the elementwise ``quant_fp8`` curve);
* ``fp8dense`` - a Llama-3.1-8B-shaped model with FP8 projections (``dense.DenseModel`` with
  ``dtype="fp8"``: rowwise activation quantisation, ``torch._scaled_mm``) in prefill and decode
  (``gt_dense_prefill_fp8.csv``, ``gt_dense_decode_fp8.csv``; ``split`` alternating / a
  checkerboard; nothing is fitted to it);
* ``denseoos`` - dense models and tensor-parallel ranks the tables never measured whole (Qwen-2.5-72B
  at TP 4 and 8, Llama-3.1-70B at TP 2 and 8, Llama-3.1-405B at TP 8, Llama-3.1-8B at TP 2) in BF16
  prefill and decode (``gt_dense_prefill_oos.csv``, ``gt_dense_decode_oos.csv``): every row is
  ``holdout`` (no parameter is fitted to whole steps; their GEMM shapes are mostly off the tables);
* ``moeoos`` - DeepSeek-V2's MoE layer (160 experts of width 1536, top-6, hidden 5120: expert
  shapes no grouped table holds) at EP 4, 8 and 32, 4..4096 tokens per rank (``gt_moe_oos.csv``),
  every row ``holdout``;
* ``mlaoos`` - DeepSeek-V2 and DeepSeek-V3 (128 heads, 512-dim latent: the production MLA shapes; the
  ``wide`` MLA rows are V2-Lite's 16 heads) cut to 4 layers (V2: 1 dense + 3 MoE, V3: 3 dense + 1 MoE), in
  absorbed decode and non-absorbed prefill (``gt_mla_decode_oos.csv``, ``gt_mla_prefill_oos.csv``), every
  row ``holdout``;
* ``check`` - the handful of steps ``calibration.run --check`` measures after a calibration.

``quick`` replaces every model by a ``tiny-*`` one with a few points (CPU tests).
"""

from __future__ import annotations

from dataclasses import dataclass

from calibration.groundtruth import configs as C

SEED = 20250101  # MoE routing seed base: a point's seed is SEED + tokens_per_rank (as the first run)


@dataclass(frozen=True)
class Table:
    file: str
    columns: tuple[str, ...]
    key: tuple[str, ...]


_TIMES = ("seconds", "seconds_eager", "cuda_graph")
DENSE_PREFILL = Table("gt_dense_prefill.csv", ("model", "tp", "layers", "batch", "seq") + _TIMES,
                      ("model", "tp", "layers", "batch", "seq"))
DENSE_DECODE = Table("gt_dense_decode.csv", ("model", "tp", "layers", "batch", "context") + _TIMES,
                     ("model", "tp", "layers", "batch", "context"))
MOE_LAYER = Table("gt_moe_layer.csv", ("model", "ep", "local_experts", "tokens_per_rank", "impl", "received_pairs",
                                       "max_tokens_per_expert", "mean_tokens_per_expert", "seed") + _TIMES,
                  ("model", "ep", "tokens_per_rank", "seed"))
DENSE_DECODE_LONG = Table("gt_dense_decode_long.csv",
                          ("model", "tp", "layers", "batch", "context", "split", "attn_backend") + _TIMES,
                          ("model", "tp", "layers", "batch", "context"))
MOE_SMALL = Table("gt_moe_small.csv",
                  ("model", "ep", "local_experts", "tokens_per_rank", "split", "impl", "received_pairs",
                   "experts_touched", "max_tokens_per_expert", "mean_tokens_per_expert", "seed") + _TIMES,
                  ("model", "ep", "tokens_per_rank", "seed"))
_MLA = ("split", "attn_backend", "moe_impl", "experts_touched_mean") + _TIMES
MLA_DECODE = Table("gt_mla_decode.csv", ("model", "layers", "batch", "context") + _MLA,
                   ("model", "layers", "batch", "context"))
MLA_PREFILL = Table("gt_mla_prefill.csv", ("model", "layers", "batch", "seq") + _MLA,
                    ("model", "layers", "batch", "seq"))
MOE_FP8 = Table("gt_moe_fp8.csv", MOE_SMALL.columns, MOE_SMALL.key)
DENSE_PREFILL_FP8 = Table("gt_dense_prefill_fp8.csv", ("model", "tp", "layers", "batch", "seq", "split") + _TIMES,
                          DENSE_PREFILL.key)
DENSE_DECODE_FP8 = Table("gt_dense_decode_fp8.csv", ("model", "tp", "layers", "batch", "context", "split") + _TIMES,
                         DENSE_DECODE.key)
DENSE_PREFILL_OOS = Table("gt_dense_prefill_oos.csv", DENSE_PREFILL_FP8.columns, DENSE_PREFILL.key)
DENSE_DECODE_OOS = Table("gt_dense_decode_oos.csv", DENSE_DECODE_FP8.columns, DENSE_DECODE.key)
MOE_OOS = Table("gt_moe_oos.csv", MOE_SMALL.columns, MOE_SMALL.key)
MLA_DECODE_OOS = Table("gt_mla_decode_oos.csv", MLA_DECODE.columns, MLA_DECODE.key)
MLA_PREFILL_OOS = Table("gt_mla_prefill_oos.csv", MLA_PREFILL.columns, MLA_PREFILL.key)
DENSE_CHUNK = Table("gt_dense_chunk.csv",
                    ("model", "tp", "layers", "batch", "new", "context", "split", "attn_backend") + _TIMES,
                    ("model", "tp", "layers", "batch", "new", "context"))


@dataclass(frozen=True)
class Case:
    """Points of one table measured on one model build.

    ``model`` is ``(kind, name, arg)``: ``("dense", name, tp)``, ``("moe", name, ep)`` or
    ``("mla", name, layers)``; consecutive cases with the same ``model`` share one build.
    ``points`` are the columns known before measuring (key columns, ``split``)."""

    part: str
    model: tuple
    table: Table
    points: tuple[dict, ...]
    repeats: int = 7
    eager_repeats: int | None = None


def checkerboard(xs, ys, keep=lambda x, y: True, offset: int = 0) -> list[tuple[int, int, str]]:
    """``(x, y, split)`` over the grid ``xs`` x ``ys`` (points failing ``keep`` dropped):
    ``fit`` where ``i + j + offset`` is even, else ``holdout``."""
    return [(x, y, "fit" if (i + j + offset) % 2 == 0 else "holdout")
            for i, x in enumerate(xs) for j, y in enumerate(ys) if keep(x, y)]


def alternate(items, offset: int = 0) -> list[tuple[object, str]]:
    """``(item, split)`` alternating ``fit``/``holdout`` along ``items``."""
    return [(it, "fit" if (i + offset) % 2 == 0 else "holdout") for i, it in enumerate(items)]


# ----------------------------------------------------------------------------- main (first run)

LLAMA_8B_PREFILL = ((1, 512), (1, 2048), (4, 1024), (1, 8192), (8, 2048))
LLAMA_8B_DECODE = ((1, 1024), (16, 1024), (64, 2048), (128, 4096), (256, 1024))
LLAMA_70B_PREFILL = ((1, 512), (1, 2048), (4, 2048), (1, 8192))
LLAMA_70B_DECODE = ((1, 2048), (32, 2048), (128, 4096), (256, 2048))
MOE_TOKENS = (128, 256, 512, 1024, 2048, 4096, 8192)


def _dense_cases(part, cfg: C.DenseConfig, prefill, decode, reps=(5, 9)) -> list[Case]:
    ident = dict(model=cfg.name, tp=cfg.tp, layers=cfg.layers)
    model = ("dense", cfg.name, cfg.tp, cfg.layers)
    return [Case(part, model, DENSE_PREFILL, tuple(dict(ident, batch=b, seq=s) for b, s in prefill), reps[0]),
            Case(part, model, DENSE_DECODE, tuple(dict(ident, batch=b, context=c) for b, c in decode), reps[1])]


def _moe_case(part, cfg: C.MoEConfig, tokens, table=MOE_LAYER, splits=None, reps=7, eager=None,
              kind: str = "moe") -> Case:
    """``splits`` (one per token count) only for tables with a ``split`` column; ``kind``: ``moe``
    (BF16) or ``moe_fp8``."""
    pts = []
    for i, t in enumerate(tokens):
        p = dict(model=cfg.name, ep=cfg.ep, local_experts=cfg.local_experts, tokens_per_rank=t, seed=SEED + t)
        pts.append(p if splits is None else dict(p, split=splits[i]))
    return Case(part, (kind, cfg.name, cfg.ep), table, tuple(pts), reps, eager)


def main_cases(quick: bool, layers: int | None = None, max_points: int | None = None) -> list[Case]:
    from dataclasses import replace

    def cut(pts):
        return pts[:max_points] if max_points else pts

    def lay(cfg):
        return replace(cfg, layers=layers) if layers else cfg

    if quick:
        return [*_dense_cases("llama8b", lay(C.TINY_DENSE), ((1, 8), (2, 16)), ((1, 8), (3, 16))),
                _moe_case("moe_ep4", C.TINY_MOE, (4, 16))]
    return [*_dense_cases("llama8b", lay(C.LLAMA_8B), cut(LLAMA_8B_PREFILL), cut(LLAMA_8B_DECODE)),
            *_dense_cases("llama70b_tp4", lay(C.LLAMA_70B_TP4), cut(LLAMA_70B_PREFILL), cut(LLAMA_70B_DECODE)),
            _moe_case("moe_ep4", C.DSV3_MOE_EP4, cut(MOE_TOKENS))]


# ----------------------------------------------------------------------------- wide (issue 14)

SMALL_TOKENS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
SMALL_MOE = (("deepseek-v3", 1), ("deepseek-v3", 4), ("deepseek-v3", 32), ("deepseek-v2-lite", 1),
             ("deepseek-v2-lite", 4))
MLA_MODEL = "deepseek-v2-lite"
MLA_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MLA_CONTEXT = (1024, 2048, 4096, 8192, 16384, 32768)
MLA_BATCH_MID = (3, 6, 12, 24, 48, 96, 192)
MLA_CONTEXT_MID = (1536, 3072, 6144, 12288, 24576)
#: batch x context cap of the MLA decode grid: 2^21 cached tokens = 65 GB of latent cache
#: (27 layers x 576 x 2 bytes per token) beside the 31 GB of weights on a 141 GB H200
MLA_MAX_CACHED_TOKENS = 2**21
MLA_PREFILL_POINTS = ((1, 512), (4, 512), (1, 1024), (2, 1024), (8, 1024), (1, 2048), (4, 2048), (16, 1024),
               (1, 4096), (2, 4096), (1, 8192), (2, 8192), (1, 16384))
LONG_8B = ((1, 2, 3, 4, 6, 8), (8192, 12288, 16384, 24576, 32768))
LONG_70B = ((1, 2, 4, 8), (8192, 16384, 32768))


def _mla_case(part, table, name, layers, pts, reps=7, eager=3) -> Case:
    col = "context" if table in (MLA_DECODE, MLA_DECODE_OOS) else "seq"
    return Case(part, ("mla", name, layers), table,
                tuple(dict(model=name, layers=layers, batch=b, **{col: n}, split=s) for b, n, s in pts), reps, eager)


def _long_cases(cfg: C.DenseConfig, grid, offset: int) -> Case:
    pts = checkerboard(*grid, offset=offset)
    return Case("dense_long", ("dense", cfg.name, cfg.tp, cfg.layers), DENSE_DECODE_LONG,
                tuple(dict(model=cfg.name, tp=cfg.tp, layers=cfg.layers, batch=b, context=c, split=s)
                      for b, c, s in pts), 7, 3)


def wide_cases(quick: bool) -> list[Case]:
    """The widened ground truth, cheapest families first (see the module docstring)."""
    if quick:
        mla = C.model_config("tiny-mla").num_layers
        return [
            _moe_case("moe_small", C.TINY_MOE, (1, 2, 4), MOE_SMALL, [s for _, s in alternate((1, 2, 4))]),
            _moe_case("moe_small", C.moe_config("tiny-mla", 1), (1, 3), MOE_SMALL, ["holdout", "fit"]),
            _mla_case("mla_decode", MLA_DECODE, "tiny-mla", mla, checkerboard((1, 2), (8, 16))),
            _mla_case("mla_prefill", MLA_PREFILL, "tiny-mla", mla, [(1, 16, "fit"), (2, 8, "holdout")]),
            _long_cases(C.TINY_DENSE, ((1, 2), (16, 32)), 0),
        ]
    cases = []
    for i, (name, ep) in enumerate(SMALL_MOE):
        splits = [s for _, s in alternate(SMALL_TOKENS, offset=i)]
        cases.append(_moe_case("moe_small", C.moe_config(name, ep), SMALL_TOKENS, MOE_SMALL, splits, 7, 3))
    layers = C.model_config(MLA_MODEL).num_layers
    cap = lambda b, c: b * c <= MLA_MAX_CACHED_TOKENS  # noqa: E731
    decode = checkerboard(MLA_BATCH, MLA_CONTEXT, cap) + checkerboard(MLA_BATCH_MID, MLA_CONTEXT_MID, cap, 1)
    cases.append(_mla_case("mla_decode", MLA_DECODE, MLA_MODEL, layers, sorted(decode)))
    cases.append(_mla_case("mla_prefill", MLA_PREFILL, MLA_MODEL, layers,
                           [(b, s, sp) for (b, s), sp in alternate(MLA_PREFILL_POINTS)], 5, 3))
    cases.append(_long_cases(C.LLAMA_8B, LONG_8B, 0))
    cases.append(_long_cases(C.LLAMA_70B_TP4, LONG_70B, 1))
    return cases


# ----------------------------------------------------------------------------- chunk (chunked prefill)

CHUNK_BATCH = (1, 4)
CHUNK_NEW = (512, 2048)
CHUNK_CONTEXT = (2048, 8192, 32768)


def chunk_cases(quick: bool) -> list[Case]:
    """Chunked prefill of a dense model: n new tokens per sequence after c cached ones."""
    cfg, batches, news, contexts = ((C.TINY_DENSE, (1, 2), (8, 16), (16, 32, 64)) if quick else
                                    (C.LLAMA_8B, CHUNK_BATCH, CHUNK_NEW, CHUNK_CONTEXT))
    ident = dict(model=cfg.name, tp=cfg.tp, layers=cfg.layers)
    pts = [dict(ident, batch=b, new=n, context=c, split=s)
           for i, b in enumerate(batches) for n, c, s in checkerboard(news, contexts, offset=i)]
    return [Case("chunk", ("dense", cfg.name, cfg.tp, cfg.layers), DENSE_CHUNK, tuple(pts), 7, 3)]


# ----------------------------------------------------------------------------- fp8moe (FP8 MoE layers)

FP8_TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
FP8_MOE = (("deepseek-v3", 4), ("deepseek-v3", 32))


def fp8moe_cases(quick: bool) -> list[Case]:
    """FP8 MoE layers of one EP rank (see the module docstring)."""
    models = (((C.TINY_MOE, (1, 4, 16)),) if quick else
              tuple((C.moe_config(name, ep), FP8_TOKENS) for name, ep in FP8_MOE))
    return [_moe_case("moe_fp8", cfg, toks, MOE_FP8, [s for _, s in alternate(toks, offset=i)], 7, 3, kind="moe_fp8")
            for i, (cfg, toks) in enumerate(models)]


# ----------------------------------------------------------------------------- fp8dense (FP8 dense model)

FP8_PREFILL = ((1, 512), (1, 1024), (2, 1024), (1, 2048), (4, 1024), (2, 2048), (1, 4096), (4, 2048), (1, 8192),
               (8, 2048))
FP8_DECODE = ((1, 4, 16, 64, 128, 256), (1024, 4096))
#: batch x context cap of the FP8 decode grid: 256 x 4096 ran out of the H200's memory (32 layers
#: of [B, 8, C, 128] BF16 K and V beside the weights and the captured graph)
FP8_DECODE_MAX_CACHED_TOKENS = 2**19


def fp8dense_cases(quick: bool) -> list[Case]:
    """Whole FP8 dense steps (see the module docstring)."""
    cfg, prefill, decode = ((C.TINY_DENSE, ((1, 8), (2, 16)), ((1, 2), (8, 16))) if quick else
                            (C.LLAMA_8B, FP8_PREFILL, FP8_DECODE))
    ident = dict(model=cfg.name, tp=cfg.tp, layers=cfg.layers)
    model = ("dense_fp8", cfg.name, cfg.tp, cfg.layers)
    return [Case("fp8_prefill", model, DENSE_PREFILL_FP8,
                 tuple(dict(ident, batch=b, seq=n, split=sp) for (b, n), sp in alternate(prefill)), 5, 3),
            Case("fp8_decode", model, DENSE_DECODE_FP8,
                 tuple(dict(ident, batch=b, context=n, split=sp)
                       for b, n, sp in checkerboard(*decode, lambda b, n: b * n <= FP8_DECODE_MAX_CACHED_TOKENS)), 7, 3)]


# ----------------------------------------------------------------------------- denseoos (unmeasured shapes)

#: (model, tp, layers): one rank's share, layers cut where the whole model's KV at the largest point
#: would not fit beside the weights (the predictor costs the same layer count)
OOS_MODELS = (("qwen-2.5-72b", 4, 80), ("qwen-2.5-72b", 8, 80), ("llama-3.1-70b", 8, 80),
              ("llama-3.1-70b", 2, 40), ("llama-3.1-405b", 8, 42), ("llama-3.1-8b", 2, 32))
OOS_PREFILL = ((1, 768), (1, 3072), (2, 1536), (3, 2048))
OOS_DECODE = ((1, 1536), (3, 3072), (12, 1536), (24, 6144), (48, 768), (96, 3072), (192, 1536))


def denseoos_cases(quick: bool) -> list[Case]:
    """BF16 dense steps of models and TP ranks off the tables (see the module docstring)."""
    models = ((C.TINY_DENSE.name, 1, None),) if quick else OOS_MODELS
    prefill, decode = (((1, 8), (2, 16)), ((1, 8), (3, 16))) if quick else (OOS_PREFILL, OOS_DECODE)
    out = []
    for name, tp, layers in models:
        layers = layers or C.model_config(name).num_layers
        ident = dict(model=name, tp=tp, layers=layers, split="holdout")
        model = ("dense", name, tp, layers)
        out += [Case(f"oos_{name}_tp{tp}", model, DENSE_PREFILL_OOS,
                     tuple(dict(ident, batch=b, seq=n) for b, n in prefill), 5, 3),
                Case(f"oos_{name}_tp{tp}", model, DENSE_DECODE_OOS,
                     tuple(dict(ident, batch=b, context=c) for b, c in decode), 7, 3)]
    return out


OOS_MOE = (("deepseek-v2", 4), ("deepseek-v2", 8), ("deepseek-v2", 32))
OOS_MOE_TOKENS = (4, 12, 48, 160, 640, 2048, 4096)


def moeoos_cases(quick: bool) -> list[Case]:
    """BF16 MoE layers of an expert shape off the grouped tables (see the module docstring)."""
    if quick:
        return [_moe_case("moeoos", C.TINY_MOE, (4, 16), MOE_OOS, ["holdout"] * 2)]
    return [_moe_case(f"moeoos_ep{ep}", C.moe_config(name, ep), OOS_MOE_TOKENS, MOE_OOS,
                      ["holdout"] * len(OOS_MOE_TOKENS), 7, 3) for name, ep in OOS_MOE]


OOS_MLA = (("deepseek-v2", 4), ("deepseek-v3", 4))
OOS_MLA_DECODE = ((1, 2048), (4, 1024), (8, 4096), (16, 8192), (32, 1536), (64, 6144), (128, 3072), (256, 1024))
OOS_MLA_PREFILL = ((1, 1024), (4, 1024), (2, 2048), (1, 4096), (1, 8192))


def mlaoos_cases(quick: bool) -> list[Case]:
    """Whole MLA models at the production head count, cut to a few layers (see the module docstring)."""
    models = (("tiny-mla", None),) if quick else OOS_MLA
    dec, pre = (((1, 16), (2, 8)), ((1, 8),)) if quick else (OOS_MLA_DECODE, OOS_MLA_PREFILL)
    out = []
    for name, layers in models:
        layers = layers or C.model_config(name).num_layers
        out += [_mla_case(f"mlaoos_{name}", MLA_DECODE_OOS, name, layers, [(b, c, "holdout") for b, c in dec]),
                _mla_case(f"mlaoos_{name}", MLA_PREFILL_OOS, name, layers, [(b, n, "holdout") for b, n in pre], 5, 3)]
    return out


# ----------------------------------------------------------------------------- check (calibrate --check)


def check_cases(quick: bool) -> list[Case]:
    """A handful of whole-model steps for ``calibrate --check``: dense prefill and decode, an MoE
    layer (one large, one small token count), an MLA decode step (about a minute on an H200)."""
    if quick:
        dense, moe, mla, mla_layers = C.TINY_DENSE, C.TINY_MOE, "tiny-mla", None
        pre, dec, big, small, mla_pts = ((1, 16),), ((2, 16),), (8,), (2,), ((2, 16, "check"),)
    else:
        dense, moe, mla, mla_layers = C.LLAMA_8B, C.DSV3_MOE_EP4, MLA_MODEL, None
        pre, dec, big, small = ((1, 2048), (4, 1024)), ((1, 1024), (32, 2048), (128, 4096)), (512, 4096), (8,)
        mla_pts = ((1, 4096, "check"), (32, 4096, "check"), (128, 8192, "check"))
    layers = C.model_config(mla).num_layers if mla_layers is None else mla_layers
    return [*_dense_cases("check_dense", dense, pre, dec, reps=(5, 7)),
            _moe_case("check_moe", moe, big, reps=7, eager=3),
            _moe_case("check_moe", moe, small, MOE_SMALL, ["check"], 7, 3),
            _mla_case("check_mla", MLA_DECODE, mla, layers, mla_pts)]


SETS = {"main": main_cases, "wide": wide_cases, "chunk": chunk_cases, "check": check_cases, "fp8moe": fp8moe_cases,
        "fp8dense": fp8dense_cases, "denseoos": denseoos_cases,
        "moeoos": moeoos_cases, "mlaoos": mlaoos_cases}
