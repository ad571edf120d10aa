"""One step, both models: our step cost vs aiconfigurator's single-point estimate (``--steps``).

A handful of decode steps (TPOT per output token at 4,000-4,500 tokens of context) and prefill
iterations (4,000-token prompts, one or two per attention-DP rank) on the layouts the two
tools pick, priced by:

* ours: ``simulator.instance.InstanceCost.step`` (what the planner and the engine call) at
  uniform expert routing, at a busiest-rank imbalance of 1.8, and with the decode all-to-all
  over NVLink inside the node (``aic_layouts.VARIANTS``);
* theirs: ``aiconfigurator cli estimate --estimate-mode static_gen|static_ctx`` (no correction
  factors in static mode), with its default power-law expert routing and with balanced routing
  (the ``workload_distribution`` patch of ``vs_aiconfigurator.py``).

A step compare isolates kernel and communication assumptions from the serving-level ones
(MTP, SLO percentile, correction factors, queueing) that the other sections measure.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aic_layouts import PLAN, _choice, _dispatch_pure_rdma

#: (phase, sequences per attention-DP rank, aiconfigurator parallel string, MTP depth)
STEPS = (
    ("decode", 16, "tp1pp1dp8etp1ep8", 0), ("decode", 64, "tp1pp1dp8etp1ep8", 0),
    ("decode", 128, "tp1pp1dp8etp1ep8", 0), ("decode", 26, "tp1pp1dp8etp2ep4", 0),
    ("decode", 64, "tp1pp1dp8etp1ep8", 1), ("decode", 112, "tp1pp1dp8etp1ep8", 1),
    ("prefill", 1, "tp1pp1dp8etp1ep8", 0), ("prefill", 2, "tp1pp1dp8etp1ep8", 0),
    ("prefill", 1, "tp1pp1dp16etp1ep16", 0),
)
ACCEPTANCE = 0.85
PROMPT, OUTPUT = 4000, 500


def ours_ms(phase: str, b: int, parallel: str, mtp: int, imbalance: float = 1.0, pure_rdma: bool = False) -> float:
    """Our TPOT (decode, ms per output token) or iteration time (prefill, ms)."""
    import planner
    from planner.analytic import Evaluator, UniformBatch
    from planner.space import context_from_plan

    with _dispatch_pure_rdma(pure_rdma):
        ctx = context_from_plan(planner.load_plan(PLAN, [f"search.moe_imbalance={imbalance}"]))
        c = _choice(phase, parallel, **{phase: {"mtp_depth": mtp}})
        dp = c.layout.dp
        inst = Evaluator(ctx).pool_model(c).inst
        if phase == "decode":
            shape = UniformBatch(phase="decode", num_seqs=b * dp, new_tokens=1 + mtp,
                                 context_tokens=PROMPT + OUTPUT // 2)
            return inst.step(shape).seconds * 1e3 / (1 + ACCEPTANCE * mtp)
        return inst.step(UniformBatch(phase="prefill", num_seqs=b * dp, new_tokens=PROMPT, context_tokens=0)).seconds * 1e3


def theirs_ms(aic: str, patched_main: Path, phase: str, b: int, parallel: str, mtp: int, distribution: str) -> float:
    """aiconfigurator's static estimate: TPOT (decode) or TTFT (prefill) in ms."""
    from aic_layouts import parse_parallel
    from aic_run import AIC_MODEL, timed

    p = parse_parallel(parallel)
    cmd = [str(Path(aic).parent / "python"), str(patched_main), "cli", "estimate", "--model", AIC_MODEL,
           "--system", "h200_sxm", "--isl", str(PROMPT), "--osl", str(OUTPUT), "--log-level", "ERROR", "--no-color",
           "--estimate-mode", "static_gen" if phase == "decode" else "static_ctx", "--batch-size", str(b),
           "--tp", str(p["tp"]), "--pp", str(p["pp"]), "--dp", str(p["dp"]), "--etp", str(p["etp"]), "--ep", str(p["ep"])]
    if mtp:
        cmd += ["--nextn", str(mtp), "--nextn-accepted", str(ACCEPTANCE * mtp)]
    if phase == "prefill":  # their H200 data has no FP8 context-MLA rows; the default search falls back the same way
        cmd += ["--fmha-quant-mode", "bfloat16"]
    r = timed(cmd, {**os.environ, "AIC_MOE_DISTRIBUTION": distribution}, cwd=patched_main.parent)
    m = re.search(r"(TPOT|TTFT):\s+([\d.]+) ms", r["stdout"])
    if r["rc"] != 0 or m is None:
        raise SystemExit(f"aiconfigurator estimate failed (rc {r['rc']}): {' '.join(cmd)}\n{r['stderr_tail']}")
    return float(m.group(2))


def compare_steps(aic: str, out: Path) -> list[dict]:
    """Every ``STEPS`` row priced both ways (see the module docstring)."""
    from aic_run import PATCHED_MAIN

    out.mkdir(parents=True, exist_ok=True)
    main = out / "patched_main.py"
    main.write_text(PATCHED_MAIN)
    rows = []
    for phase, b, parallel, mtp in STEPS:
        row = {"phase": phase, "per_rank": b, "parallel": parallel, "mtp": mtp,
               "ours_uniform": ours_ms(phase, b, parallel, mtp), "ours_imbalance_1_8": ours_ms(phase, b, parallel, mtp, 1.8),
               "theirs_balanced": theirs_ms(aic, main, phase, b, parallel, mtp, "balanced"),
               "theirs_power_law": theirs_ms(aic, main, phase, b, parallel, mtp, "power_law")}
        if phase == "decode":
            row["ours_uniform_pure_rdma"] = ours_ms(phase, b, parallel, mtp, pure_rdma=True)
        rows.append(row)
        print(f"  step {phase} {b}/rank {parallel} mtp{mtp}: ours {row['ours_uniform']:.1f} ms, "
              f"theirs {row['theirs_balanced']:.1f} ms (balanced)", file=sys.stderr, flush=True)
    return rows


def steps_report(rows: list[dict]) -> list[str]:
    L = ["", "One step in both models (decode: TPOT ms per output token at 4.0-4.5K context; prefill: iteration ms",
         "of 4,000-token prompts; ours: uniform routing / busiest rank x1.8 / decode all-to-all pure RDMA;",
         "theirs: static estimate, balanced / power-law routing):",
         f"  {'step':<40} {'ours':>7} {'x1.8':>7} {'RDMA':>7} {'bal.':>7} {'p-law':>7}  ours/bal."]
    for r in rows:
        name = f"{r['phase']} {r['per_rank']}/rank {r['parallel']}" + (" MTP1" if r["mtp"] else "")
        nv = f"{r['ours_uniform_pure_rdma']:7.1f}" if "ours_uniform_pure_rdma" in r else f"{'-':>7}"
        L.append(f"  {name:<40} {r['ours_uniform']:7.1f} {r['ours_imbalance_1_8']:7.1f} {nv} "
                 f"{r['theirs_balanced']:7.1f} {r['theirs_power_law']:7.1f}  {r['ours_uniform'] / r['theirs_balanced']:.2f}")
    return L
