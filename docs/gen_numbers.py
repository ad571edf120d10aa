"""The numbers the READMEs quote, computed from the code (issue 11, item 22).

A README marks each generated passage as ``<!-- generated:NAME -->...<!-- /generated -->``
(NAME in lower case, so prose can show the marker with a placeholder);
``BLOCKS[NAME]`` names the file and computes the text. Every number comes from the same public
calls the tests and the CLI make (the settings from ``clustersim/data/reference``); nothing here is
typed in.

    python docs/gen_numbers.py                 # rewrite every block
    python docs/gen_numbers.py --check         # exit 1 naming the blocks that differ
    python docs/gen_numbers.py --only training_dsv3 --check

``tests/test_docs_numbers.py`` regenerates every block and fails when the committed READMEs
differ (about 7 s of CPU in all, most of it loading the H200 profile once and two planner sweeps;
each block is cheap, so none is left to a slower, optional run).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "clustersim" / "data" / "reference"
BLOCK_RE = r"(<!-- generated:{name} -->)(.*?)(<!-- /generated -->)"


@dataclass(frozen=True)
class Block:
    """One generated passage: the README holding it and how to compute it."""

    path: str
    make: Callable[[], str]
    inline: bool = False  # inside a sentence: no newlines around the text


def _pct(x: float) -> str:
    return f"{x:+.1%}".replace("+0.0%", "0.0%")


@lru_cache(maxsize=None)
def _h200_profile():
    from calibration.profile import load_profile

    return load_profile("h200")


def _targets(name: str) -> dict:
    data = yaml.safe_load((REFERENCE / name).read_text())
    return {t["id"]: t for t in data["targets"]}


# ------------------------------------------------------------------ measured accuracy
def measured_accuracy_summary() -> str:
    """README.md: whole-model predictions against the per-point median of the three GPU runs."""
    from clustersim.validation import predict_measured_runs

    e = predict_measured_runs(ROOT / "tests/data/measured", _h200_profile()).error.abs()
    return f"a median {e.median():.1%} and worst {e.max():.1%}"


def measured_accuracy() -> str:
    """simulator/README.md: the same against the slowest run, by family."""
    from clustersim.validation import predict_measured

    df = predict_measured(ROOT / "tests/data/measured", _h200_profile())
    e = df.error
    fams = [("prefill", "prefill"), ("dense decode", "decode"), ("DeepSeek-V3 MoE layer (EP4, one rank)", "moe layer")]
    parts = []
    for label, suffix in fams:
        sub = e[df.case.str.endswith(suffix)]
        parts.append(f"{label} {_pct(sub.min())} to {_pct(sub.max())}")
    return (f"median |error| {e.abs().median():.1%}, worst {e.abs().max():.1%} over {len(df)} points "
            f"(mean {_pct(e.mean())}): " + ", ".join(parts))


def accuracy_by_family() -> str:
    """README.md: fit and hold-out error per ground-truth family (benchmarks/accuracy_report.py's
    table: the first run's tables count as fit, the wide tables carry their own split)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from accuracy_report import collect, render, summary_table

    table = render(summary_table(collect(ROOT / "tests/data/measured", _h200_profile())), markdown=True)
    exp = collect(ROOT / "tests/data/measured", _h200_profile(), recorded_routing=False)
    e = exp[exp.split == "holdout"].error.abs()
    return (table + "\n\nMoE layers are costed at the routing draw each measured step recorded; at the "
            f"uniform-routing expectation (what an estimate assumes) the hold-out half reads median {e.median():.1%}, "
            f"p90 {e.quantile(0.9):.1%}, worst {e.max():.1%} over {len(e)} points.")


# ------------------------------------------------------------------ published serving figures
# (predicted by the one registry of reference checks, clustersim.checks, as `clustersim check` does)
def _err(t: dict, predicted: float) -> str:
    err = predicted / t["value"] - 1.0
    out = _pct(err)
    if abs(err) > t["tolerance"]["rel"]:
        out += f", outside its {t['tolerance']['rel']:.0%} tolerance"
    return out


def reference_serving() -> str:
    """simulator/README.md: steady-state estimates at the published settings (``serving.estimate`` checks)."""
    from clustersim.checks.systems import predict_serving

    t = _targets("serving_throughput.yaml")
    cm = t["cm384.decode.tps_50ms"]
    return (f"DeepSeek-V3 H800 decode {_err(t['dsv3.h800.decode_tgs'], predict_serving('dsv3.h800.decode_tgs'))}, "
            f"prefill {_err(t['dsv3.h800.prefill_tgs'], predict_serving('dsv3.h800.prefill_tgs'))}; CloudMatrix384 "
            f"prefill {_err(t['cm384.prefill.tps_perfect_eplb'], predict_serving('cm384.prefill.tps_perfect_eplb'))} "
            f"(known gap: 910C kernel efficiency -- the H200 profile transferred by peak ratio -- and SP-TP-SP "
            f"attention exchanges, at most 13% if exposed, not modelled), decode at TPOT <= "
            f"{cm['setting']['tpot_ms_max']} ms {_err(cm, predict_serving('cm384.decode.tps_50ms'))}")


def engine_cm384_decode() -> str:
    """simulator/README.md: the engine's own steady state on the CloudMatrix384 example (``serving.engine`` check)."""
    from clustersim.checks.systems import engine_cm384_decode as run

    target = _targets("serving_throughput.yaml")["cm384.decode.tps_50ms"]
    return f"engine steady state {_err(target, run()['tokens_per_s_per_npu'])}"


# ------------------------------------------------------------------ training
def training_dsv3() -> str:
    """simulator/training/README.md: the DeepSeek-V3 example as ``clustersim simulate`` runs it
    (shipped H200 profile transferred to H800), and with ``profile: null`` (roofline)."""
    from clustersim.api import SimulateJob, run_job

    d = yaml.safe_load((REFERENCE / "training_dsv3.yaml").read_text())["derived"]
    ref_step, ref_tpd = d["step_time_s_at_15360"]["value"], d["tokens_per_day"]["value"]
    example = ROOT / "examples/train_deepseek-v3_h800_2048.yaml"
    rows = ["| cluster | schedule | compute timed by | step s | vs derived | tokens/day | vs derived | "
            "MFU (BF16 peak) | mem GB |", "|---|---|---|---|---|---|---|---|---|"]
    steps = {}
    cases = [(c, s, "profile") for c in ("h800-mpft", "h800-mrft") for s in ("dualpipe", "zb1p", "1f1b")]
    cases += [("h800-mpft", s, "roofline") for s in ("dualpipe", "zb1p", "1f1b")]
    for cluster, sched, timing in cases:
        overrides = [f"cluster={cluster}", f"parallelism.pp_schedule={sched}"]
        if timing == "roofline":
            r = run_job(SimulateJob(example, tuple(overrides), profile="none")).result
            label = "roofline (`profile: null`)"
        else:
            done = run_job(SimulateJob(example, tuple(overrides)))
            r, prof = done.result, done.profile
            label = f"{prof.name} profile, transferred" if prof is not None else "roofline"
        steps[(cluster, sched, timing)] = r.step_time_s
        rows.append(f"| {cluster} | {sched} | {label} | {r.step_time_s:.2f} | {_pct(r.step_time_s / ref_step - 1)} | "
                    f"{r.tokens_per_day:.3g} | {_pct(r.tokens_per_day / ref_tpd - 1)} | {r.mfu_causal_bf16:.3f} | "
                    f"{r.memory_peak_gb:.1f} |")
    prof_gap = steps[("h800-mpft", "dualpipe", "profile")] / ref_step - 1
    roof_gap = steps[("h800-mpft", "dualpipe", "roofline")] / ref_step - 1
    return "\n".join(rows) + (
        f"\n\nAs `clustersim simulate` runs it, DualPipe's step is {abs(prof_gap):.1%} "
        f"{'shorter' if prof_gap < 0 else 'longer'} than the derived average ({ref_step:.2f} s); the "
        f"uncalibrated roofline makes it {abs(roof_gap):.1%} {'shorter' if roof_gap < 0 else 'longer'}.")


# ------------------------------------------------------------------ communication (fit vs hold-out)
def comm_accuracy() -> str:
    """hardware/README.md: every published communication row (the ``comm.nccl``, ``comm.deepep``
    and ``comm.cm384`` checks of ``clustersim check``), fit and hold-out apart, by kind of row;
    |error| = |prediction / published - 1|."""
    import numpy as np

    from clustersim import checks

    cs = [c for fam in ("comm.nccl", "comm.deepep", "comm.cm384") for c in checks.FAMILIES[fam]()]
    hopper = ("h100-sxm", "h200-sxm", "h800-sxm")

    def regime(c) -> bool:
        return c.family == "comm.nccl" and 16 <= c.extra["size_MiB"] <= 1024 and c.extra["device"] in hopper

    families = [
        ("NCCL on Hopper NVLink, 16 MiB - 1 GiB", regime),
        ("NCCL, every row (A100, B200, NVL72, 2-node IB; 1 MiB - 16 GiB)", lambda c: c.family == "comm.nccl"),
        ("DeepEP normal (bandwidth)", lambda c: c.extra["series"] == "deepep.v1.normal"),
        ("DeepEP low-latency, H800 pure RDMA (latency)",
         lambda c: c.extra["series"] == "deepep.v1.ll.pure_rdma" and c.unit == "us"),
        ("DeepEP low-latency, H20 pure RDMA (PR #173 before; never fitted)",
         lambda c: c.extra["series"] == "deepep.pr173.ll.h20" and "/2025-02/" in c.id),
        ("DeepEP low-latency, H20 NVLink P2P in the node (PR #173 after)",
         lambda c: c.extra["series"] == "deepep.pr173.ll.h20" and "/2025-05/" in c.id),
        ("DeepEP low-latency (bandwidth)", lambda c: c.extra["series"] == "deepep.v1.ll.pure_rdma" and c.unit != "us"),
        ("CloudMatrix384 fused (latency)", lambda c: c.family == "comm.cm384" and c.unit == "us"),
        ("CloudMatrix384 fused (bandwidth)", lambda c: c.family == "comm.cm384" and c.unit != "us"),
    ]
    out = ["| rows | fit: n, median, max | hold-out: n, median, max | outside tolerance |",
           "|---|---|---|---|"]
    for label, pick in families:
        cells = []
        for role in ("fit", "holdout"):
            e = np.abs([c.error for c in cs if pick(c) and c.role == role])
            cells.append(f"{len(e)}, {np.median(e):.1%}, {e.max():.1%}" if len(e) else "0")
        bad = [c for c in cs if pick(c) and not c.within]
        known = sum(1 for c in bad if c.status == "known gap")
        cells.append(f"{len(bad)} ({known} known gaps with the mechanism named)" if bad else "0")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# ------------------------------------------------------------------ planner
def _cm384_trend(profile: str) -> str:
    """planner/README.md: best decode tokens/s per NPU under TPOT limits (``planner.cm384_trend`` checks)."""
    from clustersim.checks.systems import planner_trend

    ref = yaml.safe_load((REFERENCE / "cm384_decode_trend.yaml").read_text())
    got = planner_trend(profile)
    parts = []
    for p in ref["points"]:
        v = got.get(p["tpot_limit_ms"])
        if v is None or v != v:
            parts.append(f"{p['tpot_limit_ms']} ms infeasible vs {p['value']}")
            continue
        extra = ", third-party figure, status S" if p["status"] == "S" else ""
        parts.append(f"{p['tpot_limit_ms']} ms {v:.0f} vs {p['value']} ({_pct(v / p['value'] - 1)}{extra})")
    return ", ".join(parts)


def planner_cm384_default() -> str:
    return _cm384_trend("default")


def planner_cm384_roofline() -> str:
    return _cm384_trend("null")


BLOCKS: dict[str, Block] = {
    "measured_accuracy_summary": Block("README.md", measured_accuracy_summary, inline=True),
    "measured_accuracy": Block("simulator/README.md", measured_accuracy, inline=True),
    "accuracy_by_family": Block("README.md", accuracy_by_family),
    "reference_serving": Block("simulator/README.md", reference_serving, inline=True),
    "engine_cm384_decode": Block("simulator/README.md", engine_cm384_decode, inline=True),
    "training_dsv3": Block("simulator/training/README.md", training_dsv3),
    "comm_accuracy": Block("hardware/README.md", comm_accuracy),
    "planner_cm384_default": Block("planner/README.md", planner_cm384_default, inline=True),
    "planner_cm384_roofline": Block("planner/README.md", planner_cm384_roofline, inline=True),
}


def current(name: str, text: str) -> str:
    """The committed text of block ``name`` in ``text`` (ValueError when the markers are missing)."""
    found = re.findall(BLOCK_RE.format(name=re.escape(name)), text, flags=re.S)
    if len(found) != 1:
        raise ValueError(f"{BLOCKS[name].path}: expected one <!-- generated:{name} --> block, found {len(found)}")
    body = found[0][1]
    return body if BLOCKS[name].inline else body.strip("\n")


def render(name: str, text: str, body: str) -> str:
    """``text`` with block ``name`` holding ``body``."""
    inner = body if BLOCKS[name].inline else f"\n{body}\n"
    return re.sub(BLOCK_RE.format(name=re.escape(name)), lambda m: m.group(1) + inner + m.group(3), text,
                  flags=re.S)


def markers() -> dict[str, list[str]]:
    """README path -> the block names marked in it (Markdown files up to three levels down,
    outside hidden folders such as ``.git`` or a ``.venv``)."""
    found = {}
    paths = [p for pattern in ("*.md", "*/*.md", "*/*/*.md") for p in ROOT.glob(pattern)]
    for path in sorted(p for p in paths if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)):
        names = re.findall(r"<!-- generated:([a-z0-9_]+) -->", path.read_text(encoding="utf-8"))
        if names:
            found[str(path.relative_to(ROOT))] = names
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 when a block differs")
    ap.add_argument("--only", action="append", choices=sorted(BLOCKS), help="this block (repeatable)")
    args = ap.parse_args(argv)
    stale = []
    for name in args.only or list(BLOCKS):
        path = ROOT / BLOCKS[name].path
        text = path.read_text(encoding="utf-8")
        body = BLOCKS[name].make()
        if current(name, text) == body:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(render(name, text, body), encoding="utf-8")
    verb = "differ" if args.check else "rewritten"
    print(f"{len(stale)} block(s) {verb}" + (f": {', '.join(stale)}" if stale else ""))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
