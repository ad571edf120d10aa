"""Pipeline schedule registry and the longest-path pass against the event simulation.

The registry: every name the schema accepts (``workloads.pipeline_schedules``) has exactly one
implementation (``simulator.training.schedules.REGISTRY``) and the reverse. The DAG pass: on
every registered schedule, several (pp, micro-batch) shapes, odd ones included, and random
unequal stage times, hops and activation sizes, it gives the event simulation's figures to the
bit (step time, per-rank end/finish/busy/idle, phases, peak activations).
"""

from __future__ import annotations

import random
from typing import get_args

import pytest

from simulator.training.pipeline import StageTimes, evaluate_pipelines, simulate_pipeline
from simulator.training.pipeline_dag import compile_schedule
from simulator.training.schedules import REGISTRY, PipelineSchedule, get_schedule
from workloads.pipeline_schedules import PIPELINE_SCHEDULES, PP_SCHEDULE_NAMES
from workloads.training import TrainingParallelism


# ---------------------------------------------------------------- registry
def test_names_and_implementations_match_one_to_one():
    assert REGISTRY.keys() == PP_SCHEDULE_NAMES == tuple(PIPELINE_SCHEDULES)
    schedules = [get_schedule(name) for name in REGISTRY.keys()]
    for name, sched in zip(REGISTRY.keys(), schedules):
        assert isinstance(sched, PipelineSchedule)
        assert sched.name == name
    assert len({type(s) for s in schedules}) == len(schedules)


def test_a_name_without_an_implementation_is_refused_at_import():
    from simulator.registry import PolicyRegistry
    from workloads.policy_names import PolicyNames

    with pytest.raises(ValueError, match="names without an implementation \\['gpipe'\\]"):
        PolicyRegistry(PolicyNames("pipeline schedule", [*PP_SCHEDULE_NAMES, "gpipe"]),
                       {n: type(get_schedule(n)) for n in PP_SCHEDULE_NAMES})


def test_schema_literal_is_generated_from_the_registry():
    assert get_args(TrainingParallelism.model_fields["pp_schedule"].annotation) == PP_SCHEDULE_NAMES


def test_unknown_schedule_lists_the_valid_names():
    with pytest.raises(ValueError) as err:
        get_schedule("gpipe")
    assert str(err.value) == "unknown pipeline schedule 'gpipe' (valid: 1f1b, zb1p, dualpipe, dualpipev)"


@pytest.mark.parametrize("name", PP_SCHEDULE_NAMES)
def test_stage_count_is_the_schemas(name):
    sched = get_schedule(name)
    for pp in (1, 2, 4, 8):
        assert sched.stages(pp) == PIPELINE_SCHEDULES[name].stages(pp)
        assert len(sched.held_stages(pp)) == pp
        held = [s for h in sched.held_stages(pp) for s in h]
        assert sorted(set(held)) == list(range(sched.stages(pp)))


# ---------------------------------------------------------------- DAG == event simulation
CANDIDATE_PP = (1, 2, 3, 4, 5, 6, 8)
CANDIDATE_M = (1, 3, 4, 7, 8, 12, 13, 14, 17, 20)


def _shapes(name: str) -> list[tuple[int, int]]:
    out = []
    for pp in CANDIDATE_PP:
        for m in CANDIDATE_M:
            try:
                get_schedule(name).validate(pp, m)
            except ValueError:
                continue
            out.append((pp, m))
    return out


def _random_times(stages: int, seed: int, p2p: bool = True) -> StageTimes:
    rng = random.Random(seed)
    def ph(*keys):
        return {k: rng.uniform(0.05, 2.0) for k in keys}
    f = [ph("forward", "exposed_comm") for _ in range(stages)]
    bi = [ph("backward_input", "recompute", "exposed_comm") for _ in range(stages)]
    w = [ph("backward_weight") for _ in range(stages)]
    b = [{**x, **y} for x, y in zip(bi, w)]
    fb_table = {(i, j): ph("forward", "backward_input", "backward_weight", "comm_sm_slowdown")
                for i in range(stages) for j in range(stages)}
    hops = {(d, s): (rng.uniform(0.0, 0.3) if p2p else 0.0) for d in (0, 1) for s in range(stages)}
    return StageTimes(f, b, bi, w, lambda sf, sb: fb_table[sf, sb], lambda d, s: hops[d, s],
                      [rng.uniform(1.0, 5.0) for _ in range(stages)])


def _assert_same(dag, ev):
    assert dag.makespan_s == ev.makespan_s
    for name in ("busy_s", "idle_s", "end_s", "finish_s", "peak_inflight", "peak_act_bytes"):
        assert getattr(dag, name) == getattr(ev, name), name
    assert [dict(p) for p in dag.phases_s] == [dict(p) for p in ev.phases_s]


@pytest.mark.parametrize("name", PP_SCHEDULE_NAMES)
def test_dag_step_equals_the_event_simulation_on_every_schedule(name):
    shapes = _shapes(name)
    # several shapes, odd ones among them (pp not a power of two, m not a multiple of pp)
    assert len(shapes) >= 4 and any(m % pp or pp & (pp - 1) for pp, m in shapes), shapes
    for i, (pp, m) in enumerate(shapes):
        times = _random_times(get_schedule(name).ranks(pp), seed=1000 * i + pp * 31 + m, p2p=i % 3 != 0)
        tails = {d: [("dp_grad_sync", 0.1 * d), ("optimizer", 0.25), ("dp_param_gather", 0.0)] for d in range(pp)}
        ev = simulate_pipeline(name, pp, m, times, tail=lambda d: tails[d], method="events")
        dag = simulate_pipeline(name, pp, m, times, tail=lambda d: tails[d], method="dag")
        _assert_same(dag, ev)


