"""A training plan costs each distinct stage and each distinct device tail once.

``plan_job`` costs a stage once per ``StageInputs.key`` (its dense and MoE layers, first,
last) and copies it to the stages that share the key; ``dp_tails`` computes a device's tail
once per distinct parameter count. Both are only sound if nothing else about a stage or a
device enters its cost: these tests cost every stage and every tail on its own and compare,
on jobs where the reuse happens (the ZeRO-3 gathers, context and ring sequence parallelism,
DualPipe's mirrored stages and DualPipeV's fold, the balanced split with an MTP module all
depend on the stage). ``simulate_trainings`` also shares cost models, layer templates, stages
and collective times between the layouts of a batch (``SharedCosts``): a batch of layouts
that differ in schedule and ZeRO stage gives each layout's figures alone.
"""

from __future__ import annotations

import pytest

from simulator.training import simulate_training, simulate_trainings
from simulator.training.step import dp_tail_phases, dp_tails, plan_job, stage_cost, stage_inputs
from workloads.training import TrainingJob

JOBS = {
    "dsv3_dualpipe_balanced_mtp": dict(
        model="deepseek-v3", cluster="h800-mpft", global_batch=512, seq_len=4096, precision="fp8", comm_sms=20,
        include_mtp=True, layer_split="balanced", optimizer_moment_dtype="bf16",
        parallelism={"dp": 16, "pp": 8, "pp_schedule": "dualpipe", "ep": 16}),
    "dsv3_dualpipev_zero3": dict(
        model="deepseek-v3", cluster="h800-mpft", global_batch=256, seq_len=4096,
        parallelism={"dp": 32, "zero_stage": 3, "pp": 4, "pp_schedule": "dualpipev", "ep": 32}),
    "llama_1f1b_cp_ring": dict(
        model="llama-3.1-8b", cluster="h800-mrft", global_batch=64, seq_len=8192,
        parallelism={"dp": 2, "tp": 2, "pp": 6, "pp_schedule": "1f1b", "sp": 2, "sp_kind": "ring", "cp": 2}),
    "llama_zb1p_zero3_ulysses": dict(
        model="llama-3.1-8b", cluster="h800-mrft", global_batch=64, seq_len=4096, recompute="full",
        parallelism={"dp": 4, "zero_stage": 3, "pp": 4, "pp_schedule": "zb1p", "sp": 2}),
}


@pytest.mark.parametrize("name", sorted(JOBS))
def test_each_stage_costed_once_is_the_stage_costed_alone(name):
    job = TrainingJob(**JOBS[name])
    plan = plan_job(job)
    inp = stage_inputs(job)
    stages = len(inp.split)
    assert len(plan.stages) == stages
    # the reuse is exercised: fewer distinct stages than stages
    assert len({inp.key(s) for s in range(stages)}) < stages
    alone = tuple(stage_cost(inp, s) for s in range(stages))
    assert plan.stages == alone


@pytest.mark.parametrize("name", sorted(JOBS))
def test_each_distinct_tail_computed_once_is_the_tail_computed_alone(name):
    job = TrainingJob(**JOBS[name])
    plan = plan_job(job)
    pp = job.parallelism.pp
    tails = dp_tails(plan)
    assert tails == [dp_tail_phases(plan, d) for d in range(pp)]
    assert len({tuple(t) for t in tails}) < pp


def test_a_batch_sharing_costs_gives_each_layout_alone():
    base = dict(model="llama-3.1-8b", cluster="h800-mrft", global_batch=64, seq_len=4096)
    jobs = [TrainingJob(**base, parallelism={"dp": 4, "zero_stage": zero, "pp": 4, "pp_schedule": sched})
            for zero in (1, 3) for sched in ("1f1b", "zb1p", "dualpipe", "dualpipev")]
    jobs.append(TrainingJob(**base, parallelism={"dp": 2, "tp": 2, "pp": 4, "pp_schedule": "1f1b"}))
    batch = simulate_trainings(jobs)
    for job, res in zip(jobs, batch):
        alone = simulate_training(job, check_memory=False)
        assert (res.step_time_s, res.breakdown_s, res.memory_peak_gb) == \
            (alone.step_time_s, alone.breakdown_s, alone.memory_peak_gb), job.parallelism
        assert res.stages.equals(alone.stages) and res.per_device.equals(alone.per_device)
    # the ZeRO-3 gathers (DualPipe's mirrored DP groups) keep its stages apart from 1F1B's
    one_f, dual = batch[4].stages, batch[6].stages
    assert not one_f["f_s"].equals(dual["f_s"])
