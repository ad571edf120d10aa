"""TrainingJob schema: located errors, one test per rule, overrides."""

import pytest

from workloads.training import ConfigError, TrainingJob, load_training_job, parse_training_job

EXAMPLE = "examples/train_deepseek-v3_h800_2048.yaml"


def test_example_loads():
    job = load_training_job(EXAMPLE)
    p = job.parallelism
    assert (p.dp, p.pp, p.ep, p.tp, p.zero_stage, p.pp_schedule) == (128, 16, 64, 1, 1, "dualpipe")
    assert p.devices == 2048 and job.micro_batches == 120 and job.tokens_per_step == 15360 * 4096


def test_overrides_apply():
    job = load_training_job(EXAMPLE, ["training.cluster=h800-mrft", "parallelism.pp_schedule=zb1p"])
    assert job.cluster == "h800-mrft" and job.parallelism.pp_schedule == "zb1p"


def test_ep_must_divide_experts_located():
    with pytest.raises(ConfigError) as exc:
        load_training_job(EXAMPLE, ["parallelism.ep=48"])
    msg = str(exc.value)
    assert msg.startswith(f"{EXAMPLE}:") and "training.parallelism.ep" in msg and "256 routed experts" in msg
    line = int(msg.split(":")[1])
    assert "ep: 64" in open(EXAMPLE).read().splitlines()[line - 1]


def test_unknown_field_rejected_with_location():
    text = "model: llama-3.1-8b\ncluster: h800-mrft\nglobal_batch: 8\nseq_len: 4096\nbogus: 1\n"
    with pytest.raises(ConfigError, match=r"job.yaml:5:1: bogus: unknown field \(valid: model, cluster"):
        parse_training_job(text, "job.yaml")


def _job(**par):
    base = dict(dp=1, pp=1)
    base.update(par)
    return dict(model="llama-3.1-8b", cluster="h800-mrft", global_batch=64, seq_len=4096, parallelism=base)


def test_ulysses_degree_limited_by_heads():
    with pytest.raises(ValueError, match="ulysses degree 3 does not divide the 32 heads"):
        TrainingJob(**_job(sp=3, dp=1))
    TrainingJob(**_job(sp=3, sp_kind="ring", dp=1, pp=1) | {"seq_len": 4095})  # ring has no head limit


def test_tp_must_divide_heads():
    with pytest.raises(ValueError, match="tp.*5 does not divide 32 attention heads"):
        TrainingJob(**_job(tp=5))


def test_dense_model_has_no_ep():
    with pytest.raises(ValueError, match="dense and has no experts"):
        TrainingJob(**_job(ep=2, dp=2))


def test_global_batch_must_split_over_dp_and_micro_batch():
    with pytest.raises(ValueError, match="do not split into dp x micro_batch_size"):
        TrainingJob(**_job(dp=3))


def test_dualpipe_needs_enough_micro_batches():
    with pytest.raises(ValueError, match="DualPipe needs an even number of micro-batches"):
        TrainingJob(**(_job(pp=8, pp_schedule="dualpipe", dp=8) | {"global_batch": 64}))


def test_layout_must_fit_cluster():
    with pytest.raises(ValueError, match="exceed the 2048"):
        TrainingJob(**(_job(dp=4096) | {"global_batch": 4096}))


def test_seq_must_split_over_sp():
    with pytest.raises(ValueError, match="not divisible by sp x cp"):
        TrainingJob(**(_job(sp=4, cp=2) | {"seq_len": 4100}))
