"""Issue-6 checks, with their errors printed (run ``pytest -s`` to see the report lines).

* DeepSeek-V3 on H800 (TPOT <= 50 ms): the planner picks a disaggregated large-EP layout like
  DeepSeek's own (prefill EP32 units, decode EP320 over 40 nodes; V3 tech report 3.4).
* DeepSeek-R1 on CloudMatrix384: decode tokens/s per NPU under TPOT limits 50, 30, 15 ms,
  against tests/data/reference/cm384_decode_trend.yaml (within 25%).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import planner
from planner import whatif
from planner.executors import SerialExecutor

REF = Path(__file__).parent / "data" / "reference" / "cm384_decode_trend.yaml"


def test_deepseek_v3_h800_picks_disaggregated_large_ep():
    cfg = planner.load_plan("examples/plan_deepseek-v3_h800.yaml",
                            ["search.max_instances=6", "search.micro_batches=[2]", "verify.top=0"])
    r = planner.plan(cfg, executor=SerialExecutor())
    best = r.table.iloc[0]
    colo = r.table[(r.table["mode"] == "colocated") & r.table["feasible"]]["tokens_per_s_per_device"].max()
    print(f"\n[check h800] best: {best['mode']} prefill {int(best['prefill_instances'])}x EP{int(best['prefill_moe_ep'])}, "
          f"decode {int(best['decode_instances'])}x EP{int(best['decode_moe_ep'])} "
          f"(DeepSeek: prefill EP32, decode EP320); {best['tokens_per_s_per_device']:.0f} tok/s/GPU at capacity, "
          f"decode pool {best['decode_tokens_per_s_per_decode_device']:.0f} tok/s/GPU; best colocated {colo:.0f} tok/s/GPU")
    assert best["mode"] == "disaggregated"
    assert best["decode_moe_ep"] >= 64
    assert best["decode_moe_ep"] >= best["prefill_moe_ep"]
    # DeepSeek's own shape (EP32 prefill units, large-EP decode) is within 2% of the best: with
    # the queueing of a batching prefill server, one EP64 prefill unit edges out two EP32 ones
    feas = r.table[r.table["feasible"]]
    ds = feas[(feas["prefill_moe_ep"] == 32) & (feas["decode_moe_ep"] >= 64)]
    print(f"[check h800] best with DeepSeek's EP32 prefill: {ds['tokens_per_s_per_device'].max():.0f} tok/s/GPU")
    assert ds["tokens_per_s_per_device"].max() >= 0.98 * best["tokens_per_s_per_device"]
    assert best["tokens_per_s_per_device"] > 2 * colo


def _trend(profile):
    cfg = planner.load_plan("examples/plan_deepseek-r1_cloudmatrix384.yaml",
                            [f"profile={profile}", "verify.top=0", "search.devices_per_instance=[16,160]"])
    df = whatif.sweep(cfg, "tpot_ms", [50, 30, 15], executor=SerialExecutor())
    col = "best_decode_tokens_per_s_per_device"
    return {int(r["slo_tpot_ms"]): (r[col] if col in r else None) for _, r in df.iterrows()}, df


@pytest.mark.parametrize("profile", ["null", "default"])
def test_cm384_decode_trend(profile):
    ref = yaml.safe_load(REF.read_text())
    tol = ref["tolerance"]["rel"]
    got, _ = _trend(profile)
    lines = []
    errors = {}
    for p in ref["points"]:
        v = got.get(p["tpot_limit_ms"])
        err = (v - p["value"]) / p["value"] if v == v and v is not None else None
        errors[p["tpot_limit_ms"]] = err
        lines.append(f"{p['tpot_limit_ms']} ms: {v if v is None or v != v else round(v)} vs {p['value']} "
                     f"({'infeasible' if err is None else f'{err:+.1%}'})")
    print(f"\n[check cm384 profile={profile}] " + "; ".join(lines))
    # the trend: a looser TPOT never lowers throughput
    vals = [got.get(t) for t in (50, 30, 15)]
    finite = [v for v in vals if v is not None and v == v]
    assert finite == sorted(finite, reverse=True)
    assert errors[50] is not None and abs(errors[50]) <= tol
    if profile == "default":  # the calibrated path: every published point within 25%
        assert all(e is not None and abs(e) <= tol for e in errors.values()), lines
    elif errors[15] is None or abs(errors[15]) > tol:
        pytest.xfail(f"profile=null (uncalibrated roofline: 0.7/0.8 of peaks, 4 us per op) outside {tol:.0%} at "
                     "small batch: " + "; ".join(lines))
