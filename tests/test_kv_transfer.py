"""The one KV-transfer model (hardware.kv_transfer): its closed form, the simulator's flows on
top of it, and the planner's TPOT, which holds the handoff the engine measures."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from hardware.catalog import get_cluster
from hardware.kv_transfer import FABRIC, kv_link_capacities, kv_path, kv_transfer_rate, kv_transfer_seconds
from planner.analytic import Evaluator
from planner.schema import load_plan_text
from planner.space import context_from_plan, enumerate_layouts
from simulator.engine import simulate
from simulator.transfer import kv_links
from workloads.accounting import kv_cache_bytes_per_token
from workloads.deployment import load_deployment_text
from workloads.models import get_model

NIC = 50e9  # H200 / H800 scale-out bytes/s per device (hardware/data/devices.yaml)


def _oversubscribed(cluster_name: str, factor: float):
    c = get_cluster(cluster_name)
    return replace(c, tiers=c.tiers[:-1] + (replace(c.tiers[-1], oversubscription=factor),))


@pytest.mark.parametrize("src, dst, pre, dec, factor, rate", [
    (4, 8, 4, 8, 1.0, 4 * NIC),  # the source port binds
    (8, 2, 16, 2, 1.0, 2 * NIC),  # the destination port binds
    (8, 8, 8, 8, 4.0, 2 * NIC),  # the fabric: min(8, 8) x 50 GB/s / 4
    (8, 8, 64, 32, 4.0, 8 * NIC),  # a larger fabric no longer binds
])
def test_transfer_alone_runs_at_its_bottleneck_link(src, dst, pre, dec, factor, rate):
    cluster = _oversubscribed("h200-ib", factor)
    caps = kv_link_capacities(cluster, {"a": src, "b": dst}, pre, dec)
    assert caps == {("port", "a"): src * NIC, ("port", "b"): dst * NIC, FABRIC: min(pre, dec) * NIC / factor}
    assert kv_path("a", "b") == (("port", "a"), FABRIC, ("port", "b"))
    assert kv_transfer_rate(caps, "a", "b") == rate
    assert kv_transfer_seconds(1e9, cluster, src, dst, pre, dec) == pytest.approx(1e9 / rate, rel=1e-15)


def test_simulator_links_are_the_hardware_links():
    dep = load_deployment_text(yaml.safe_dump({
        "cluster": "h200-ib", "model": "llama-3.1-70b",
        "serving": {"mode": "disaggregated",
                    "prefill": {"instances": 2, "devices_per_instance": 4, "attention": {"tp": 4}},
                    "decode": {"instances": 1, "devices_per_instance": 8, "attention": {"tp": 8}}},
        "workload": {"arrival": {"kind": "poisson", "rate_per_s": 1.0}, "num_requests": 1}}), check=False)
    caps = kv_links(get_cluster(dep.cluster), dep.serving.prefill, dep.serving.decode, [0, 1], [2])
    assert caps == kv_link_capacities(get_cluster("h200-ib"), {0: 4, 1: 4, 2: 8}, 8, 8)


def test_a_lone_simulated_transfer_takes_kv_transfer_seconds(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens,cached_tokens\n0.0,3000,4,0\n")
    dep = load_deployment_text(yaml.safe_dump({
        "cluster": "h200-node", "model": "llama-3.1-70b",
        "serving": {"mode": "disaggregated",
                    "prefill": {"instances": 1, "devices_per_instance": 2, "attention": {"tp": 2}},
                    "decode": {"instances": 1, "devices_per_instance": 4, "attention": {"tp": 4}}},
        "workload": {"arrival": {"kind": "trace", "path": str(trace)}}}), check=False)
    res = simulate(dep, step_cost=lambda role, shape: 0.5 if shape.phase == "prefill" else 0.01)
    nbytes = kv_cache_bytes_per_token(get_model("llama-3.1-70b"), "bf16") * 3000
    expect = kv_transfer_seconds(nbytes, get_cluster("h200-node"), 2, 4, 2, 4)
    assert expect == pytest.approx(nbytes / (2 * NIC), rel=1e-15)
    assert res.requests["transfer_s"][0] == pytest.approx(expect, rel=1e-12)


#: disaggregated layouts only, of 2- and 4-GPU instances: 4K-token prompts hand over 1.34 GB of KV
PLAN = {
    "name": "handoff", "model": "llama-3.1-70b", "hardware": {"cluster": "h200-node", "devices": 8},
    "workload": {"arrival": {"kind": "poisson", "rate_per_s": 5}, "prompt_tokens": {"kind": "fixed", "tokens": 4096},
                 "output_tokens": {"kind": "fixed", "tokens": 64}},
    "slo": {"ttft_ms": 2000, "tpot_ms": 30, "percentile": 90},
    "search": {"modes": ["disaggregated"], "devices_per_instance": [2, 4], "attention_tp": [2, 4],
               "micro_batches": [1], "mtp": [False], "decode_batch_per_rank": [64],
               "prefill_tokens_per_rank": [8192], "max_instances": 2},
    "profile": None,
}


def test_planner_tpot_holds_the_handoff_and_meets_the_slo():
    cfg = load_plan_text(yaml.safe_dump(PLAN), "handoff.yaml")
    ctx = context_from_plan(cfg)
    ev = Evaluator(ctx)
    rows = 0
    for point in enumerate_layouts(ctx, cfg.search, ev.model):
        row = ev.evaluate_layout(point.layout)
        if not row["feasible"]:
            continue
        (pc, n_p), (dc, n_d) = point.layout.pools
        handoff_s = kv_transfer_seconds(kv_cache_bytes_per_token(ev.model, "bf16") * 4096, ev.cluster,
                                        pc.devices_per_instance, dc.devices_per_instance,
                                        n_p * pc.devices_per_instance, n_d * dc.devices_per_instance)
        gap = ev.handoff_gap_s(pc, n_p, dc, n_d)
        assert gap == pytest.approx(handoff_s / 63, rel=1e-12) and gap > 0
        perf = ev.decode_perf_after_handoff(dc, gap)
        assert row["decode_tpot_ms_at_decode_capacity"] == pytest.approx((perf.tpot_s + gap) * 1e3, rel=1e-12)
        assert row["tpot_ms"] <= 30.0 * (1 + 1e-12)  # the capacity leaves the handoff its share
        assert row["decode_tpot_ms_at_decode_capacity"] <= 30.0 * (1 + 1e-12)
        assert perf.cap_rps <= ev.perf(dc).cap_rps
        rows += 1
    assert rows > 0
