"""Reference checks of whole systems: steady-state serving estimates, the serving engine, the
planner's decode trend on CloudMatrix384, and DeepSeek-V3 pre-training.

The engine, planner and training checks run the shipped examples (``examples/`` of a source
checkout, found beside the package); without them those families are reported as not run.
"""

from __future__ import annotations

from pathlib import Path

from clustersim.checks.core import Check, Tolerance, load_reference, setting_text

__all__ = ["serving_checks", "engine_checks", "planner_trend_checks", "training_checks", "examples_dir",
           "decode_batch_at_tpot_limit", "predict_serving", "planner_trend", "Unavailable"]


class Unavailable(LookupError):
    """A family that cannot run here (what it needs is missing); the message says what."""


def examples_dir() -> Path:
    """``examples/`` of the source checkout holding this package (Unavailable when installed without it)."""
    root = Path(__file__).resolve().parents[2] / "examples"
    if not root.is_dir():
        raise Unavailable("needs the examples/ folder of a source checkout")
    return root


def _targets(name: str) -> dict:
    return {t["id"]: t for t in load_reference(name)["targets"]}


def decode_batch_at_tpot_limit(s: dict, micro_batches: int) -> tuple[int, float, float]:
    """Largest decode batch per device (steps of 8) whose estimated TPOT meets ``tpot_ms_max``,
    with its tokens/s per device and TPOT in ms (``clustersim.estimate_serving``)."""
    from clustersim.estimate import estimate_serving

    best = (0, 0.0, float("nan"))
    for batch in range(8, 400, 8):
        r = estimate_serving(s["model"], s["hardware"], "decode", s["npus"], batch, context=s["context"],
                             micro_batches=micro_batches, mtp_acceptance=s["mtp_acceptance"], dtype=s["dtype"],
                             redundant_experts=s["redundant_experts"])
        if r["tpot_s"] * 1e3 > s["tpot_ms_max"]:
            break
        best = (batch, r["output_tokens_per_s_per_device"], r["tpot_s"] * 1e3)
    return best


def predict_serving(target_id: str) -> float:
    """tokens/s per device that ``estimate_serving`` gives at a ``serving_throughput.yaml`` setting."""
    from clustersim.estimate import estimate_serving

    s = _targets("serving_throughput.yaml")[target_id]["setting"]
    if target_id == "cm384.decode.tps_50ms":
        return decode_batch_at_tpot_limit(s, s["micro_batches"])[1]
    if target_id == "cm384.prefill.tps_perfect_eplb":  # devices are packages of 2 dies: EP over dies / 2
        return estimate_serving(s["model"], s["hardware"], "prefill", s["npus"], s["tokens_per_die"] * 2 // s["seq"],
                                seq=s["seq"], micro_batches=s["micro_batches"],
                                dtype=s["dtype"])["input_tokens_per_s_per_device"]
    if "decode" in target_id:
        return estimate_serving(s["model"], s["hardware"], "decode", s["ep"], s["batch_per_gpu"], context=s["context"],
                                micro_batches=s["micro_batches"], dtype=s["dtype"],
                                lengths=s.get("lengths", "mixed"))["output_tokens_per_s_per_device"]
    return estimate_serving(s["model"], s["hardware"], "prefill", s["ep"], s["seqs_per_gpu"], seq=s["seq"],
                            micro_batches=s["micro_batches"], dtype=s["dtype"])["input_tokens_per_s_per_device"]


def _serving_check(t: dict, family: str, predicted: float | None, note: str = "", **extra) -> Check:
    ref = load_reference("serving_throughput.yaml")
    src = ref["sources"][t["source"]]
    gap = t.get("known_gap") or {}
    return Check(family=family, id=t["id"], source=f"{t['source']}: {src['title']} ({src.get('url', src['read_as'])})",
                 setting=setting_text(t["setting"]), quantity="tokens/s per device", unit=t["unit"],
                 published=float(t["value"]), predicted=predicted, tolerance=Tolerance.parse(t["tolerance"]),
                 source_status=t["status"], known_gap=" ".join(gap.get("mechanism", "").split()),
                 gap_bound=Tolerance.parse(gap["bound"]) if "bound" in gap else None, note=note or t.get("note", ""),
                 extra=extra)


def serving_checks() -> list[Check]:
    """``serving_throughput.yaml``: each target's steady state from ``estimate_serving``."""
    return [_serving_check(t, "serving.estimate", predict_serving(tid))
            for tid, t in _targets("serving_throughput.yaml").items()]


