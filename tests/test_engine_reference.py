"""The serving engine reproduces CloudMatrix-Infer's decode throughput (issue 5 §5).

Decode-bound run of the CloudMatrix384 example: prompts almost fully served from the prefix
cache (so 6 prefill instances keep the 160-NPU decode instance saturated), decode batch capped
at the largest batch whose estimated TPOT meets 50 ms. Throughput is read off the engine's
own iterations in a steady-state window (the middle of the run, away from fill and drain).
The prefill figure is checked by tests/test_reference_serving.py with the same cost model.
"""

from __future__ import annotations

from pathlib import Path

import yaml

import clustersim
from clustersim.estimate import estimate_serving

ROOT = Path(__file__).resolve().parents[1]
REF = {t["id"]: t for t in yaml.safe_load((ROOT / "tests/data/reference/serving_throughput.yaml").read_text())["targets"]}


def test_cm384_decode_throughput_in_the_engine():
    target = REF["cm384.decode.tps_50ms"]
    s = target["setting"]
    batch = 8
    for b in range(8, 400, 8):
        r = estimate_serving(s["model"], s["hardware"], "decode", s["npus"], b, context=s["context"],
                             micro_batches=2, mtp_acceptance=s["mtp_acceptance"], dtype=s["dtype"],
                             redundant_experts=s["redundant_experts"])
        if r["tpot_s"] * 1e3 > s["tpot_ms_max"]:
            break
        batch = b
    res = clustersim.simulate(ROOT / "examples/deepseek-r1_cloudmatrix384.yaml", [
        "workload.num_requests=40000", "workload.arrival.rate_per_s=4000", "workload.prefix_cache_hit_rate=0.97",
        f"serving.decode.max_batch_size={batch * s['npus']}"])
    d = res.steps[res.steps.pool == "decode"]
    t0, t1 = d.time_s.quantile(0.25), d.time_s.quantile(0.6)
    w = d[(d.time_s >= t0) & (d.time_s < t1)]
    per_step = 1.0 + s["mtp_acceptance"]  # expected tokens a sequence emits per step (MTP depth 1)
    tps_per_npu = (w.decode_seqs * per_step).sum() / w.step_s.sum() / s["npus"]
    tpot_ms = (w.step_s / per_step).mean() * 1e3
    err = tps_per_npu / target["value"] - 1.0
    print(f"engine: batch {batch}/NPU, TPOT {tpot_ms:.1f} ms, {tps_per_npu:.0f} tokens/s/NPU vs "
          f"{target['value']} ({err:+.1%})")
    assert tpot_ms <= s["tpot_ms_max"] * 1.05
    assert abs(err) <= target["tolerance"]["rel"]
