"""Driver: ``python -m calibration.groundtruth --out DIR [--set main|wide|chunk|check] [options]``.

Measures the cases of one set (``calibration.groundtruth.cases``) in order, appending one row
per point to the set's CSV tables (rows already there are skipped: a rerun resumes), stops
cleanly at ``--max-seconds``, prints the device-time plan first and writes
``groundtruth_metadata.json`` last.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

from calibration.groundtruth import cases as K
from calibration.groundtruth import configs as C
from calibration.groundtruth.common import free, log, time_step
from calibration.groundtruth.plan import format_plan, plan_cases
from calibration.store import CsvTable

EXCLUDED = {
    "main": ["llama-3.1-70b tp4: the 2 TP all-reduces per layer and the vocab-parallel logits gather",
             "deepseek-v3 ep4: dispatch/combine all-to-all; the router's own choice does not drive "
             "the dispatch (uniform random routing over all 4 ranks' tokens does, seeded)"],
    "wide": ["moe layers at ep > 1: dispatch/combine all-to-all (routing is seeded uniform over all ep ranks' "
             "tokens; the router runs but its choice does not drive the dispatch)",
             "whole MLA models: every MoE layer routes seeded uniform (a new draw per layer), the router runs "
             "but does not drive the routing; no TP/EP collectives (one GPU)",
             "llama-3.1-70b tp4 rank: the 2 TP all-reduces per layer and the logits gather"],
}
EXCLUDED["fp8moe"] = ["dispatch/combine all-to-all (routing seeded uniform over all ep ranks' tokens; the router "
                      "runs in BF16 but does not drive the dispatch); the received rows arrive in e4m3 with their "
                      "row scales (prepared outside the step, as an FP8 dispatch delivers them)"]
EXCLUDED["fp8dense"] = ["nothing of the step (one GPU, TP 1): embedding, every layer (projections in e4m3 with rowwise "
                        "activation quantisation), final norm and the logits (BF16 LM head)"]
EXCLUDED["denseoos"] = ["one tensor-parallel rank's share of each model on one GPU: the 2 TP all-reduces per layer "
                        "and the vocab-parallel logits gather (ranks at TP 1 exclude nothing)"]
EXCLUDED["moeoos"] = ["dispatch/combine all-to-all (routing seeded uniform over all ep ranks' tokens; the router "
                      "runs but does not drive the dispatch)"]
EXCLUDED["mlaoos"] = ["nothing of the cut model's step (one GPU, no TP/EP): every MoE layer routes seeded uniform (a "
                      "new draw per layer), the router runs but does not drive the routing"]
EXCLUDED["check"] = EXCLUDED["main"] + EXCLUDED["wide"][:2]
EXCLUDED["chunk"] = ["nothing of the step (one GPU, TP 1): embedding, every layer, final norm and the last token's "
                     "logits; the cached history is random (one draw, copied into every layer's cache)"]


def build(model: tuple, device: str):
    """The torch model of a case's ``model`` tuple (see ``cases.Case``)."""
    kind, name, *args = model
    if kind in ("dense", "dense_fp8"):
        from calibration.groundtruth.dense import DenseModel

        tp, layers = args
        return DenseModel(replace(C.dense_config(name, tp), layers=layers), device,
                          dtype="fp8" if kind == "dense_fp8" else "bf16")
    if kind == "moe":
        from calibration.groundtruth.moe import MoELayer

        return MoELayer(C.moe_config(name, args[0]), device)
    if kind == "moe_fp8":
        from calibration.groundtruth.moe import Fp8MoELayer

        return Fp8MoELayer(C.moe_config(name, args[0]), device)
    from calibration.groundtruth.mla import MLAModel

    return MLAModel(C.model_config(name, args[0]), device)


def step_of(model, table: K.Table, p: dict):
    """(closure, info columns) of one point."""
    if table in (K.DENSE_PREFILL, K.DENSE_PREFILL_FP8, K.DENSE_PREFILL_OOS):
        return model.prefill(p["batch"], p["seq"]), {}
    if table is K.DENSE_CHUNK:
        return model.chunk_prefill(p["batch"], p["new"], p["context"])
    if table in (K.DENSE_DECODE, K.DENSE_DECODE_LONG, K.DENSE_DECODE_FP8, K.DENSE_DECODE_OOS):
        fn = model.decode(p["batch"], p["context"])
        return fn, ({"attn_backend": model.decode_backend(p["batch"], p["context"])}
                    if table is K.DENSE_DECODE_LONG else {})
    if table in (K.MOE_LAYER, K.MOE_SMALL, K.MOE_FP8, K.MOE_OOS):
        return model.step(p["tokens_per_rank"], p["seed"])
    if table in (K.MLA_DECODE, K.MLA_DECODE_OOS):
        return model.decode(p["batch"], p["context"])
    return model.prefill(p["batch"], p["seq"])


