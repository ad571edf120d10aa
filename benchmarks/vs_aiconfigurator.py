"""clustersim plan vs NVIDIA aiconfigurator on one question (issue 15); run by vs_aiconfigurator.sh.

The question: DeepSeek-V3 (FP8) on 32 H200 SXM, 4,000-token prompts, 500-token outputs,
TTFT <= 2 s, TPOT <= 50 ms (``examples/plan_deepseek-v3_h200x32.yaml``; aiconfigurator
``cli default`` with the same numbers, its default TRT-LLM backend).

1. **Speed**: both commands as a user runs them (answer on stdout, no output directory),
   alternated ``--runs`` times in fresh processes; wall time and peak RSS from ``os.wait4``
   (the rusage GNU ``/usr/bin/time -v`` prints: the largest single process of the tree, so
   worker processes are not summed). Ratio = median wall of theirs / median wall of ours.
2. **Answers**: our best verified layout (``--json``), aiconfigurator's best colocated (agg)
   and disaggregated layouts (its stdout tables), side by side.
3. **Their layouts in our model** (``aic_layouts.py``): analytic, simulator-verified and
   simulated at their claimed rate; then one mechanism changed at a time.
4. **Our layout in their model**: ``aiconfigurator cli exp`` restricted to our best layout that
   their TRT-LLM backend can express (attention TP x DP with both > 1 it cannot).
5. ``--ladder``: aiconfigurator's own search with our assumptions switched on one after the
   other (MTP, no correction factors, prefill batching, balanced expert routing, BF16 KV), and
   our search with theirs (no MTP, power-law-like imbalance, FP8 KV; ``aic_layouts.OUR_LADDER``).
6. ``--steps``: single decode steps and prefill iterations in both models (``aic_steps.py``).

Usage: python benchmarks/vs_aiconfigurator.py --aic VENV/bin/aiconfigurator [--runs 2]
       [--ladder] [--steps] [--no-layouts] [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from aic_layouts import (
    PLAN,
    VARIANTS,
    applies,
    evaluate_layout,
    our_ladder,
    parse_parallel,
)
from aic_run import AIC_MODEL, aic_cmd, exp_answer, run_aic_exp, timed


def ours_cmd() -> list[str]:
    return [sys.executable, "-m", "clustersim.cli", "plan", str(PLAN), "--json", "--quiet"]


def time_both(aic: str, runs: int) -> dict:
    """Alternate ours / theirs ``runs`` times; each run's figures and the median ratio."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLUSTERSIM_PROGRESS": "never"}
    ours, theirs = [], []
    for i in range(runs):
        for name, cmd, sink, e in (("clustersim", ours_cmd(), ours, env), ("aiconfigurator", aic_cmd(aic), theirs, None)):
            r = timed(cmd, e, cwd=ROOT)
            print(f"  run {i + 1}/{runs} {name:<14} {r['wall_s']:6.1f} s wall  {r['cpu_s']:6.1f} s cpu  "
                  f"{r['peak_rss_mib']:6.0f} MiB peak  rc {r['rc']}", file=sys.stderr, flush=True)
            if r["rc"] != 0:
                raise SystemExit(f"{name} failed (rc {r['rc']}): {' '.join(cmd)}\n{r['stderr_tail']}")
            sink.append(r)
    med = {k: statistics.median(r["wall_s"] for r in v) for k, v in (("ours", ours), ("theirs", theirs))}
    return {"ours": ours, "theirs": theirs, "ratio_wall": med["theirs"] / med["ours"], "median_wall_s": med,
            "pair_ratios": [t["wall_s"] / o["wall_s"] for o, t in zip(ours, theirs)]}


# ----------------------------------------------------------------------------- answers

