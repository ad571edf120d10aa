"""The two glue-kernel sets of ``workloads.ops`` (fused serving kernels vs plain torch ops)."""

from __future__ import annotations

import pytest

from calibration.profile import load_profile
from hardware.catalog import get_cluster
from simulator.costmodel import CostModel
from workloads.models import get_model
from workloads.layout import Layout
from workloads.ops import BatchShape, moe_layer_ops, step_ops


def _names(ops):
    return {o.name for o in ops}


def test_eager_adds_residuals_split_rope_and_kv_writes():
    m = get_model("llama-3.1-8b")
    shape = BatchShape.decode(16, 1024)
    fused = step_ops(m, shape, Layout(), kernels="fused")
    eager = step_ops(m, shape, Layout(), kernels="eager")
    extra = _names(eager) - _names(fused)
    assert extra == {"dense.attn_residual", "dense.ffn_residual", "dense.rope_k", "dense.kv_cache_write_k",
                     "dense.kv_cache_write_v"}
    by = {o.name: o for o in eager}
    # eager norms are plain (read x, write y) and carry their row width for the rmsnorm table
    assert by["dense.attn_norm"].bytes_moved == pytest.approx(16 * 4096 * 2 * 2)
    assert by["dense.attn_norm"].meta["width"] == 4096
    # K and V writes together write exactly the KV bytes of the fused single write
    kv_f = next(o for o in fused if o.name == "dense.kv_cache_write").meta["kv_write_bytes"]
    assert by["dense.kv_cache_write_k"].meta["kv_write_bytes"] * 2 == pytest.approx(kv_f)
    # the same GEMMs and attention in both sets
    for name in ("dense.qkv_proj", "dense.attn", "dense.ffn_gate_up", "head.lm_head"):
        assert by[name].flops == next(o for o in fused if o.name == name).flops


def test_eager_moe_uses_topk_and_scatter_tables():
    m = get_model("deepseek-v3")
    par = Layout(dp=4, ep=4, moe_tp=1)
    ops = {o.name: o for o in moe_layer_ops(step_ops(m, BatchShape.prefill(4, 1024), par, kernels="eager"))}
    assert ops["moe.topk"].meta["op"] == "moe_topk"
    un = ops["moe.experts_unpermute"]
    assert un.meta["op"] == "moe_scatter"
    pairs = ops["moe.experts_gate_up"].shape["tokens_total"]
    # rows that receive at least one of the 4*1024 tokens' pairs: 1 - (1 - 64/256)^8 of them
    assert un.meta["rows"] == pytest.approx(4096 * (1 - 0.75**8), rel=1e-3)
    assert un.bytes_moved == pytest.approx(pairs * 7168 * 4 + pairs * 2 + un.meta["rows"] * 7168 * 4)
    cm = CostModel(cluster=get_cluster("h200-node"), profile=load_profile("h200"))
    assert "moe_scatter" in cm.op_cost(un).source and "moe_topk" in cm.op_cost(ops["moe.topk"]).source


def test_unknown_kernel_set_is_rejected():
    with pytest.raises(ValueError, match="valid: fused, eager"):
        step_ops("llama-3.1-8b", BatchShape.decode(1, 16), kernels="triton")


def test_rmsnorm_table_follows_width_at_few_rows():
    p = load_profile("h200")
    t4k, src = p.rmsnorm_seconds(16, 4096)
    t8k, _ = p.rmsnorm_seconds(16, 8192)
    t6k, src6 = p.rmsnorm_seconds(16, 6144)
    assert "rmsnorm_bf16" in src and 1.4 < t8k / t4k < 2.0
    assert t4k < t6k < t8k and "interpolated in width 4096..7168" in src6
