"""Training benchmark: DeepSeek-V3 on 2,048 H800 vs the published (derived) figures, schedules
and fabrics compared, plus the simulator's own speed.

Run: python benchmarks/bench_training.py   (prints a table; writes nothing)
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from simulator.training import load_training_job, simulate_training
from simulator.training.pipeline import StageTimes, closed_form_bubble, simulate_pipeline

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "train_deepseek-v3_h800_2048.yaml"
REF = yaml.safe_load((ROOT / "tests/data/reference/training_dsv3.yaml").read_text())


def main() -> None:
    d = REF["derived"]
    ref_step, ref_tpd, ref_mfu = (d["step_time_s_at_15360"]["value"], d["tokens_per_day"]["value"],
                                  d["mfu_bf16_peak_causal"]["value"])
    print(f"published (derived, schedule average): step {ref_step:.2f} s, {ref_tpd:.3e} tokens/day, "
          f"MFU(bf16 peak, causal) {ref_mfu:.3f}")
    print(f"{'cluster':10} {'schedule':9} {'step_s':>7} {'err':>7} {'tok/day':>10} {'err':>7} {'MFU16':>6} "
          f"{'MFU8':>6} {'bubble':>6} {'cf':>6} {'expcomm':>7} {'smslow':>6} {'mem_GB':>6} {'fits':>5} {'sim_s':>6}")
    for cluster in ("h800-mpft", "h800-mrft"):
        for sched in ("dualpipe", "zb1p", "1f1b"):
            job = load_training_job(EXAMPLE, [f"cluster={cluster}", f"parallelism.pp_schedule={sched}"])
            t0 = time.perf_counter()
            r = simulate_training(job, check_memory=False)
            dt = time.perf_counter() - t0
            b = r.breakdown_s
            print(f"{cluster:10} {sched:9} {r.step_time_s:7.2f} {r.step_time_s / ref_step - 1:+7.1%} "
                  f"{r.tokens_per_day:10.3e} {r.tokens_per_day / ref_tpd - 1:+7.1%} {r.mfu_causal_bf16:6.3f} "
                  f"{r.mfu_causal:6.3f} {b['bubble']:6.2f} {r.bubble_closed_form_s:6.2f} {b['exposed_comm']:7.2f} "
                  f"{b['comm_sm_slowdown']:6.2f} {r.memory_peak_gb:6.1f} {str(r.fits_memory):>5} {dt:6.2f}")
    print("\nbubble oracle (uniform stages, F = Bi = W = 1, F&B = 2.4): DES vs README closed form")
    for sched in ("1f1b", "zb1p", "dualpipe", "dualpipev"):
        for pp in (8, 16, 32):
            stages = 2 * pp if sched == "dualpipev" else pp
            m = 4 * pp
            t0 = time.perf_counter()
            run = simulate_pipeline(sched, pp, m, StageTimes.uniform(stages, 1.0, 2.0, 1.0, 2.4))
            dt = time.perf_counter() - t0
            cf = closed_form_bubble(sched, stages, 1.0, 2.0, 1.0, 2.4)
            print(f"  {sched:9} pp={pp:3} m={m:4}: DES {max(run.idle_s[:pp]):7.2f}  closed form {cf:7.2f}  "
                  f"({dt * 1e3:6.1f} ms)")


if __name__ == "__main__":
    main()