def _table_rows(text: str, title: str) -> list[dict]:
    """Rows of the ``title`` table of aiconfigurator's stdout (``| a | b |`` lines)."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip().startswith(title)), None)
    if start is None:
        return []
    rows, header = [], None
    for ln in lines[start + 1:]:
        s = ln.strip()
        if s.startswith("+"):
            continue
        if not s.startswith("|"):
            break
        cells = [c.strip() for c in s.strip("|").split("|")]
        if header is None:
            header = cells
        else:
            rows.append(dict(zip(header, cells)))
    return rows


def _lead_int(text: str) -> int:
    return int(re.match(r"\s*(\d+)", text).group(1))


def _aic_row(mode: str, r: dict) -> dict:
    """One row of an aiconfigurator top-configurations table as a plain answer dict."""
    a = {"tool": "aiconfigurator", "mode": mode, "tokens_per_s_per_gpu": float(r["tokens/s/gpu"]),
         "tokens_per_s_per_user": float(r["tokens/s/user"]), "request_rate": float(r["req/s"]),
         "ttft_ms": float(r["TTFT"]), "gpus": _lead_int(r["total_gpus (used)"]), "replicas": int(r["replicas"])}
    a["tpot_ms"] = 1000.0 / a["tokens_per_s_per_user"]  # their tokens/s/user is 1000 / TPOT (a mean)
    if mode == "agg":
        a.update(parallel=r["parallel"], bs=int(r["bs"]))
        a["layout"] = f"{a['replicas']} x {r['parallel']} (agg), bs {a['bs']}/rank"
    else:
        n = a["replicas"]
        a.update(p_parallel=r["(p)parallel"], p_workers=n * int(r["(p)workers"]), p_bs=int(r["(p)bs"]),
                 d_parallel=r["(d)parallel"], d_workers=n * int(r["(d)workers"]), d_bs=int(r["(d)bs"]))
        a["layout"] = (f"{a['p_workers']}P x {r['(p)parallel']} + {a['d_workers']}D x {r['(d)parallel']}, "
                       f"decode bs {a['d_bs']}/rank")
    return a


def parse_aic_tables(text: str) -> dict:
    """aiconfigurator's answers from its stdout: ``agg`` and ``disagg`` (rank 1), ``top_agg`` and
    ``top_disagg`` (every row of each table) and ``best`` (the higher tokens/s/GPU of the two)."""
    out = {}
    for mode in ("agg", "disagg"):
        rows = [_aic_row(mode, r) for r in _table_rows(text, f"{mode} Top Configurations")]
        if rows:
            out[mode], out[f"top_{mode}"] = rows[0], rows
    if not out:
        raise ValueError("no 'agg/disagg Top Configurations' table in aiconfigurator's output")
    out["best"] = max((out[m] for m in ("agg", "disagg") if m in out), key=lambda a: a["tokens_per_s_per_gpu"])
    return out


def _pool_text(row: dict, role: str) -> str:
    return (f"tp{int(row[f'{role}_attn_tp'])}pp{int(row[f'{role}_pp'])}dp{int(row[f'{role}_attn_dp'])}"
            f"etp{int(row[f'{role}_moe_tp'])}ep{int(row[f'{role}_moe_ep'])}")


def parse_ours(text: str) -> dict:
    """Our best verified answer from ``clustersim plan --json``, plus the rows aiconfigurator's
    TRT-LLM backend can express (attention TP or DP of 1 in every pool)."""
    doc = json.loads(text)
    rows = [r for r in doc["ranked"] if r.get("verified") == "yes"]
    if not rows:
        raise ValueError(f"clustersim plan verified no layout (status {doc.get('status')})")

    def answer(r: dict) -> dict:
        a = {"tool": "clustersim", "mode": r["mode"], "layout": r["layout"], "gpus": int(r["devices"]),
             "tokens_per_s_per_gpu": r["sim_tokens_per_s_per_device"], "tokens_per_s_per_user": r["tokens_per_s_per_user"],
             "request_rate": r["sim_capacity_rps"], "ttft_ms": r["ttft_ms"], "tpot_ms": r["tpot_ms"]}
        roles = ("prefill", "decode") if r["mode"] == "disaggregated" else ("pool",)
        a["parallel"] = {role: _pool_text(r, role) for role in roles if f"{role}_attn_tp" in r}
        a["workers"] = {role: int(r[f"{role}_instances"]) for role in roles if f"{role}_instances" in r}
        a["mtp"] = any(r.get(f"{role}_mtp_depth", 0) for role in roles)
        return a

    def expressible(a: dict) -> bool:
        return all(min(parse_parallel(p)["tp"], parse_parallel(p)["dp"]) == 1 for p in a["parallel"].values())

    sim = {v["id"]: v for v in doc.get("verification", [])}
    best = answer(rows[0])
    v = sim.get(rows[0]["id"], {})
    if "sim_ttft_at_capacity_ms" in v:  # the simulator's p90s at the verified rate, not the analytic claim
        best.update(ttft_ms=v["sim_ttft_at_capacity_ms"], tpot_ms=v["sim_tpot_at_capacity_ms"],
                    tokens_per_s_per_user=1000.0 / v["sim_tpot_at_capacity_ms"])
    return {"best": best, "expressible": next((answer(r) for r in rows if expressible(answer(r))), None)}


# ----------------------------------------------------------------------------- aiconfigurator experiments

#: disaggregated experiment base: the question, both pools on H200 SXM (TRT-LLM, its defaults)
_EXP_BASE = {"serving_mode": "disagg", "isl": 4000, "osl": 500, "ttft": 2000.0, "tpot": 50.0,
             "prefill_model_path": AIC_MODEL, "decode_model_path": AIC_MODEL,
             "prefill_system_name": "h200_sxm", "decode_system_name": "h200_sxm"}
_MTP = {"nextn": 1, "nextn_accepted": 0.85}  # our plan's MTP depth and acceptance
#: aiconfigurator's search with our assumptions switched on cumulatively (name, changes, balanced routing)
LADDER = (
    ("their defaults", {}, False),
    ("+ MTP 1, 0.85 accepted", _MTP, False),
    ("+ no correction factors (latency x1.1/x1.08, rate x0.9/x0.92, TTFT x1.8 -> 1)",
     {"prefill_latency_correction": 1.0, "decode_latency_correction": 1.0, "rate_match_prefill_degradation": 1.0,
      "rate_match_decode_degradation": 1.0, "autoscale_ttft_correction_factor": 1.0}, False),
    ("+ up to 4 prompts per prefill rank (theirs: 1)", {"prefill_max_batch_size": 4}, False),
    ("+ balanced expert routing (theirs: power law 1.01; patched)", {}, True),
    ("+ BF16 KV cache (theirs: FP8)", {"prefill_kvcache_quant_mode": "bfloat16",
                                       "decode_kvcache_quant_mode": "bfloat16"}, True),
)


def _pool_candidates(role: str, parallel: str) -> dict:
    p = parse_parallel(parallel)
    return {f"{role}_num_gpu_candidates": [p["tp"] * p["dp"] * p["pp"]], f"{role}_tp_candidates": [p["tp"]],
            f"{role}_pp_candidates": [p["pp"]], f"{role}_dp_candidates": [p["dp"]],
            f"{role}_moe_tp_candidates": [p["etp"]], f"{role}_moe_ep_candidates": [p["ep"]]}


def ours_in_aic(aic: str, ours: dict | None, out: Path) -> dict:
    """aiconfigurator's figure for our (expressible, disaggregated) layout, with and without MTP."""
    if ours is None or ours["mode"] != "disaggregated":
        return {"skipped": "no disaggregated layout of ours that TRT-LLM's attention TP x DP can express"}
    base = {**_EXP_BASE, "total_gpus": ours["gpus"], **_pool_candidates("prefill", ours["parallel"]["prefill"]),
            **_pool_candidates("decode", ours["parallel"]["decode"])}
    rows = run_aic_exp(aic, {"ours_no_mtp": base, "ours_mtp": {**base, **_MTP}}, out)
    return {"layout": ours["layout"], "no_mtp": exp_answer(rows["ours_no_mtp"]), "mtp": exp_answer(rows["ours_mtp"])}


