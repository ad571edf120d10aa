"""The prefix cache (``simulator.prefix_cache``) and the workloads that share prefixes
(``workload.prefix``, Mooncake ``hash_ids``): through ``clustersim simulate`` with default
options, plus the cache's own bookkeeping and a property test that cached + active KV never
exceed an instance's capacity."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clustersim.cli import app
from hardware.catalog import get_cluster
from simulator.kv import BLOCK_TOKENS, KVBlocks
from simulator.prefix_cache import BlockCache, SharedPool
from workloads import prefix as prefix_schema

ROOT = Path(__file__).resolve().parents[1]
MOONCAKE = ROOT / "examples/trace_mooncake_deepseek-v3_h800_pd-disagg.yaml"
runner = CliRunner()

SESSIONS = {
    "name": "multi-turn", "cluster": "h200-node", "model": "llama-3.1-8b",
    "serving": {"mode": "colocated", "pool": {"instances": 1, "devices_per_instance": 1}},
    "workload": {
        "arrival": {"kind": "poisson", "rate_per_s": 1.0},
        "prompt_tokens": {"kind": "fixed", "tokens": 2000},
        "output_tokens": {"kind": "fixed", "tokens": 64},
        "num_requests": 240,
        "prefix": {"kind": "sessions", "turns": {"kind": "fixed", "turns": 4}, "think_time_s": 2.0},
    },
    "prefix_cache": {},
}


def _write(tmp_path: Path, doc: dict, name: str = "deploy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _simulate(path: Path, *sets: str, out: Path | None = None) -> dict:
    args = ["simulate", str(path), "--json"] + [a for s in sets for a in ("--set", s)]
    if out is not None:
        args += ["--out", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)["summary"]


# ------------------------------------------------------------------ through the CLI


def test_multi_turn_hit_rate_rises_and_ttft_falls_with_cache_size(tmp_path):
    path = _write(tmp_path, SESSIONS)
    runs = {m: _simulate(path, f"prefix_cache.max_cached_tokens={m}") for m in ("0", "20000", "60000", "null")}
    hit = [runs[m]["prefix_cache"]["hit_rate"] for m in runs]
    ttft = [runs[m]["ttft_ms"]["mean"] for m in runs]
    assert hit[0] == 0.0 and all(a < b for a, b in zip(hit, hit[1:])), hit
    assert all(a > b for a, b in zip(ttft, ttft[1:])), ttft
    # unbounded: every turn after the first hits its whole context (whole 64-token blocks)
    context = [2064 * k // 64 * 64 for k in range(4)]
    assert hit[-1] == pytest.approx(sum(context) / sum(2000 + 2064 * k for k in range(4)), rel=1e-9)
    assert ttft[-1] < 0.5 * ttft[0]


def test_cache_that_keeps_nothing_changes_nothing(tmp_path):
    """No idle blocks kept and no prefix shared between running requests: the same run as without
    a cache (the cache adds state, not time)."""
    doc = {**SESSIONS, "prefix_cache": {"max_cached_tokens": 0}}
    on = _simulate(_write(tmp_path, doc), out=tmp_path / "on")
    off = _simulate(_write(tmp_path, {k: v for k, v in SESSIONS.items() if k != "prefix_cache"}), out=tmp_path / "off")
    assert on["prefix_cache"]["hit_tokens"] == 0 and "prefix_cache" not in off
    a, b = (pd.read_csv(tmp_path / d / "requests.csv") for d in ("on", "off"))
    pd.testing.assert_frame_equal(a, b)
    assert not (tmp_path / "off" / "cache.csv").exists()


def test_mooncake_replay_hits_come_from_hash_ids(tmp_path):
    got = _simulate(MOONCAKE, "prefix_cache={}")["prefix_cache"]
    assert got["block_tokens"] == 512 and got["hit_rate"] > 0.02
    assert got["pools"].keys() == {"prefill"}  # decode instances keep no prefixes
    # the same rows with every hash made unique: nothing is shared, nothing hits
    src = ROOT / "examples/traces/mooncake_conversation_sample.jsonl"
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    nxt = 0
    for row in rows:
        row["hash_ids"] = list(range(nxt, nxt + len(row["hash_ids"])))
        nxt += len(row["hash_ids"])
    unique = tmp_path / "unique.jsonl"
    unique.write_text("".join(json.dumps(r) + "\n" for r in rows))
    none = _simulate(MOONCAKE, "prefix_cache={}", f"workload.arrival.path={unique}")["prefix_cache"]
    assert none["hit_tokens"] == 0 and none["prompt_tokens"] == got["prompt_tokens"]


def test_kv_aware_routing_beats_round_robin_on_hit_rate(tmp_path):
    doc = {**SESSIONS, "serving": {"mode": "colocated", "pool": {"instances": 4, "devices_per_instance": 1}},
           "workload": {**SESSIONS["workload"], "arrival": {"kind": "poisson", "rate_per_s": 4.0}, "num_requests": 400}}
    path = _write(tmp_path, doc)
    rr = _simulate(path, "scheduler.router=round_robin")["prefix_cache"]["hit_rate"]
    kv = _simulate(path, "scheduler.router=kv_aware")["prefix_cache"]["hit_rate"]
    lo = _simulate(path, "scheduler.router=least_outstanding")["prefix_cache"]["hit_rate"]
    assert kv > rr + 0.15 and kv > lo + 0.15, (kv, rr, lo)


def test_shared_pool_serves_what_another_instance_computed(tmp_path):
    """Round robin scatters a session's turns; a shared pool gives the hits back, each costing
    its KV's transfer at the fabric bandwidth instead of a prefill."""
    doc = {**SESSIONS, "serving": {"mode": "colocated", "pool": {"instances": 4, "devices_per_instance": 1}},
           "scheduler": {"router": "round_robin"}}
    path = _write(tmp_path, doc)
    local = _simulate(path)["prefix_cache"]
    pooled = _simulate(path, "prefix_cache.shared_pool={capacity_tokens: 100000000, bandwidth_gb_per_s: 25}")
    pc = pooled["prefix_cache"]
    assert pc["shared_hit_tokens"] > 0 and pc["hit_rate"] > local["hit_rate"] + 0.2
    one = _simulate(path, "serving.pool.instances=1")["prefix_cache"]["hit_rate"]
    assert pc["hit_rate"] == pytest.approx(one, rel=1e-9)  # unbounded pool: every context hits somewhere
    # llama-3.1-8b bf16 KV: 32 layers x 8 heads x 128 x 2 (K, V) x 2 bytes per token
    kv_bytes = 32 * 8 * 128 * 2 * 2
    assert pc["fetch_s"] == pytest.approx(pc["shared_hit_tokens"] * kv_bytes / 25e9, rel=1e-9)
    # no bandwidth given: the instance's KV port, as a P/D hand-off gets (hardware.kv_transfer)
    port = _simulate(path, "prefix_cache.shared_pool={capacity_tokens: 100000000}")["prefix_cache"]
    nic = get_cluster("h200-node").device.scale_out_bytes_per_s
    assert port["fetch_s"] == pytest.approx(port["shared_hit_tokens"] * kv_bytes / nic, rel=1e-9)
    assert pooled["ttft_ms"]["mean"] < _simulate(path)["ttft_ms"]["mean"]


