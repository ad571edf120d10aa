"""Policy seams (issue 13 item 2): batch and preemption policies behind protocols, their names
(the YAML choices) in workloads/, their classes in simulator/registry.py, one chunk rule, and
pool roles as one enum."""

from __future__ import annotations

import csv
import sys
from collections import deque
from pathlib import Path
from typing import get_args

import pytest
import yaml
from typer.testing import CliRunner

from clustersim.cli import app
from simulator.batching import SplitFuse, chunk_tokens
from simulator.engine import simulate
from simulator.registry import BATCH_POLICIES, PREEMPTION_POLICIES, ROUTERS, PolicyRegistry
from workloads import policy_names
from workloads.deployment import Scheduler, load_deployment_text
from workloads.policy_names import PolicyNames
from workloads.pool_roles import PoolRole

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_core import deployment, fixed_cost, trace_file  # noqa: E402

REGISTRIES = [(ROUTERS, policy_names.ROUTERS, "router"),
              (BATCH_POLICIES, policy_names.BATCH_POLICIES, "batching"),
              (PREEMPTION_POLICIES, policy_names.PREEMPTION_POLICIES, "preemption")]


@pytest.mark.parametrize("registry,names,field", REGISTRIES, ids=[f for *_, f in REGISTRIES])
def test_every_policy_name_has_exactly_one_implementation_and_vice_versa(registry, names, field):
    assert sorted(registry.keys()) == sorted(names.names) and len(set(names.names)) == len(names)
    # the schema's Literal is generated from the same names, and each validates and builds
    assert get_args(Scheduler.model_fields[field].annotation) == names.names
    for name in names:
        assert getattr(Scheduler(**{field: name}), field) == name
        assert registry.make(name) is not None


def test_a_registry_refuses_a_name_without_a_class_and_a_class_without_a_name():
    with pytest.raises(ValueError, match=r"names without an implementation \['b'\]"):
        PolicyRegistry(PolicyNames("toy", ("a", "b")), {"a": object})
    with pytest.raises(ValueError, match=r"implementations without a name .* \['c'\]"):
        PolicyRegistry(PolicyNames("toy", ("a",)), {"a": object, "c": object})
    with pytest.raises(ValueError, match="already has an implementation"):
        BATCH_POLICIES.register("splitfuse", SplitFuse)


