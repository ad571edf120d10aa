"""``workloads.layout.Layout``: one value, one validator; one test per rule, named after it, and
the same broken layout refused in the same words by every part that holds a layout."""

from __future__ import annotations

import pickle
import re
from dataclasses import FrozenInstanceError, replace

import pytest
from typer.testing import CliRunner

from hardware.catalog import get_cluster
from workloads.deployment import Pool, load_deployment
from workloads.layout import Layout, ParallelismError
from workloads.models import get_model
from workloads.training import TrainingParallelism, pipeline_stages

V3, LLAMA70 = get_model("deepseek-v3"), get_model("llama-3.1-70b")


def _first(lay: Layout, model, **kw) -> tuple[str, str]:
    found = lay.problems(model, **kw)
    assert found, f"{lay} should break a rule on {model.name}"
    return found[0]


def test_layout_is_frozen_hashable_picklable():
    lay = Layout(tp=2, dp=4, ep=8, moe_tp=1, redundant_experts=32, micro_batches=2)
    assert pickle.loads(pickle.dumps(lay)) == lay and hash(lay) == hash(replace(lay))
    assert {lay: 1}[Layout(tp=2, dp=4, ep=8, moe_tp=1, redundant_experts=32, micro_batches=2)] == 1
    with pytest.raises(FrozenInstanceError):
        lay.tp = 4  # type: ignore[misc]
    assert (lay.stage_devices, lay.devices, lay.seq_split) == (8, 8, 1)


def test_construction_refuses_non_positive_or_unknown_values():
    for bad in ({"tp": 0}, {"ep": -1}, {"pp": True}, {"dp": 1.5}, {"redundant_experts": -1}):
        with pytest.raises(ParallelismError, match="must be a"):
            Layout(**bad)
    with pytest.raises(ParallelismError, match="valid: ulysses, ring"):
        Layout(sp_kind="zigzag")
    with pytest.raises(ParallelismError, match="both"):
        Layout(moe_tp=None, expert_dp=None)


def test_tp_must_divide_heads():
    assert _first(Layout(tp=3), LLAMA70) == ("tp", "3 does not divide 64 attention heads "
                                                   "(valid: 1, 2, 4, 8, 16, 32, 64)")


def test_tp_must_divide_or_replicate_kv_heads():
    odd = get_model("llama-3.1-8b").model_copy(update={"attention": get_model("llama-3.1-8b").attention.model_copy(
        update={"num_heads": 24, "num_kv_heads": 8})})
    assert _first(Layout(tp=3), odd)[1].startswith("3 does not divide 8 KV heads")
    assert _first(Layout(tp=12), odd)[1].startswith("12 exceeds 8 KV heads and is not a multiple")
    assert not Layout(tp=16).problems(LLAMA70)  # 16 > 8 KV heads, a multiple: each replicated twice


def test_ulysses_degree_must_divide_heads_per_tp_rank_ring_need_not():
    field, problem = _first(Layout(tp=8, sp=3), LLAMA70)
    assert field == "sp" and problem.startswith("ulysses degree 3 does not divide the 8 heads per TP rank")
    assert not Layout(tp=8, sp=3, sp_kind="ring").problems(LLAMA70)


def test_tp_must_divide_dense_and_shared_expert_widths():
    odd = LLAMA70.model_copy(update={"dense_intermediate_size": 28676})  # 4 x 7169
    assert _first(Layout(tp=8), odd) == ("tp", "8 does not divide dense FFN width 28676 (valid: 1, 2, 4, 67, 107, "
                                               "134, 214, 268, 428, 7169, 14338, 28676)")
    odd = V3.model_copy(update={"moe": V3.moe.model_copy(update={"num_shared_experts": 3, "intermediate_size": 1000})})
    assert _first(Layout(tp=16, ep=16), odd)[1].startswith("16 does not divide shared-expert width 3000")


def test_ep_must_divide_experts():
    assert _first(Layout(dp=3, ep=3), V3) == ("ep", "3 does not divide 256 routed experts (valid: 1, 2)")
    field, problem = _first(Layout(dp=144, ep=144, moe_tp=1), V3)
    assert (field, problem) == ("ep", "144 does not divide 256 routed experts (valid: 1, 2, 4, 8, 16, 32, 64, 128)")
    assert not Layout(dp=144, ep=144, moe_tp=1, redundant_experts=32).problems(V3)  # 288 slots
    assert _first(Layout(dp=7, ep=7, moe_tp=1, redundant_experts=32), V3)[1].startswith(
        "7 does not divide 256 routed + 32 redundant experts")


def test_dense_model_has_no_experts():
    assert _first(Layout(dp=2, ep=2), LLAMA70)[0] == "ep"
    assert _first(Layout(redundant_experts=4), LLAMA70) == (
        "redundant_experts", "llama-3.1-70b is dense and has no experts (valid: ep 1, no redundant experts)")
    assert not Layout(tp=4, moe_tp=1).problems(LLAMA70)  # MoE degrees are ignored on a dense model


def test_moe_tp_must_divide_expert_width():
    assert _first(Layout(dp=6, ep=2, moe_tp=3), V3)[0:1] == ("moe_tp",)


def test_expert_group_must_cover_the_stage():
    assert _first(Layout(tp=8, ep=16), V3) == (
        "ep", "16 does not divide the 8 devices of a pipeline stage (tp x dp x sp x cp; valid: 1, 2, 4, 8)")
    field, problem = _first(Layout(tp=4, dp=8, ep=16, moe_tp=1), V3)
    assert field == "ep" and problem.startswith("ep x moe_tp x pp = 16x1x1 = 16 must equal the 32 devices")
    # training: experts replicated over the rest of the stage (expert DP), whole TP groups only
    assert not Layout(dp=128, ep=64, moe_tp=1, expert_dp=None).problems(V3)
    assert _first(Layout(tp=2, dp=2, sp=3, sp_kind="ring", ep=4, moe_tp=1, expert_dp=None), V3) == (
        "ep", "4 must be a multiple or a divisor of tp x sp x cp = 6")


