"""The same sweep as Ray tasks on a local Ray instance gives the process-pool results."""

from __future__ import annotations

import sys

import pytest

ray = pytest.importorskip("ray")

from planner.executors import RayExecutor, SerialExecutor  # noqa: E402
from planner.schema import load_plan_text  # noqa: E402
from planner.search import evaluate, plan  # noqa: E402
from planner.space import Point, PoolChoice, ServingLayout, context_from_plan  # noqa: E402
from workloads.layout import Layout  # noqa: E402

PLAN = """
model: llama-3.1-8b
hardware: {cluster: h200-node, devices: 4}
workload: {arrival: {kind: poisson, rate_per_s: 2}, prompt_tokens: {kind: fixed, tokens: 512},
           output_tokens: {kind: fixed, tokens: 64}}
slo: {ttft_ms: 1000, tpot_ms: 30}
search: {devices_per_instance: [1, 2], attention_tp: [1, 2], micro_batches: [1], mtp: [false],
         decode_batch_per_rank: [16, 64], prefill_tokens_per_rank: [2048], max_instances: 2}
profile: null
"""


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=1, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_sweep_matches_serial(local_ray):
    cfg = load_plan_text(PLAN)
    ctx = context_from_plan(cfg)
    choices = [PoolChoice("pool", Layout(tp=tp, dp=d // tp, moe_tp=1), 0, b, 2048)
               for d, tp, b in [(1, 1, 16), (2, 2, 64), (2, 1, 16), (1, 1, 64)]]
    pts = [Point(i, ServingLayout("colocated", ((c, 1),)), ctx) for i, c in enumerate(choices)]
    ex = RayExecutor()
    got = ex.map(evaluate, [(p, 3) for p in reversed(pts)], desc="ray sweep")
    want = SerialExecutor().map(evaluate, [(p, 3) for p in reversed(pts)])
    assert sorted(got, key=lambda r: r["id"]) == sorted(want, key=lambda r: r["id"])
    a = plan(cfg, executor=ex, verify_top=0).table
    b = plan(cfg, executor=SerialExecutor(), verify_top=0).table
    assert a.equals(b)


def _fails_in_task(x):
    if x == 2:
        raise ValueError(f"bad point {x}")
    return x


def test_task_exception_is_reraised_as_itself(local_ray):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with pytest.raises(ValueError, match="bad point 2") as info:
        RayExecutor(fallback=SerialExecutor()).map(_fails_in_task, [(i,) for i in range(4)])
    assert type(info.value) is ValueError  # not Ray's wrapper with a remote traceback in its text


def test_ray_verification_matches_serial(local_ray):
    """Verification tasks (``planner.verify.verify_batch``) run as Ray tasks give the same
    verified ranking and best layout as in-process."""
    cfg = load_plan_text(PLAN)
    a = plan(cfg, executor=RayExecutor())
    b = plan(cfg, executor=SerialExecutor())
    assert a.status == b.status == "ok"
    assert a.table.equals(b.table) and a.best == b.best
    assert a.verification.drop(columns="sim_wall_s").equals(b.verification.drop(columns="sim_wall_s"))
