"""step_ops: consistency with accounting, parallel splits, validation messages, invariants."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workloads import accounting as acc
from workloads.models import get_model, list_models
from workloads.op import ATTN_DECODE, ATTN_PREFILL, COLLECTIVE, GEMM, GROUPED_GEMM, MLA_DECODE, Op
from workloads.layout import Layout
from workloads.ops import BatchShape, ParallelismError, stage_layers, step_ops, summarize_ops


def _by_name(ops, name):
    hits = [o for o in ops if o.name == name]
    assert len(hits) == 1, name
    return hits[0]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_gemm_weight_bytes_match_accounting(name, dtype, phase):
    batch = BatchShape.prefill(2, 256) if phase == "prefill" else BatchShape.decode(4, 1000)
    s = summarize_ops(step_ops(name, batch, Layout(), dtype=dtype))
    assert s["weight_bytes"] == pytest.approx(acc.gemm_weight_bytes(name, dtype), rel=1e-12)


@pytest.mark.parametrize("name", list_models())
def test_long_prefill_forward_flops_are_a_third_of_training(name):
    seq = 4096
    ops = step_ops(name, BatchShape.prefill(1, seq, logits_for="all"), Layout())
    per_token = summarize_ops(ops)["total_flops"] / seq
    assert per_token == pytest.approx(acc.training_flops_per_token(name, seq) / 3, rel=2e-3)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("kv_dtype", ["bf16", "fp8"])
def test_decode_kv_reads_equal_cache_bytes(name, kv_dtype):
    ctx = (100, 2000, 7)
    batch = BatchShape.decode(3, ctx)
    s = summarize_ops(step_ops(name, batch, Layout(), kv_dtype=kv_dtype))
    # context is the cached prefix; the step's new token is written, then attended as well
    assert s["kv_read_bytes"] == acc.kv_cache_bytes_per_token(name, kv_dtype) * sum(c + 1 for c in ctx)


def test_mla_decode_is_absorbed_and_prefill_is_not():
    dec = step_ops("deepseek-v3", BatchShape.decode(8, 4096), Layout())
    att = _by_name(dec, "moe.attn")
    assert att.kind == MLA_DECODE
    assert (att.shape["head_dim_qk"], att.shape["head_dim_v"], att.shape["heads_q"]) == (576, 512, 128)
    assert att.flops == 2 * 128 * (576 + 512) * 8 * 4097
    uk = _by_name(dec, "moe.q_absorb_bmm")
    assert (uk.shape["batch"], uk.shape["m"], uk.shape["n"], uk.shape["k"]) == (128, 8, 512, 128)
    assert _by_name(dec, "moe.out_absorb_bmm").shape["k"] == 512
    pre = step_ops("deepseek-v3", BatchShape.prefill(1, 1024), Layout())
    att = _by_name(pre, "moe.attn")
    assert att.kind == ATTN_PREFILL and att.shape["causal"] is True
    assert (att.shape["head_dim_qk"], att.shape["head_dim_v"]) == (192, 128)
    assert att.flops == 2 * 128 * (192 + 128) * 1024 * 1025 / 2
    assert _by_name(pre, "moe.kv_b_proj").shape["n"] == 128 * 256


def test_layers_are_counted_not_repeated():
    ops = step_ops("deepseek-v3", BatchShape.decode(4, 100), Layout())
    assert _by_name(ops, "dense.o_proj").count == 3 and _by_name(ops, "moe.o_proj").count == 58
    assert len(ops) < 60
    assert sum(stage_layers("deepseek-v3", 4, s)[0] + stage_layers("deepseek-v3", 4, s)[1] for s in range(4)) == 61


def test_tp4_divides_head_gemms():
    b = BatchShape.prefill(2, 512)
    one = step_ops("llama-3.1-70b", b, Layout())
    four = step_ops("llama-3.1-70b", b, Layout(tp=4))
    for n in ("dense.qkv_proj", "dense.o_proj", "dense.ffn_gate_up", "dense.ffn_down", "head.lm_head"):
        assert _by_name(four, n).flops == pytest.approx(_by_name(one, n).flops / 4), n
        assert _by_name(four, n).meta["weight_bytes"] == pytest.approx(_by_name(one, n).meta["weight_bytes"] / 4)
    assert _by_name(four, "dense.attn").flops == pytest.approx(_by_name(one, "dense.attn").flops / 4)
    ar = _by_name(four, "dense.attn_all_reduce")
    assert ar.kind == COLLECTIVE and ar.group_size == 4 and ar.bytes_per_rank == 1024 * 8192 * 2
    assert ar.stream == "comm"
    assert not [o for o in one if o.kind == COLLECTIVE]


def test_mla_tp_splits_heads_but_replicates_latent():
    b = BatchShape.decode(4, 1000)
    one = step_ops("deepseek-v3", b, Layout())
    eight = step_ops("deepseek-v3", b, Layout(tp=8, ep=8))
    assert _by_name(eight, "moe.q_b_proj").flops == pytest.approx(_by_name(one, "moe.q_b_proj").flops / 8)
    assert _by_name(eight, "moe.qkv_a_proj").flops == _by_name(one, "moe.qkv_a_proj").flops  # replicated
    assert _by_name(eight, "moe.attn").meta["kv_read_bytes"] == _by_name(one, "moe.attn").meta["kv_read_bytes"]


def test_gqa_kv_heads_replicated_beyond_kv_count():
    ops = step_ops("llama-3.1-70b", BatchShape.decode(2, 10), Layout(tp=16))
    att = _by_name(ops, "dense.attn")
    assert att.kind == ATTN_DECODE and att.shape["heads_q"] == 4 and att.shape["heads_kv"] == 1


def test_ep_must_divide_experts():
    with pytest.raises(ParallelismError, match=r"ep: 3 does not divide 256 routed experts \(valid: 1, 2\)"):
        Layout(dp=3, ep=3).check(get_model("deepseek-v3"))
    with pytest.raises(ParallelismError, match="ep: 6 does not divide 160 routed experts"):
        Layout(dp=6, ep=6).check(get_model("deepseek-v2"))


def test_tp_must_divide_heads():
    with pytest.raises(ParallelismError, match=r"tp: 3 does not divide 64 attention heads.*valid: 1, 2, 4, 8"):
        step_ops("llama-3.1-70b", BatchShape.decode(1, 1), Layout(tp=3))
    odd = get_model("llama-3.1-8b").model_dump()
    odd["attention"].update(num_heads=24, num_kv_heads=8)
    odd = type(get_model("llama-3.1-8b")).model_validate(odd)
    with pytest.raises(ParallelismError, match="tp: 12 exceeds 8 KV heads"):
        Layout(tp=12).check(odd)
    with pytest.raises(ParallelismError, match="tp: 3 does not divide 8 KV heads"):
        Layout(tp=3).check(odd)
    with pytest.raises(ParallelismError, match="no experts"):
        Layout(dp=2, ep=2).check(get_model("llama-3.1-8b"))


def test_parallelism_basic_validation():
    with pytest.raises(ParallelismError, match="tp must be a positive integer"):
        Layout(tp=0)
    with pytest.raises(ParallelismError, match="ep: 16 does not divide the 8 devices"):
        Layout(tp=8, ep=16).check(get_model("deepseek-v3"))
    with pytest.raises(ParallelismError, match="ep x moe_tp"):
        Layout(dp=8, ep=8, moe_tp=2).check(get_model("deepseek-v3"))
    p = Layout(dp=32, ep=32)
    assert (p.tp, p.moe_tp_eff, p.stage_devices, p.devices) == (1, 1, 32, 32)


def test_ep_dispatch_combine_and_expert_tokens():
    b = BatchShape.decode(256, 4000)
    ops = step_ops("deepseek-v3", b, Layout(dp=32, ep=32), dtype="fp8")
    disp, comb = _by_name(ops, "moe.dispatch"), _by_name(ops, "moe.combine")
    assert (disp.collective, disp.group_size, comb.collective) == ("dispatch", 32, "combine")
    assert disp.bytes_per_rank == 8 * 8 * 7168 * 1 and comb.bytes_per_rank == 8 * 8 * 7168 * 2
    assert disp.meta["max_groups_per_token"] == 4
    gg = _by_name(ops, "moe.experts_gate_up")
    assert gg.kind == GROUPED_GEMM and gg.shape["groups"] == 8 and gg.shape["n"] == 4096
    assert gg.shape["tokens_total"] * 32 == 256 * 8  # token-expert pairs conserved
    assert gg.shape["tokens_total"] / 8 < gg.shape["m_per_group"] <= gg.shape["tokens_total"]
    hot = step_ops("deepseek-v3", b, Layout(dp=32, ep=32), moe_imbalance=1.5)
    assert _by_name(hot, "moe.experts_gate_up").shape["tokens_total"] == 96
    # busiest attention-DP rank: 8 of 256 sequences
    assert _by_name(ops, "moe.attn").shape["batch"] == 8


def test_uneven_attention_dp_returns_busiest_rank():
    b = BatchShape.prefill(3, (1000, 10, 10))
    ops = step_ops("deepseek-v2-lite", b, Layout(dp=2, ep=2))
    assert _by_name(ops, "moe.attn").shape["batch"] == 1
    assert _by_name(ops, "moe.o_proj").shape["m"] == 1000


def test_logits_last_in_prefill_all_in_decode():
    pre = step_ops("llama-3.1-8b", BatchShape.prefill(3, 100), Layout())
    assert _by_name(pre, "head.lm_head").shape["m"] == 3
    dec = step_ops("llama-3.1-8b", BatchShape.decode(3, 100, new_tokens=2), Layout())
    assert _by_name(dec, "head.lm_head").shape["m"] == 6


def test_mtp_ops_optional():
    b = BatchShape.decode(4, 100)
    base = step_ops("deepseek-v3", b, Layout())
    with_mtp = step_ops("deepseek-v3", b, Layout(), include_mtp=True)
    extra = summarize_ops(with_mtp)["weight_bytes"] - summarize_ops(base)["weight_bytes"]
    own_gemm = acc.weight_bytes("deepseek-v3", include_mtp=True) - acc.weight_bytes("deepseek-v3")
    head = 2 * 129280 * 7168
    norms = 2 * (3 * 7168 + 2 * 7168 + 1536 + 512)
    assert extra == pytest.approx(own_gemm - norms + head)
    assert all(o.layer == "mtp" for o in with_mtp[len(base):])


def test_pipeline_stage_ops():
    b = BatchShape.prefill(1, 128)
    s0 = step_ops("llama-3.1-8b", b, Layout(pp=4), stage=0)
    s3 = step_ops("llama-3.1-8b", b, Layout(pp=4), stage=3)
    assert _by_name(s0, "dense.o_proj").count == 8
    assert any(o.name == "pp.send" for o in s0) and not any(o.name == "head.lm_head" for o in s0)
    assert any(o.name == "head.lm_head" for o in s3) and not any(o.kind == "embedding" for o in s3)
    with pytest.raises(ParallelismError, match="stage=4"):
        step_ops("llama-3.1-8b", b, Layout(pp=4), stage=4)


def test_batchshape_validation_and_split():
    with pytest.raises(ValueError, match="num_seqs"):
        BatchShape(phase="decode", num_seqs=2, new_tokens=(1, 1, 1))
    b = BatchShape.decode(5, (10, 20, 30, 40, 50))
    parts = b.split(2)
    assert sum(p.num_seqs for p in parts) == 5
    assert sum(p.total_context_tokens for p in parts) == 150
    assert parts[0].total_new_tokens >= parts[1].total_new_tokens


def test_summarize_ops_totals():
    ops = step_ops("deepseek-v3", BatchShape.decode(4, 100), Layout(tp=8, ep=8))
    s = summarize_ops(ops)
    assert s["total_flops"] == pytest.approx(sum(o.total_flops for o in ops))
    assert s["total_bytes"] == pytest.approx(sum(o.bytes_moved * o.count for o in ops))
    assert set(s["by_kind"]) >= {GEMM, GROUPED_GEMM, MLA_DECODE, COLLECTIVE}
    assert s["comm_bytes_per_rank"] > 0
    assert sum(v["flops"] for v in s["by_layer"].values()) == pytest.approx(s["total_flops"])


def test_op_shapes_use_consistent_keys():
    keys = {
        GEMM: {"m", "n", "k", "batch"},
        GROUPED_GEMM: {"groups", "m_per_group", "n", "k", "tokens_total", "active_groups"},
        ATTN_PREFILL: {"batch", "seq", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v", "causal", "context"},
        ATTN_DECODE: {"batch", "context", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v"},
        MLA_DECODE: {"batch", "context", "heads_q", "head_dim_qk", "head_dim_v"},
        "elementwise": {"elements"},
        "embedding": {"tokens", "hidden"},
        COLLECTIVE: set(),
    }
    for name in list_models():
        for b in (BatchShape.prefill(2, 64, 32), BatchShape.decode(2, 64)):
            for op in step_ops(name, b, Layout(tp=2)):
                assert isinstance(op, Op)
                assert set(op.shape) == keys[op.kind], (name, op.name)
                assert (op.stream == "comm") == (op.kind == COLLECTIVE)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(list_models()),
    phase=st.sampled_from(["prefill", "decode"]),
    seqs=st.lists(st.tuples(st.integers(1, 300), st.integers(0, 5000)), min_size=1, max_size=6),
    tp=st.sampled_from([1, 2, 4]),
)
def test_invariants(name, phase, seqs, tp):
    new, ctx = tuple(s[0] for s in seqs), tuple(s[1] for s in seqs)
    if phase == "decode":
        new = tuple(min(n, 4) for n in new)
    b = BatchShape(phase=phase, num_seqs=len(seqs), new_tokens=new, context_tokens=ctx)
    ops = step_ops(name, b, Layout(tp=tp))
    for op in ops:
        assert op.flops >= 0 and op.bytes_read >= 0 and op.bytes_written >= 0 and op.count >= 1
        assert all(not isinstance(v, float) or math.isfinite(v) for v in op.shape.values())
    s = summarize_ops(ops)
    # resident GEMM weights do not depend on the batch
    assert s["weight_bytes"] == pytest.approx(acc.gemm_weight_bytes(name) / tp, rel=0.2)
    assert s["total_flops"] > 0