@pytest.mark.parametrize("name", PP_SCHEDULE_NAMES)
def test_a_batch_of_layouts_evaluates_as_each_alone(name):
    pp, m = _shapes(name)[-1]
    stages = get_schedule(name).ranks(pp)
    times = [_random_times(stages, seed=s) for s in range(3)]
    batch = evaluate_pipelines(name, pp, m, times, [None] * 3)
    for t, run in zip(times, batch):
        _assert_same(run, simulate_pipeline(name, pp, m, t, method="events"))


def test_trace_runs_the_event_simulation_and_records_the_timeline():
    t = StageTimes.uniform(2, 1.0, 2.0, 1.0)
    traced = simulate_pipeline("1f1b", 2, 2, t, trace=True)
    assert len(traced.timeline) == 8
    assert simulate_pipeline("1f1b", 2, 2, t).timeline == ()
    with pytest.raises(ValueError, match="only the event simulation records a trace"):
        simulate_pipeline("1f1b", 2, 2, t, trace=True, method="dag")


def test_compiled_graphs_are_cached_by_shape():
    assert compile_schedule("zb1p", 4, 9) is compile_schedule("zb1p", 4, 9)
    g = compile_schedule("dualpipev", 2, 5)
    assert g.ranks == 4 and g.n == sum(len(a) for a in get_schedule("dualpipev").actions(2, 5))


def test_a_schedule_that_deadlocks_is_refused():
    from simulator.training.schedules.base import ScheduleBase, one

    class Crossed(ScheduleBase):
        name = "crossed"

        def actions(self, pp, m):  # stage 0 waits for a gradient before it sends the forward
            return [[one("B", 0, 0, 0), one("F", 0, 0, 0)], [one("F", 0, 0, 1), one("B", 0, 0, 1)]]

        def closed_form_bubble(self, stages, f, b, w, fb):
            return 0.0

    REGISTRY.register("crossed", Crossed)
    try:
        with pytest.raises(ValueError, match="deadlocks"):
            compile_schedule("crossed", 2, 1)
        with pytest.raises(ValueError, match="deadlocks"):
            simulate_pipeline("crossed", 2, 1, StageTimes.uniform(2, 1, 2, 1), method="events")
    finally:
        REGISTRY.unregister("crossed")
        compile_schedule.cache_clear()


# ---------------------------------------------------------------- the training plan's ranking
def _events_only(jobs, *, profile=None):
    """``simulate_trainings`` as it was: one job at a time through the simpy event simulation."""
    from simulator.training import simulate_training

    out = []
    for job in jobs:
        try:
            out.append(simulate_training(job, profile=profile, check_memory=False, trace=True))
        except ValueError as exc:
            out.append(exc)
    return out


def test_training_plan_ranking_is_the_event_simulations(monkeypatch):
    """A reduced DeepSeek-V3 / 2,048 H800 plan (the example's job, fewer layouts, every
    schedule): the DAG pass, batched by shape on a 2-worker pool, gives the table the event
    simulation gives one layout at a time, bit for bit (so the same ranking)."""
    import simulator.training as training
    from clustersim.run import resolve_profile
    from planner.executors import LocalExecutor
    from planner.training_search import training_search

    args = ("deepseek-v3", "h800-mpft", 2048, 4096, 15360)
    kw = dict(precision="fp8", comm_sms=20, tp_options=(1, 2), pp_options=(4, 16), ep_options=(64,),
              schedules=PP_SCHEDULE_NAMES, optimizer_moment_dtype="bf16",
              profile=resolve_profile("default", "h800-mpft"))
    with LocalExecutor(2) as pool:
        pooled = training_search(*args, executor=pool, **kw)
    monkeypatch.setattr(training, "simulate_trainings", _events_only)
    events = training_search(*args, **kw)
    assert len(events) == 16 and events.feasible.sum() >= 4
    assert pooled.equals(events)


@pytest.mark.parametrize("name, pp, global_batch, field, problem", [
    ("dualpipe", 3, 96, "pp", "DualPipe needs an even pp, got 3"),
    ("dualpipe", 4, 56, "micro_batches", "DualPipe needs an even number of micro-batches >= 2 x pp = 8, got 7"),
    ("dualpipev", 4, 56, "micro_batches", "DualPipeV needs >= 2 x pp = 8 micro-batches, got 7"),
])
def test_the_schemas_shape_rules_are_the_registrys(name, pp, global_batch, field, problem):
    """The job schema refuses what ``ScheduleFacts.problems`` (and so the schedule) refuses, in the same words."""
    from workloads.training import ConfigError, parse_training_job

    micro_batches = global_batch // 8
    assert (field, problem) in PIPELINE_SCHEDULES[name].problems(pp, micro_batches)
    with pytest.raises(ValueError, match=problem):
        get_schedule(name).validate(pp, micro_batches)
    with pytest.raises(ConfigError, match=problem.replace("(", "\\(")):
        parse_training_job(f"training: {{model: llama-3.1-8b, cluster: h800-mrft, global_batch: {global_batch}, "
                           f"seq_len: 2048, parallelism: {{dp: 8, pp: {pp}, pp_schedule: {name}}}}}")
