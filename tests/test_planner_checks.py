"""Issue-6 checks, with their errors printed (run ``pytest -s`` to see the report lines).

* DeepSeek-V3 on H800 (TPOT <= 50 ms): the planner picks a disaggregated large-EP layout like
  DeepSeek's own (prefill EP32 units, decode EP320 over 40 nodes; V3 tech report 3.4).

DeepSeek-R1 on CloudMatrix384 (decode tokens/s per NPU under TPOT limits 50, 30, 15 ms, against
clustersim/data/reference/cm384_decode_trend.yaml within 25%) is checked by the registry:
``clustersim.checks.systems.planner_trend_checks`` (tests/test_reference_checks.py).
"""

from __future__ import annotations

import planner
from planner.executors import SerialExecutor


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