def ladder(aic: str, out: Path) -> list[dict]:
    """``LADDER``: aiconfigurator's best disaggregated answer as our assumptions accumulate."""
    task, steps = {**_EXP_BASE, "total_gpus": 32}, []
    for i, (label, changes, balanced) in enumerate(LADDER):
        task = {**task, **changes}
        steps.append((f"step{i}", label, dict(task), balanced))
    results = {}
    for balanced in (False, True):
        batch = {name: t for name, _, t, b in steps if b == balanced}
        if batch:
            results.update(run_aic_exp(aic, batch, out / ("balanced" if balanced else "power_law"), balanced))
    return [{"step": label, "answer": exp_answer(results[name])} for name, label, _, _ in steps]


# ----------------------------------------------------------------------------- their layouts in our model

def their_layouts_in_ours(aic_answers: dict) -> dict:
    """``aic_layouts.evaluate_layout`` of their rank-1 agg and disagg layouts: as they run
    them (verified, and simulated at their rate), then each ``VARIANTS`` change that applies,
    alone; and every other row of their tables as they run it (analytic only)."""
    out = {}
    for mode in ("disagg", "agg"):
        a = aic_answers.get(mode)
        if a is None:
            continue
        roles = {"pool"} if mode == "agg" else {"prefill", "decode"}
        rows = []
        for i, (label, overrides, changes) in enumerate(VARIANTS):
            if i and not applies(roles, overrides, changes):
                continue
            r = evaluate_layout(a, overrides, changes, verify=i == 0, at_rate=i == 0)
            r["variant"] = label
            rows.append(r)
            print(f"  ours at their {mode} layout, {label}: "
                  f"{r.get('tokens_per_s_per_gpu', float('nan')):.1f} tok/s/GPU", file=sys.stderr, flush=True)
        others = [{"aic": b, "ours": evaluate_layout(b, verify=False, at_rate=False)}
                  for b in aic_answers.get(f"top_{mode}", [])[1:]]
        out[mode] = {"aic": a, "ours": rows, "others": others}
    return out