def run_cases(out_dir: Path, cases: list[K.Case], device: str, deadline: float) -> int:
    """Measure every point not yet in its table; returns the number of rows written."""
    import torch

    written, model, model_key = 0, None, None
    for case in cases:
        table = CsvTable(out_dir / case.table.file, case.table.columns, case.table.key)
        todo = [p for p in case.points if not table.has(**{k: p[k] for k in case.table.key})]
        if not todo:
            continue
        if time.monotonic() > deadline:
            log(f"ground truth: time budget reached before {case.part}")
            break
        if case.model != model_key:
            model = None
            free(torch)
            t0 = time.monotonic()
            model, model_key = build(case.model, device), case.model
            log(f"{'/'.join(map(str, case.model))}: built in {time.monotonic() - t0:.1f}s")
        for p in todo:
            if time.monotonic() > deadline:
                log("ground truth: time budget reached")
                return written
            fn, info = step_of(model, case.table, p)
            t, te, gr = time_step(fn, device, repeats=case.repeats, eager_repeats=case.eager_repeats)
            table.append(dict(p, **info, seconds=t, seconds_eager=te, cuda_graph=gr))
            written += 1
            shown = " ".join(f"{k}={v}" for k, v in p.items() if k not in ("model", "tp", "layers", "ep", "seed"))
            log(f"  {case.part} {shown}: {t * 1e3:.3f} ms (eager {te * 1e3:.3f})")
            fn = None
            free(torch)
    return written


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m calibration.groundtruth",
                                description="Whole-model ground truth: torch reference steps on one GPU.")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--set", dest="set_name", default="main", choices=sorted(K.SETS),
                   help="main: the first run's tables; wide: issue-14 regimes with a fit/holdout split; "
                        "chunk: chunked prefill after cached context (fit/holdout); fp8moe: FP8 MoE layers "
                        "(e4m3 experts, rowwise scales); fp8dense: an FP8 Llama-8B-shaped model; check: the steps of calibrate --check")
    p.add_argument("--device", default=None)
    p.add_argument("--quick", action="store_true", help="tiny models (CPU tests)")
    p.add_argument("--layers", type=int, default=None, help="override layer counts (main set; smoke runs)")
    p.add_argument("--max-points", type=int, default=None, help="first N points of each list (main set)")
    p.add_argument("--parts", default=None, help="comma-separated parts of the set (default: all)")
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--plan-only", action="store_true", help="print the device-time plan and exit")
    return p.parse_args(argv)


def select(args: argparse.Namespace) -> list[K.Case]:
    if args.set_name == "main":
        cases = K.main_cases(args.quick, args.layers, args.max_points)
    else:
        cases = K.SETS[args.set_name](args.quick)
    if args.parts:
        parts = set(args.parts.split(","))
        unknown = parts - {c.part for c in cases}
        if unknown:
            print(f"unknown part(s) {sorted(unknown)} of set {args.set_name} "
                  f"(valid: {', '.join(sorted({c.part for c in cases}))})", file=sys.stderr)
            raise SystemExit(2)
        cases = [c for c in cases if c.part in parts]
    return cases


def measure_set(out_dir: Path, cases: list[K.Case], set_name: str, device: str, deadline: float = math.inf,
                extra: dict | None = None) -> int:
    """Measure ``cases`` into ``out_dir`` (resuming) and write ``groundtruth_metadata.json``;
    returns the number of rows written."""
    from calibration import metadata
    from calibration.store import ensure_dir

    ensure_dir(out_dir)
    t0 = time.monotonic()
    written = run_cases(out_dir, cases, device, deadline)
    log(f"ground truth {set_name}: {written} rows in {time.monotonic() - t0:.0f}s")
    meta = metadata.collect(device, extra={
        "kind": "ground truth (whole-model steps, one GPU)", "set": set_name,
        "parts": sorted({c.part for c in cases}), "complete": time.monotonic() <= deadline,
        "weights": "random bf16 (seeded); activations bf16",
        "excluded": EXCLUDED[set_name],
        "split": "wide and chunk tables: 'split' is fit or holdout, a checkerboard over each grid (alternation "
                 "along lists), fixed before measuring (calibration/groundtruth/cases.py)",
        "timing": "CUDA events; median of the repeats after 2 warm-ups; 'seconds' is a CUDA-graph replay "
                  "of the whole step when cuda_graph=1, 'seconds_eager' the eager step",
        "attention": "SDPA, torch's choice among flash/cuDNN/efficient (attn_backend where recorded); dense "
                     "prefill GQA via enable_gqa or repeat_kv; dense decode GQA via pack_q; MLA decode absorbed "
                     "(heads as query rows of one latent KV head, dims 576/512), MLA prefill non-absorbed; "
                     "chunked prefill lower-right causal (torch.nn.attention.bias.causal_lower_right)",
        "kv_cache": "pre-allocated per layer (bf16), random history: dense [B, Hkv, C+1, D], MLA [B, C+1, 576]",
        "moe_experts": "torch._grouped_mm (ragged, CUTLASS) over pairs sorted by expert when available (impl "
                       "column), else a loop of per-expert matmuls; then index_add_; fp8moe: e4m3 weights with "
                       "unit per-channel scales, rowwise-quantised activations, torch._scaled_grouped_mm (else a "
                       "loop of torch._scaled_mm) and torch._scaled_mm for the shared experts",
        **(extra or {}),
    })
    metadata.write(out_dir / "groundtruth_metadata.json", meta)
    return written


def run_check(out_dir: Path, device: str, quick: bool, deadline: float = math.inf) -> int:
    """The ``check`` set (``calibration.run --check``): a few whole-model steps into ``out_dir``."""
    cases = K.check_cases(quick)
    log("calibrate --check: ground-truth steps\n" + format_plan(plan_cases(cases)))
    return measure_set(out_dir, cases, "check", device, deadline, extra={"quick": quick})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cases = select(args)
    log(f"ground truth set {args.set_name}{' (quick)' if args.quick else ''}: plan\n" + format_plan(plan_cases(cases)))
    if args.plan_only:
        return 0
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    deadline = math.inf if args.max_seconds is None else time.monotonic() + args.max_seconds
    measure_set(args.out, cases, args.set_name, device, deadline,
                extra={"quick": args.quick, "layers_override": args.layers})
    return 0
