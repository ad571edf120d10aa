"""The prefix-cache check: DeepSeek's published on-disk KV-cache hit rate (56.3%) reproduced by
running a workload built from the same day's other published figures (``prefix_cache_day6.yaml``).

``day6_sessions()`` derives the workload (multi-turn sessions: new user tokens and answer tokens
per turn, geometric turn count) from the reference inputs alone; ``day6_run()`` simulates it on
``examples/sessions_deepseek-v3_h800_day6.yaml`` (DeepSeek-V3, prefill/decode disaggregated on
H800, an unbounded shared prefix pool) with those values set; ``prefix_cache_checks()`` compares
the hit rate the cache achieves with the published one (hold-out: nothing was fitted to it) and,
as fit checks, the run's own average KV length per output token and output/input ratio with the
figures the workload was built from.
"""

from __future__ import annotations

from clustersim.checks.core import Check, Tolerance, load_reference
from clustersim.checks.systems import examples_dir

__all__ = ["day6_sessions", "day6_run", "prefix_cache_checks", "closed_form_hit_rate", "EXAMPLE", "REFERENCE"]

REFERENCE = "prefix_cache_day6.yaml"
EXAMPLE = "sessions_deepseek-v3_h800_day6.yaml"
#: requests (turns) simulated: about 2,000 sessions, enough that the sampled turn counts move the
#: hit rate by well under a percent
REQUESTS = 4000


def closed_form_hit_rate(user_tokens: float, output_tokens: float, previous_turns: float) -> float:
    """Hit rate of an unbounded cache (ignoring block rounding): a request's prompt is
    u + C (u + o) of which C (u + o) was seen before."""
    prompt = user_tokens + previous_turns * (user_tokens + output_tokens)
    return 1.0 - user_tokens / prompt


def day6_sessions(ref: dict | None = None) -> dict:
    """Workload parameters from the reference inputs (the file's ``derivation``)."""
    from workloads.prefix import FixedTurns, GeometricTurns, expected_previous_turns

    inp = (ref or load_reference(REFERENCE))["inputs"]
    ratio = inp["output_tokens"]["value"] / inp["input_tokens"]["value"]
    kv_len = inp["avg_kv_len_per_output_token"]["value"]
    mean_turns = inp["mean_turns_per_conversation"]["value"]
    prompt = kv_len / (1 + ratio / 2)
    output = ratio * prompt
    c = expected_previous_turns(GeometricTurns(kind="geometric", mean=mean_turns))
    user = (prompt - c * output) / (1 + c)
    c_fixed = expected_previous_turns(FixedTurns(kind="fixed", turns=round(mean_turns)))
    user_fixed = (prompt - c_fixed * output) / (1 + c_fixed)
    return {"output_per_input": ratio, "mean_prompt_tokens": prompt, "output_tokens": int(round(output)),
            "user_tokens": int(round(user)), "mean_turns": mean_turns, "previous_turns": c,
            "closed_form_geometric": closed_form_hit_rate(user, output, c),
            "closed_form_fixed_turns": closed_form_hit_rate(user_fixed, output, c_fixed)}


def day6_overrides(w: dict, requests: int = REQUESTS) -> list[str]:
    """``--set`` overrides that put the derived workload on the example."""
    return [f"workload.prompt_tokens.tokens={w['user_tokens']}", f"workload.output_tokens.tokens={w['output_tokens']}",
            f"workload.prefix.turns.mean={w['mean_turns']}", f"workload.num_requests={requests}"]


def day6_run(requests: int = REQUESTS):
    """The example run with the derived workload (``clustersim simulate``'s runner)."""
    from clustersim.run import simulate

    return simulate(examples_dir() / EXAMPLE, day6_overrides(day6_sessions(), requests))[1]


def prefix_cache_checks() -> list[Check]:
    ref = load_reference(REFERENCE)
    w = day6_sessions(ref)
    res = day6_run()
    req = res.requests
    fin = req[req["finish_s"].notna()]
    out_tok, prompt = fin["output_tokens"].astype(float), fin["prompt_tokens"].astype(float)
    kv_len = float((out_tok * (prompt + out_tok / 2)).sum() / out_tok.sum())
    measured = {"avg_kv_len_per_output_token": kv_len, "output_per_input": float(out_tok.sum() / prompt.sum())}
    published = {"avg_kv_len_per_output_token": ref["inputs"]["avg_kv_len_per_output_token"]["value"],
                 "output_per_input": w["output_per_input"]}
    src = ref["sources"]["day6"]
    source = f"day6: {src['title']} ({src['url']})"
    setting = (f"sessions: geometric turns of mean {w['mean_turns']:g}, {w['user_tokens']} new user tokens and "
               f"{w['output_tokens']} answer tokens per turn; examples/{EXAMPLE}, {len(req):,} requests")
    t = ref["target"]
    gap = t.get("known_gap") or {}
    checks = [Check(
        family="prefix_cache", id=t["id"], source=source, setting=setting, quantity=t["quantity"], unit=t["unit"],
        published=float(t["value"]), predicted=res.summary["prefix_cache"]["hit_rate"],
        tolerance=Tolerance.parse(t["tolerance"]), role="holdout", source_status=t["status"],
        known_gap=" ".join(gap.get("mechanism", "").split()),
        gap_bound=Tolerance.parse(gap["bound"]) if "bound" in gap else None,
        note=(f"closed forms with the same lengths: geometric turns {w['closed_form_geometric']:.1%}, "
              f"exactly {round(w['mean_turns'])} turns {w['closed_form_fixed_turns']:.1%}; the turn shape is a choice "
              "(prefix_cache_day6.yaml: choices)"),
        extra={"workload": w, "summary": res.summary["prefix_cache"]})]
    for c in ref["consistency"]:
        checks.append(Check(
            family="prefix_cache", id=c["id"], source=source, setting=setting,
            quantity=f"{c['input'].replace('_', ' ')} of the simulated workload", unit="tokens" if "kv" in c["id"] else "",
            published=float(published[c["input"]]), predicted=measured[c["input"]],
            tolerance=Tolerance.parse(c["tolerance"]), role="fit", source_status="P" if "kv" in c["id"] else "D",
            note="an input of the workload, reproduced by its run"))
    return checks