# ----------------------------------------------------------------------------- report

def _ans_line(label: str, a: dict | None) -> str:
    if a is None:
        return f"  {label:<44} (no answer)"
    return (f"  {label:<44} {a['tokens_per_s_per_gpu']:7.1f} {a['tokens_per_s_per_user']:6.1f} "
            f"{a['ttft_ms']:7.0f} {a['tpot_ms']:6.1f}  {a['layout']}")


def report(res: dict) -> str:
    L = []
    t = res.get("timing")
    if t:
        L.append("Speed (same question, alternating runs, whole processes):")
        for name, key in (("clustersim plan", "ours"), ("aiconfigurator cli default", "theirs")):
            w = [r["wall_s"] for r in t[key]]
            m = [r["peak_rss_mib"] for r in t[key]]
            L.append(f"  {name:<28} wall {min(w):6.1f}-{max(w):6.1f} s (median {statistics.median(w):6.1f})  "
                     f"peak RSS {max(m):5.0f} MiB  cpu {statistics.median(r['cpu_s'] for r in t[key]):6.1f} s")
        L.append(f"  wall ratio (aiconfigurator / clustersim, medians): {t['ratio_wall']:.2f}x  "
                 f"(per pair: {', '.join(f'{x:.2f}' for x in t['pair_ratios'])})")
    hdr = f"  {'':<44} {'tok/s/GPU':>7} {'tok/s/user':>6} {'TTFT ms':>7} {'TPOT ms':>6}  layout"
    L += ["", "Best answers (ours: simulator-verified, p90 SLOs; theirs: their model, mean TPOT):", hdr]
    L.append(_ans_line("clustersim best", res["ours"]["best"]))
    for mode in ("agg", "disagg"):
        L.append(_ans_line(f"aiconfigurator best {mode}", res["aic"].get(mode)))
    b, a = res["ours"]["best"], res["aic"]["best"]
    L.append(f"  ratio of best tok/s/GPU (ours / theirs): {b['tokens_per_s_per_gpu'] / a['tokens_per_s_per_gpu']:.2f}x")
    for mode, block in res.get("their_layouts", {}).items():
        a = block["aic"]
        L += ["", (f"Their best {mode} layout ({a['layout']}) in our model; theirs: "
                   f"{a['tokens_per_s_per_gpu']:.1f} tok/s/GPU at {a['tokens_per_s_per_user']:.1f} tok/s/user:")]
        for r in block["ours"]:
            if not r["feasible"]:
                L.append(f"  {r['variant']:<58} infeasible: {r['reason']}")
                continue
            x = r["tokens_per_s_per_gpu"]
            L.append(f"  {r['variant']:<58} {x:7.1f} tok/s/GPU {r['tokens_per_s_per_user']:5.1f} tok/s/user "
                     f"({x / a['tokens_per_s_per_gpu']:.2f}x theirs)"
                     + (f"  verified: {r['verified']}" if "verified" in r else ""))
            s = r.get("at_aic_rate")
            if s:
                L.append(f"    simulated at their {s['rate_per_s']:.2f} req/s: TTFT p90 {s['ttft_p_ms']:.0f} ms "
                         f"(mean {s['ttft_mean_ms']:.0f}; theirs {a['ttft_ms']:.0f}), TPOT p90 {s['tpot_p_ms']:.1f} ms "
                         f"(mean {s['tpot_mean_ms']:.1f}; theirs {a['tpot_ms']:.1f}); SLO {'met' if s['met'] else 'missed'}")
        if block.get("others"):
            L.append(f"  their other {mode} rows, as they run them (ours analytic vs theirs, tok/s/GPU):")
        for o in block.get("others", []):
            x = o["ours"].get("tokens_per_s_per_gpu") if o["ours"]["feasible"] else None
            L.append(f"    {o['aic']['layout']:<62} theirs {o['aic']['tokens_per_s_per_gpu']:6.1f}  ours "
                     + (f"{x:6.1f} ({x / o['aic']['tokens_per_s_per_gpu']:.2f}x)" if x is not None
                        else f"infeasible: {o['ours']['reason']}"))
    oi = res.get("ours_in_aic")
    if oi:
        L += ["", "Our layout in their model:"]
        if "skipped" in oi:
            L.append(f"  skipped: {oi['skipped']}")
        else:
            L.append(f"  ours ({oi['layout']}): {res['ours']['expressible']['tokens_per_s_per_gpu']:.1f} tok/s/GPU")
            L += [hdr, _ans_line("aiconfigurator, no MTP", oi["no_mtp"]), _ans_line("aiconfigurator, MTP 1 (0.85)", oi["mtp"])]
    if res.get("ladder"):
        L += ["", "aiconfigurator's search with our assumptions, cumulatively (disaggregated):", hdr]
        for s in res["ladder"]:
            L += [f"  {s['step']}", _ans_line("", s["answer"])]
    if res.get("our_ladder"):
        L += ["", "Our search with their assumptions, cumulatively (best verified layout):", hdr]
        for s in res["our_ladder"]:
            L += [f"  {s['step']}", _ans_line("", s if "layout" in s else None)]
    if res.get("steps"):
        from aic_steps import steps_report

        L += steps_report(res["steps"])
    return "\n".join(L)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aic", required=True, help="the aiconfigurator executable (of its own venv)")
    ap.add_argument("--runs", type=int, default=2, help="timed runs of each tool, alternated (default 2)")
    ap.add_argument("--ladder", action="store_true", help="also run aiconfigurator's search with our assumptions")
    ap.add_argument("--steps", action="store_true", help="also price a few single steps in both models")
    ap.add_argument("--no-layouts", action="store_true", help="skip the cross-evaluation of layouts")
    ap.add_argument("--out", type=Path, default=None, help="keep aiconfigurator's experiment files here")
    ap.add_argument("--json", action="store_true", help="print the result as JSON instead of the report")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    out = args.out or Path(tempfile.mkdtemp(prefix="vs_aic_"))
    timing = time_both(args.aic, args.runs)
    res = {"timing": timing, "ours": parse_ours(timing["ours"][-1]["stdout"]),
           "aic": parse_aic_tables(timing["theirs"][-1]["stdout"])}
    if not args.no_layouts:
        res["their_layouts"] = their_layouts_in_ours(res["aic"])
        res["ours_in_aic"] = ours_in_aic(args.aic, res["ours"]["expressible"], out / "ours_in_aic")
    if args.ladder:
        res["ladder"] = ladder(args.aic, out / "ladder")
        res["our_ladder"] = our_ladder()
    if args.steps:
        from aic_steps import compare_steps

        res["steps"] = compare_steps(args.aic, out / "steps")
    for runs in (timing["ours"], timing["theirs"]):
        for r in runs:
            r.pop("stdout", None)
    print(json.dumps(res, indent=1, default=str) if args.json else report(res))
    return res


if __name__ == "__main__":
    main()