def test_devices_must_match_the_layout():
    assert _first(Layout(tp=2), LLAMA70, devices=4) == ("devices", "4 devices but attention tp x dp x sp x pp = "
                                                                   "2x1x1x1 = 2")


def test_pipeline_stages_within_and_dividing_the_layers():
    assert _first(Layout(pp=3), LLAMA70, even_stages=True) == ("pp", "3 does not divide 80 layers (valid: 1, 2, "
                                                                     "4, 5, 8, 10, 16, 20, 40, 80)")
    assert not Layout(pp=3).problems(LLAMA70)  # uneven stages are fine where each stage is costed
    assert _first(Layout(pp=81), LLAMA70) == ("pp", "81 exceeds 80 layers")
    assert _first(Layout(pp=41), LLAMA70, stages=pipeline_stages("dualpipev", 41)) == (
        "pp", "82 pipeline stages (pp 41) exceed 80 layers")


def test_tp_within_the_scale_up_domain():
    assert _first(Layout(tp=16), get_model("llama-3.1-405b"), cluster=get_cluster("h100-ib")) == (
        "tp", "tp 16 spans beyond one nvlink domain of 8 devices (valid: up to 8)")


def test_check_raises_the_first_problem_and_step_ops_costs_one_expert_copy():
    with pytest.raises(ParallelismError, match="^tp: 3 does not divide 64 attention heads"):
        Layout(tp=3).check(LLAMA70)
    from workloads.ops import BatchShape, step_ops

    with pytest.raises(ParallelismError, match="expert_dp"):
        step_ops(V3, BatchShape.decode(4, 10), Layout(dp=2, ep=1, moe_tp=1, expert_dp=None))


def test_training_layout_and_its_expert_group():
    """The job's layout carves the EP group out of the stage; ``expert_group`` is what step_ops costs."""
    p = TrainingParallelism(dp=128, pp=16, ep=64, pp_schedule="dualpipe")
    lay = p.layout
    assert (lay.devices, lay.moe_tp_eff, lay.expert_dp_eff) == (2048, 1, 2)
    g = lay.expert_group()
    assert (g.tp, g.dp, g.ep, g.moe_tp, g.expert_dp, g.stage_devices) == (1, 64, 64, 1, 1, 64)
    g = TrainingParallelism(dp=16, tp=8, ep=2).layout.expert_group()  # ep < tp: each expert split 4 ways
    assert (g.tp, g.dp, g.ep, g.moe_tp) == (8, 1, 2, 4)
    assert p.pipeline_stages == 16 and TrainingParallelism(pp=4, pp_schedule="dualpipev").pipeline_stages == 8


@pytest.mark.parametrize("name", ["deepseek-v3_h800_pd-disagg.yaml", "deepseek-r1_cloudmatrix384.yaml",
                                  "llama-3.1-70b_h200_tp4_colocated.yaml"])
def test_pool_yaml_and_layout_round_trip(name):
    from pathlib import Path

    dep = load_deployment(Path(__file__).resolve().parents[1] / "examples" / name)
    for pool in dep.pools().values():
        back = Pool.from_layout(pool.layout, **pool.model_dump(exclude={"devices_per_instance", "pp", "attention",
                                                                         "micro_batches", "moe"}),
                                moe_imbalance=pool.moe.imbalance)
        assert back == pool and back.layout == pool.layout


def test_one_validator_gives_the_same_words_everywhere(tmp_path):
    """A tp that does not divide the heads, refused by validate (YAML), the planner, estimate,
    a training job and step_ops with the same problem text."""
    from clustersim.cli import app
    from clustersim.estimate import check_instance
    from planner.feasibility import check_rules
    from planner.space import PoolChoice
    from workloads.training import parse_training_job

    problem = "3 does not divide 64 attention heads (valid: 1, 2, 4, 8, 16, 32, 64)"
    cfg = tmp_path / "d.yaml"
    cfg.write_text("cluster: h200-node\nmodel: llama-3.1-70b\nserving:\n  mode: colocated\n  pool:\n"
                   "    devices_per_instance: 3\n    attention: {tp: 3}\nworkload:\n"
                   "  arrival: {kind: poisson, rate_per_s: 1.0}\n  num_requests: 10\n")
    r = CliRunner().invoke(app, ["validate", str(cfg)])
    assert r.exit_code == 2 and f"serving.pool.attention.tp: {problem}" in r.output
    lay = Layout(tp=3)

    class Ctx:  # the plan-context fields check_rules reads
        weight_dtype = "bf16"
        mtp_acceptance, moe_imbalance, kv_memory_fraction, budget_devices = 0.0, 1.0, 0.9, 8

    assert check_rules(Ctx, PoolChoice("pool", lay, 0, 8, 1024), LLAMA70, get_cluster("h200-node")) == \
        f"pool.attention.tp: {problem}"
    with pytest.raises(ValueError, match=f"^--tp: {re.escape(problem)}$"):
        check_instance(LLAMA70, get_cluster("h200-node"), lay, dtype="bf16")
    with pytest.raises(ValueError, match=f"parallelism.tp: {re.escape(problem)}"):
        parse_training_job("model: llama-3.1-70b\ncluster: h200-node\nglobal_batch: 8\nseq_len: 1024\n"
                           "parallelism: {tp: 3}\n", "job.yaml")
    with pytest.raises(ParallelismError, match=f"^tp: {re.escape(problem)}$"):
        lay.check(LLAMA70)
