"""Training-only mechanisms: layer placement (layers.py), FP8 casts and loss (recipe.py),
the attention backward rate (step.py)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from simulator.training import load_training_job, simulate_training
from simulator.training.layers import LayerTemplates, balanced_split, even_split, split_layers
from simulator.training.recipe import FP8_WRITE, fp8_cast_ops, loss_ops
from simulator.training.step import ATTN_BWD_FACTOR, attention_backward_factor, ops_parallelism, plan_job
from workloads.models import get_model
from workloads.op import GEMM, GROUPED_GEMM, Op
from workloads.ops import BatchShape, step_ops

EXAMPLE = "examples/train_deepseek-v3_h800_2048.yaml"


def _key(op: Op):
    return (op.name, op.kind, op.count, round(op.total_flops), round(op.bytes_read), round(op.bytes_written))


def test_templates_rebuild_every_stage_of_step_ops():
    # the per-layer templates reproduce workloads.ops.step_ops stage by stage (even split)
    job = load_training_job(EXAMPLE, ["training.include_mtp=true"])
    m = get_model(job.model)
    par, g = ops_parallelism(job, m)
    batch = BatchShape.prefill(g, job.seq_len, logits_for="all")
    t = LayerTemplates.build(m, batch, par, "fp8", 1.0, True, "fp8")
    for s, (dense, moe) in enumerate(even_split(m, par.pp)):
        want = [op for op in step_ops(m, batch, par, "fp8", 1.0, stage=s, include_mtp=True, dispatch_dtype="fp8")
                if op.name != "pp.send"]
        got = t.stage_ops(dense, moe, s == 0, s == par.pp - 1)
        assert sorted(map(_key, got)) == sorted(map(_key, want)), s


def test_split_layers_end_counts_and_even_middle():
    split = split_layers(61, 3, 16, 3, 2)
    assert sum(d + m for d, m in split) == 61 and sum(d for d, _ in split) == 3
    assert [d + m for d, m in split] == [3] + [4] * 14 + [2]
    assert split_layers(10, 0, 4, 1, 1) == ((0, 1), (0, 4), (0, 4), (0, 1))
    with pytest.raises(ValueError, match="cannot place"):
        split_layers(10, 0, 4, 5, 5)


@pytest.mark.parametrize("head", [0.0, 1.5, 4.0])
@pytest.mark.parametrize("stages", [6, 8])
def test_balanced_split_is_the_best_end_counts_by_brute_force(head, stages):
    m = get_model("llama-3.1-8b")  # 32 layers
    held = [(r, stages - 1 - r) for r in range(stages)]  # DualPipe pairing

    def load(dense, moe, first, last):
        return dense + moe + (head if last else 0.0) + (0.3 if first else 0.0)

    def busiest(split):
        loads = [load(d, x, s == 0, s == stages - 1) for s, (d, x) in enumerate(split)]
        return max(sum(loads[s] for s in h) for h in held)

    best = balanced_split(m, stages, held, load)
    def layers(split):
        return max(sum(sum(split[s]) for s in h) for h in held)

    cap = layers(even_split(m, stages))
    splits = [split_layers(32, 0, stages, f, l_) for f, l_ in itertools.product(range(1, 10), range(1, 10))
              if 32 - f - l_ >= stages - 2]
    brute = min(busiest(s) for s in splits if layers(s) <= cap)
    assert layers(best) <= cap
    assert busiest(best) == pytest.approx(min(brute, busiest(even_split(m, stages))))


def test_fp8_casts_bytes_per_gemm():
    g = Op("x.o_proj", GEMM, {"m": 4096, "n": 7168, "k": 16384, "batch": 1}, 0.0, 0.0, 0.0, dtype="fp8", count=3,
           layer="moe")
    e = Op("x.experts_gate_up", GROUPED_GEMM, {"tokens_total": 32768, "n": 4096, "k": 7168}, 0.0, 0.0, 0.0,
           dtype="fp8", count=3, layer="moe")
    bf16 = Op("x.lm_head", GEMM, {"m": 4096, "n": 129280, "k": 7168}, 0.0, 0.0, 0.0, dtype="bf16", count=1, layer="head")
    fwd, b_in, b_w = fp8_cast_ops([g, e, bf16], topk=8)
    assert len(fwd) == len(b_in) == len(b_w) == 2  # BF16 GEMMs need no cast
    q = 1.0 + 4 / 128  # FP8 byte + FP32 scale per 128 elements
    assert fwd[0].bytes_read == 4096 * 16384 * 2 and fwd[0].bytes_written == pytest.approx(4096 * 16384 * q)
    assert fwd[1].bytes_read == 32768 / 8 * 7168 * 2  # quantised per token, before the dispatch
    assert b_in[0].bytes_written == pytest.approx(2 * 4096 * 7168 * q)  # dgrad and wgrad tilings
    assert b_w[1].bytes_read == pytest.approx(32768 * 7168 * q)  # the cached FP8 input, per copy
    assert all(op.count == 3 for op in fwd + b_in + b_w)
    assert FP8_WRITE * 2 == pytest.approx(q)


def test_loss_reads_logits_forward_and_writes_their_gradient_backward():
    head = Op("head.lm_head", GEMM, {"m": 4096, "n": 129280, "k": 7168, "batch": 1}, 0.0, 0.0, 0.0, dtype="bf16",
              count=1, layer="head")
    fwd, bwd = loss_ops([head, replace(head, name="mtp.head.lm_head", layer="mtp")])
    assert len(fwd) == len(bwd) == 2
    assert fwd[0].bytes_read == 4096 * 129280 * 2 and fwd[0].bytes_written == 0
    assert bwd[0].bytes_written == 4096 * 129280 * 2


def test_attention_backward_factor_from_published_rates():
    # equal forward and backward rates: the FLOP ratio itself; FA2 on H100: slower backward
    assert attention_backward_factor(300.0, 300.0, 2.5) == pytest.approx(2.5)
    assert ATTN_BWD_FACTOR == pytest.approx((3.5 / 294 - 1 / 319) * 319)
    assert 2.5 < ATTN_BWD_FACTOR < 3.0


def test_mtp_and_balanced_split_on_the_dsv3_example():
    job = load_training_job(EXAMPLE)
    assert job.include_mtp and job.layer_split == "balanced"
    plan = plan_job(job)
    last = plan.stages[-1]
    assert any(op.layer == "mtp" for op in last.ops)
    assert sum(d + m for d, m in plan.split) == 61
    even = plan_job(job.model_copy(update={"layer_split": "even"}))

    def busiest(p):
        work = [s.fwd + s.bwd_input + s.bwd_weight + s.recompute for s in p.stages]
        return max(work[r] + work[len(work) - 1 - r] for r in range(len(work)))

    assert busiest(plan) < busiest(even)
    r = simulate_training(job)
    assert r.fits_memory and r.step_time_s > 0