def test_an_unknown_policy_is_one_located_line_naming_the_choices(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(EXAMPLE.read_text().replace("router: least_outstanding", "batching: fcfs"))
    r = CliRunner().invoke(app, ["simulate", str(path)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    line = r.output.strip()
    assert line.count("\n") == 0 and f"{path}:17:" in line and "scheduler.batching: 'fcfs' is not allowed" in line
    assert "(valid: 'splitfuse', 'prefill_first' or 'decode_first')" in line


def test_chunk_rule():
    assert chunk_tokens(100, 300, chunked=False, alone=False) == 100  # fits: the rest
    assert chunk_tokens(500, 300, chunked=True, alone=False) == 300  # chunked: the budget
    assert chunk_tokens(500, 300, chunked=False, alone=True) == 500  # whole, as the step's only work
    assert chunk_tokens(500, 300, chunked=False, alone=False) == 0  # not this step
    assert chunk_tokens(500, -6, chunked=True, alone=False) <= 0  # no budget left beside decodes


# ------------------------------------------------------------------ built-in batch policies: exact event logs


def _events(tmp_path, batching):
    path = trace_file(tmp_path, [(0.0, 100, 3, 0), (0.5, 100, 2, 0)])
    dep = deployment(workload={"arrival": {"kind": "trace", "path": path}}, scheduler={"batching": batching})
    return simulate(dep, step_cost=fixed_cost(1.0, 0.25), trace=True).events


def test_splitfuse_mixes_a_new_prompt_into_the_decode_step(tmp_path):
    assert _events(tmp_path, "splitfuse")[3:] == [
        (1.0, "first_token", 0, 0), (1.0, "schedule", 1, 0),  # r1's prefill rides with r0's first decode
        (2.0, "first_token", 1, 0), (2.25, "finish", 0, 0), (2.25, "finish", 1, 0)]


def test_prefill_first_stalls_the_decode_streams_for_a_prompt(tmp_path):
    assert _events(tmp_path, "prefill_first")[3:] == [
        (1.0, "first_token", 0, 0), (1.0, "schedule", 1, 0),  # r1 prefills alone; r0 does not decode
        (2.0, "first_token", 1, 0), (2.25, "finish", 1, 0), (2.5, "finish", 0, 0)]


def test_decode_first_admits_only_when_no_stream_decodes(tmp_path):
    assert _events(tmp_path, "decode_first")[3:] == [
        (1.0, "first_token", 0, 0), (1.5, "finish", 0, 0),  # r0 decodes its 2 tokens first
        (1.5, "schedule", 1, 0), (2.5, "first_token", 1, 0), (2.75, "finish", 1, 0)]


@pytest.mark.parametrize("batching", policy_names.BATCH_POLICIES.names)
@pytest.mark.parametrize("preemption", policy_names.PREEMPTION_POLICIES.names)
def test_every_batch_and_preemption_policy_pair_finishes_within_kv(batching, preemption):
    from simulator.engine import Simulation

    wl = {"arrival": {"kind": "poisson", "rate_per_s": 50.0}, "num_requests": 120,
          "prompt_tokens": {"kind": "fixed", "tokens": 200}, "output_tokens": {"kind": "fixed", "tokens": 300}}
    sim = Simulation(deployment(workload=wl, scheduler={"preemption": preemption, "batching": batching}),
                     step_cost=fixed_cost(0.02, 0.01), kv_capacity_tokens=64 * 40)
    res = sim.run()
    assert res.summary["counts"]["finished"] == 120 and res.summary["counts"]["preemptions"] > 0
    assert (res.requests["output_tokens"] == 300).all()
    assert res.steps["kv_used_fraction"].max() <= 1.0
    assert all(s.kv.used_blocks == 0 for s in sim.servers)


# ------------------------------------------------------------------ a plug-in policy, end to end

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples/llama-3.1-70b_h200_tp4_colocated.yaml"


class ShortestPromptFirst(SplitFuse):
    """Toy policy: SplitFuse, with the queue served shortest remaining prompt first."""

    def form(self, server):
        server.waiting = deque(sorted(server.waiting, key=server.prompt_left))
        return super().form(server)


def _toy_run(tmp_path, batching):
    """One instance, whole prompts under a 2,048-token budget: a 6,000-token prompt arrives just
    before six 200-token ones (all at t = 0)."""
    rows = [(0.0, 6000, 4, 0)] + [(0.0, 200, 4, 0)] * 6
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["serving"]["pool"].update(instances=1, chunked_prefill=False, max_tokens_per_iteration=2048)
    doc["scheduler"]["batching"] = batching
    doc["workload"] = {"arrival": {"kind": "trace", "path": trace_file(tmp_path, rows)}}
    path = tmp_path / f"{batching}.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / batching
    r = CliRunner().invoke(app, ["simulate", str(path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    with open(out / "requests.csv") as f:
        return {int(row["id"]): float(row["ttft_s"]) for row in csv.DictReader(f)}


def test_a_toy_batch_policy_is_one_class_plus_registration_and_drives_clustersim_simulate(tmp_path):
    BATCH_POLICIES.register("shortest_prompt_first", ShortestPromptFirst)
    try:
        toy = _toy_run(tmp_path, "shortest_prompt_first")
    finally:
        BATCH_POLICIES.unregister("shortest_prompt_first")
    fcfs = _toy_run(tmp_path, "splitfuse")
    # FCFS runs the long prompt first (alone: it exceeds the budget), the short ones wait for it;
    # the toy runs the six short ones in one step first and the long one after them
    assert all(fcfs[0] < fcfs[i] for i in range(1, 7))
    assert all(toy[i] < toy[0] for i in range(1, 7))
    assert all(toy[i] < fcfs[i] for i in range(1, 7)) and toy[0] > fcfs[0]
    assert "shortest_prompt_first" not in policy_names.BATCH_POLICIES  # unregistered: no longer valid YAML
    with pytest.raises(ValueError, match="scheduler.batching: 'shortest_prompt_first' is not allowed"):
        load_deployment_text(yaml.safe_dump({"cluster": "h200-node", "model": "llama-3.1-70b",
                                             "serving": {"mode": "colocated", "pool": {}},
                                             "scheduler": {"batching": "shortest_prompt_first"},
                                             "workload": {"arrival": {"kind": "poisson", "rate_per_s": 1},
                                                          "num_requests": 1}}), check=False)


# ------------------------------------------------------------------ pool roles


def test_pool_roles_are_one_enum_and_outputs_keep_the_pool_names():
    assert [PoolRole.of_pool(n) for n in ("pool", "prefill", "decode")] == list(PoolRole)
    assert [r.pool_name for r in PoolRole] == ["pool", "prefill", "decode"]
    seen = set()

    def cost(role, shape):
        seen.add(role)
        return 0.01

    res = simulate(deployment(), step_cost=cost)
    assert seen == {PoolRole.COLOCATED} and seen == {"colocated"}  # a str, as callers compare it
    assert set(res.summary["pools"]) == {"pool"} and set(res.steps["pool"]) == {"pool"}
    pool = {"instances": 1, "devices_per_instance": 4, "attention": {"tp": 4}}
    seen.clear()
    res = simulate(deployment(serving={"mode": "disaggregated", "prefill": pool, "decode": pool}), step_cost=cost)
    assert seen == {PoolRole.PREFILL, PoolRole.DECODE} and set(res.summary["pools"]) == {"prefill", "decode"}


def test_no_function_over_80_lines_in_the_engine_and_its_policies():
    import ast

    long = []
    for name in ("engine", "policies", "batching", "preemption", "registry"):
        path = ROOT / "simulator" / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.name}:{node.lineno} {node.name}")
    assert not long, long


def test_the_engine_server_has_what_the_policies_protocol_promises():
    """The policies see an instance through ``simulator.batching.Server`` (so they never import
    the engine); every attribute and method it declares is the engine's Server's."""
    from simulator import batching
    from simulator.engine import Simulation

    server = Simulation(deployment(), step_cost=fixed_cost(1.0, 0.25)).servers[0]
    declared = set(batching.Server.__annotations__) | {
        n for n, v in vars(batching.Server).items() if callable(v) and not n.startswith("_")}
    assert {"st", "waiting", "grow_decodes", "admit_waiting", "reserve", "prompt_left"} <= declared
    missing = [n for n in sorted(declared) if not hasattr(server, n)]
    assert not missing, f"simulator.engine.Server lacks {missing}"