def engine_cm384_decode() -> dict:
    """The serving engine's own decode throughput on the CloudMatrix384 example: prompts almost
    all served from the prefix cache so the decode instance stays saturated, the decode batch
    capped at the largest whose estimated TPOT meets the limit; read in a steady-state window."""
    from clustersim.run import simulate

    s = _targets("serving_throughput.yaml")["cm384.decode.tps_50ms"]["setting"]
    batch = max(8, decode_batch_at_tpot_limit(s, 2)[0])
    _, res, _ = simulate(examples_dir() / "deepseek-r1_cloudmatrix384.yaml", [
        "workload.num_requests=40000", "workload.arrival.rate_per_s=4000", "workload.prefix_cache_hit_rate=0.97",
        f"serving.decode.max_batch_size={batch * s['npus']}"])
    d = res.steps[res.steps.pool == "decode"]
    t0, t1 = d.time_s.quantile(0.25), d.time_s.quantile(0.6)
    w = d[(d.time_s >= t0) & (d.time_s < t1)]
    per_step = 1.0 + s["mtp_acceptance"]  # tokens a sequence emits per step (MTP depth 1)
    return {"batch_per_npu": batch, "tokens_per_s_per_npu": float((w.decode_seqs * per_step).sum() / w.step_s.sum()
                                                                  / s["npus"]),
            "tpot_ms": float((w.step_s / per_step).mean() * 1e3), "tpot_ms_max": s["tpot_ms_max"]}


def engine_checks() -> list[Check]:
    t = _targets("serving_throughput.yaml")["cm384.decode.tps_50ms"]
    r = engine_cm384_decode()
    return [_serving_check({**t, "id": f"{t['id']}.engine"}, "serving.engine", r["tokens_per_s_per_npu"],
                           note=f"engine run of examples/deepseek-r1_cloudmatrix384.yaml at batch "
                                f"{r['batch_per_npu']}/NPU, TPOT {r['tpot_ms']:.1f} ms", **r)]


def planner_trend(profile: str) -> dict[int, float | None]:
    """Best decode tokens/s per NPU the planner finds on CloudMatrix384 under each TPOT limit of
    ``cm384_decode_trend.yaml`` (analytic ranking; None where nothing is feasible)."""
    import planner
    from planner import whatif
    from planner.executors import SerialExecutor

    ref = load_reference("cm384_decode_trend.yaml")
    cfg = planner.load_plan(examples_dir() / "plan_deepseek-r1_cloudmatrix384.yaml",
                            [f"profile={profile}", "verify.top=0", "search.devices_per_instance=[16,160]"])
    df = whatif.sweep(cfg, "tpot_ms", [p["tpot_limit_ms"] for p in ref["points"]], executor=SerialExecutor())
    col = "best_decode_tokens_per_s_per_device"
    out = {}
    for _, r in df.iterrows():
        v = r[col] if col in r else None
        out[int(r["slo_tpot_ms"])] = float(v) if v is not None and v == v else None
    return out


def planner_trend_checks() -> list[Check]:
    """``cm384_decode_trend.yaml`` with the shipped profile and with the uncalibrated roofline."""
    ref = load_reference("cm384_decode_trend.yaml")
    gaps = ref.get("known_gaps") or {}
    out = []
    for profile in ("default", "null"):
        got = planner_trend(profile)
        for p in ref["points"]:
            gap = next((g for g in gaps.values() if str(g["profile"]) == profile
                        and p["tpot_limit_ms"] in g["points"]), {})
            out.append(Check(
                family="planner.cm384_trend", id=f"{p['id']}@profile={profile}", source=ref["source"],
                setting=setting_text({**ref["setting"], "tpot_limit_ms": p["tpot_limit_ms"], "profile": profile}),
                quantity="best decode tokens/s per NPU", unit=ref["unit"], published=float(p["value"]),
                predicted=got.get(p["tpot_limit_ms"]), tolerance=Tolerance.parse(ref["tolerance"]),
                source_status=p["status"], known_gap=" ".join(gap.get("mechanism", "").split())))
    return out


def training_checks() -> list[Check]:
    """DeepSeek-V3 pre-training (``training_dsv3.yaml``): the example's step time at the final
    batch against the step derived from the published GPU hours (the steady rate the report
    states: 180K H800 GPU hours per trillion tokens), within the band the file states (10%)."""
    from clustersim.run import simulate

    ref = load_reference("training_dsv3.yaml")
    _, r, _ = simulate(examples_dir() / "train_deepseek-v3_h800_2048.yaml")
    d = ref["derived"]["step_time_s_at_15360"]
    lo, hi = ref["comparison"]["step_time_rel_error_band"]
    setting = {k: ref["inputs"][k]["value"] for k in ("gpus", "seq_len", "global_batch_final", "layout")}
    return [Check(family="training", id="dsv3.train.step_time_s_at_15360", source=f"v3tr: {ref['sources']['v3tr']['title']}, "
                  f"{ref['sources']['v3tr']['url']} (derived: {d['from']})", setting=setting_text(setting),
                  quantity="step time at batch 15,360", unit=d["unit"], published=float(d["value"]),
                  predicted=r.step_time_s, tolerance=Tolerance(band=(float(lo), float(hi))), source_status=d["status"],
                  note=" ".join(ref["comparison"]["tolerance_note"].split()),
                  extra={"tokens_per_day": r.tokens_per_day, "mfu_causal_bf16": r.mfu_causal_bf16})]