def test_shared_prefix_generator_reaches_its_reuse_ratio(tmp_path):
    doc = {**SESSIONS, "workload": {**SESSIONS["workload"], "arrival": {"kind": "poisson", "rate_per_s": 5.0},
                                    "prompt_tokens": {"kind": "uniform", "min_tokens": 1000, "max_tokens": 3000},
                                    "num_requests": 600,
                                    "prefix": {"kind": "shared_prefix", "reuse_ratio": 0.6, "prefixes": 3}}}
    hit = _simulate(_write(tmp_path, doc))["prefix_cache"]["hit_rate"]
    assert 0.55 < hit <= 0.6  # less each prefix's first use and the partial last block


def test_cache_csv_and_report_show_the_hit_rate(tmp_path):
    pytest.importorskip("plotly")
    path = _write(tmp_path, SESSIONS)
    r = runner.invoke(app, ["simulate", str(path), "--out", str(tmp_path / "o"), "--report"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]["prefix_cache"]
    log = pd.read_csv(tmp_path / "o" / "cache.csv")
    first = log[log["first"]]
    assert len(first) == 240 and first["hit_tokens"].sum() / first["prompt_tokens"].sum() == summary["hit_rate"]
    assert (log["cached_blocks"] + log["used_blocks"] <= log["capacity_blocks"]).all()
    page = (tmp_path / "o" / "report.html").read_text()
    assert "Prefix-cache hit rate over time, per pool" in page and "prefix-cache hit rate" in page


def test_sessions_are_closed_loop_and_extend_the_previous_turn(tmp_path):
    from simulator.engine import Simulation
    from workloads.deployment import load_deployment

    doc = {**SESSIONS, "workload": {**SESSIONS["workload"], "prompt_tokens": {"kind": "uniform", "min_tokens": 10,
                                                                               "max_tokens": 900},
                                    "output_tokens": {"kind": "uniform", "min_tokens": 1, "max_tokens": 300},
                                    "prefix": {"kind": "sessions", "turns": {"kind": "geometric", "mean": 3.0},
                                               "think_time_s": 1.0, "system_prompt_tokens": 300}}}
    path = _write(tmp_path, doc)
    _simulate(path, out=tmp_path / "a")
    _simulate(path, out=tmp_path / "b")
    assert (tmp_path / "a" / "requests.csv").read_bytes() == (tmp_path / "b" / "requests.csv").read_bytes()
    a = pd.read_csv(tmp_path / "a" / "requests.csv")
    assert a["finish_s"].notna().all() and len(a) == 240
    sim = Simulation(load_deployment(path), step_cost=lambda role, shape: 0.01)
    nxt = np.asarray(sim.sessions.next_turn)
    prev = np.flatnonzero(nxt >= 0)
    assert 80 < prev.size < 200  # geometric turns of mean 3: about 2/3 of the requests have a successor
    p, o = a["prompt_tokens"].to_numpy(), a["output_tokens"].to_numpy()
    new = p[nxt[prev]] - p[prev] - o[prev]
    assert ((10 <= new) & (new <= 900)).all()  # the next prompt is this prompt + answer + a new message
    first = np.setdiff1d(np.arange(len(a)), nxt[prev])
    assert ((310 <= p[first]) & (p[first] <= 1200)).all()  # first turns: system prompt + a message
    # closed loop: the next turn arrives after the answer; its prefix (whole 64-token blocks) hits
    assert (a["arrival_s"].to_numpy()[nxt[prev]] >= a["finish_s"].to_numpy()[prev]).all()
    assert (a["cached_tokens"].to_numpy()[nxt[prev]] == (p[prev] + o[prev]) // 64 * 64).all()
    # system prompts are shared across sessions: first turns after the first one hit 4 blocks of 64
    assert (a["cached_tokens"].to_numpy()[first[1:]] == 256).mean() > 0.9


@pytest.mark.parametrize("patch, where, words", [
    ({"workload": {"prefix_cache_hit_rate": 0.5}}, "workload.prefix_cache_hit_rate", "fixed hit rate"),
    ({"workload": {"samples_per_request": 2}}, "workload.prefix", "samples_per_request must be 1"),
    ({"workload": {"prefix": {"kind": "sessions", "turns": {"kind": "poisson", "mean": 2}}}}, "workload.prefix.turns",
     "'fixed', 'geometric'"),
    ({"workload": {"prefix": {"kind": "radix"}}}, "workload.prefix", "'sessions', 'shared_prefix'"),
    ({"prefix_cache": {"max_cached_tokens": -1}}, "prefix_cache.max_cached_tokens", "-1 is too small (valid: >= 0)"),
    ({"prefix_cache": {"shared_pool": {"capacity_tokens": 10, "bandwidth_gb_per_s": 0}}},
     "prefix_cache.shared_pool.bandwidth_gb_per_s", "(valid: > 0)"),
])
def test_bad_prefix_settings_are_one_located_line(tmp_path, patch, where, words):
    doc = json.loads(json.dumps(SESSIONS))
    for key, val in patch.items():
        if key == "workload" and "prefix" in val:
            doc["workload"]["prefix"] = val["prefix"]
        elif isinstance(val, dict) and key in doc and isinstance(doc[key], dict):
            doc[key].update(val)
        else:
            doc[key] = val
    path = _write(tmp_path, doc)
    r = runner.invoke(app, ["simulate", str(path)])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"error: {path}:") and f": {where}:" in line and words in line, line


def test_mooncake_blocks_must_be_whole_kv_blocks_for_the_cache(tmp_path):
    r = runner.invoke(app, ["simulate", str(MOONCAKE), "--set", "prefix_cache={}", "--set",
                            "workload.arrival.block_tokens=100"])
    assert r.exit_code == 2 and "workload.arrival.block_tokens: 100 is not a multiple of the 64-token KV block" in r.output
    r = runner.invoke(app, ["simulate", str(MOONCAKE), "--set",
                            "workload.prefix={kind: shared_prefix, reuse_ratio: 0.5}"])
    assert r.exit_code == 2 and "workload.prefix: applies to synthetic arrivals" in r.output


def test_day6_example_holds_the_derived_workload():
    from clustersim.checks.prefix import EXAMPLE, day6_sessions

    w = day6_sessions()
    doc = yaml.safe_load((ROOT / "examples" / EXAMPLE).read_text())["workload"]
    assert doc["prompt_tokens"]["tokens"] == w["user_tokens"] and doc["output_tokens"]["tokens"] == w["output_tokens"]
    assert doc["prefix"]["turns"] == {"kind": "geometric", "mean": w["mean_turns"]}
    # the arithmetic of prefix_cache_day6.yaml's derivation, from its inputs
    assert w["output_per_input"] == 168 / 608
    p = 4989 / (1 + 84 / 608)
    assert w["mean_prompt_tokens"] == pytest.approx(p) and w["output_tokens"] == round(168 / 608 * p)
    assert w["user_tokens"] == round((p - 168 / 608 * p) / 2)


# ------------------------------------------------------------------ the cache's bookkeeping


def test_schema_block_matches_the_engine_block():
    assert prefix_schema.KV_BLOCK_TOKENS == BLOCK_TOKENS


def _cache(capacity_blocks: int, max_idle: int | None = None) -> BlockCache:
    return BlockCache(KVBlocks(capacity_blocks * BLOCK_TOKENS), 1, max_idle)


def test_idle_blocks_are_evicted_lru_and_tail_first():
    c = _cache(10)
    kv = c.kv
    kv.alloc(6)  # request A computes a 6-block prompt: 0..5
    assert c.insert_held([0, 1, 2, 3, 4, 5]) == [0, 1, 2, 3, 4, 5]
    c.release([0, 1, 2, 3, 4, 5])  # A leaves: its blocks stay, idle
    assert (kv.used_blocks, kv.idle_blocks) == (0, 6)
    assert list(c.idle) == [5, 4, 3, 2, 1, 0]  # the chain's tail is evicted first
    kv.alloc(7)  # room for 7 new blocks: evicts the 3 least recently used
    assert (kv.used_blocks, kv.idle_blocks, c.evicted) == (7, 3, 3)
    assert c.match([0, 1, 2, 3, 4, 5]) == (3, 0)  # the head survived
    assert kv.peak_total_blocks == 10


def test_shared_blocks_are_not_evicted_while_in_use():
    c = _cache(8)
    kv = c.kv
    kv.alloc(4)
    c.insert_held([10, 11, 12, 13])
    c.acquire([10, 11])  # a second request shares the first two blocks
    assert c.match([10, 11, 12, 99]) == (3, 3)
    c.release([10, 11, 12, 13])  # the first request leaves: 12, 13 idle; 10, 11 still used
    assert (kv.used_blocks, kv.idle_blocks) == (2, 2)
    kv.alloc(6)  # needs both idle blocks
    assert set(c.ref) == {10, 11} and kv.used_blocks + kv.idle_blocks == 8
    with pytest.raises(RuntimeError):
        kv.alloc(1)  # in-use blocks are never evicted: the capacity is really full


def test_max_cached_tokens_caps_idle_blocks_only():
    c = _cache(100, max_idle=2)
    c.kv.alloc(5)
    c.insert_held([1, 2, 3, 4, 5])
    assert c.kv.idle_blocks == 0 and len(c.ref) == 5  # in use: kept whatever the cap
    c.release([1, 2, 3, 4, 5])
    assert list(c.idle) == [2, 1] and c.kv.idle_blocks == 2


def test_shared_pool_is_lru_with_a_capacity():
    pool = SharedPool(3)
    pool.put([1, 2, 3])
    pool.put([7])
    assert list(pool.store) == [2, 1, 7] and pool.evicted == 1  # 3 (the tail of the first chain) went first
    assert pool.match([1, 2, 3], touch=False) == 2 and list(pool.store) == [2, 1, 7]
    assert pool.match([1, 2]) == 2 and list(pool.store) == [7, 2, 1]
    assert isinstance(pool.store, OrderedDict)


def test_prefix_identity_is_refused_without_a_cache_but_runs():
    """workload.prefix without prefix_cache is a valid baseline: the engine runs as without identity."""
    from simulator import simulate
    from workloads.deployment import load_deployment_text

    doc = {k: v for k, v in SESSIONS.items() if k != "prefix_cache"}
    res = simulate(load_deployment_text(yaml.safe_dump(doc)), step_cost=lambda role, shape: 0.01)
    assert "prefix_cache" not in res.summary and (res.requests["cached_tokens"] == 0).all()
    assert np.isfinite(res.requests["finish_s"]).all()
