"""Prompts larger than the token budget without chunked prefill (issue 11 item 16).

Such a prompt used to enter only when no decode stream was running, so under a steady load it
starved until the decode batch drained (TTFT of hundreds of seconds). It now runs as a batch by
itself when it reaches the head of the queue (vLLM's rule); the decode streams skip that step.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import clustersim
from clustersim.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples/llama-3.1-70b_h200_tp4_colocated.yaml"
BUDGET = 2048
# every prompt (4096 tokens) is twice the token budget; 4 requests/s on two TP4 instances
OVER_BUDGET = [
    "serving.pool.chunked_prefill=false", f"serving.pool.max_tokens_per_iteration={BUDGET}",
    "workload.num_requests=300", "workload.prompt_tokens={kind: fixed, tokens: 4096}",
    "workload.output_tokens={kind: fixed, tokens: 256}",
]


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def test_over_budget_prompts_complete_with_bounded_ttft_through_the_cli():
    r = CliRunner().invoke(app, ["simulate", str(EXAMPLE), *_sets(OVER_BUDGET), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)["summary"]
    assert s["counts"]["finished"] == 300 and s["counts"]["unfinished"] == 0
    # 300 requests arrive over ~75 s; starving, they ran one at a time (TTFT p50 ~350 s, makespan ~790 s)
    assert s["ttft_ms"]["p99"] < 5_000
    assert s["makespan_s"] < 100
    assert s["pools"]["pool"]["mean_batch_size"] > 2  # prompts join while others decode


def test_an_over_budget_prompt_runs_alone_and_others_respect_the_budget():
    res = clustersim.simulate(EXAMPLE, OVER_BUDGET)
    steps = res.steps
    over = steps[steps.prefill_tokens > BUDGET]
    assert len(over) == 300  # each prompt once, whole
    assert (over.decode_seqs == 0).all() and (over.batch_size == 1).all()
    # many came in while other streams were decoding: those paused for one step and resumed with
    # the newcomer (starving, a prompt only entered once the last stream had finished)
    after = steps.groupby("instance").decode_seqs.shift(-1).loc[over.index].fillna(0)
    assert (after > 1).sum() > 100
    assert (steps.loc[steps.prefill_tokens <= BUDGET, "new_tokens"] <= BUDGET).all()


def test_in_budget_prompts_still_batch_with_decodes():
    res = clustersim.simulate(EXAMPLE, ["serving.pool.chunked_prefill=false", "workload.num_requests=200",
                                        "workload.prompt_tokens={kind: fixed, tokens: 1024}",
                                        "workload.output_tokens={kind: fixed, tokens: 64}"])
    mixed = res.steps[(res.steps.prefill_tokens > 0) & (res.steps.decode_seqs > 0)]
    assert len(mixed) > 0
    assert (res.steps.new_tokens <= 8192).all()
