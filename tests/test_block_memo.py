"""The memoised step build (``workloads.ops_blocks.BlockMemo`` in ``InstanceCost``, op costs kept
on ``Op.derived``) gives exactly what a fresh, unmemoised build gives, for random batch shapes
on every kind of layout: dense GQA, MoE + MLA with attention DP and EP, MTP, two micro-batches,
sequence parallelism (Ulysses and ring), eager kernels, a multi-die Ascend package."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware.catalog import get_cluster
from simulator.costmodel import CostModel
from simulator.instance import InstanceCost, InstanceSpec
from workloads.layout import Layout
from workloads.models import get_model
from workloads.ops import BatchShape, step_ops
from workloads.ops_blocks import BlockMemo

SPECS = {
    "dense_gqa_tp4": dict(model="llama-3.1-70b", cluster="h200-node", layout=Layout(tp=4)),
    "dense_gqa_eager_mb2": dict(model="llama-3.1-70b", cluster="h200-node", layout=Layout(tp=2, micro_batches=2),
                                kernels="eager"),
    "gqa_ulysses": dict(model="llama-3.1-70b", cluster="h200-node", layout=Layout(tp=2, sp=4, sp_kind="ulysses")),
    "gqa_ring": dict(model="llama-3.1-70b", cluster="h200-node", layout=Layout(tp=2, sp=4, sp_kind="ring")),
    "mla_dp_ep_mtp_mb2": dict(model="deepseek-v3", cluster="h800-mpft", layout=Layout(dp=8, ep=8, micro_batches=2),
                              weight_dtype="fp8", mtp_depth=1),
    "mla_dp_ep_eager": dict(model="deepseek-v3", cluster="h800-mpft", layout=Layout(dp=8, ep=8), weight_dtype="fp8",
                            kernels="eager"),
    "ascend_dies": dict(model="deepseek-r1", cluster="cloudmatrix384",
                        layout=Layout(dp=160, ep=160, moe_tp=1, redundant_experts=64), weight_dtype="int8"),
}


def _spec(name: str) -> InstanceSpec:
    kw = dict(SPECS[name])
    return InstanceSpec(model=get_model(kw.pop("model")), cluster=get_cluster(kw.pop("cluster")), **kw)


# few distinct values, so that shapes share blocks (the memo's hits are what is under test)
_seqs = st.sampled_from([1, 2, 3, 8, 17, 160, 333])
_ctx = st.sampled_from([0, 1, 100, 4096])
_new = st.sampled_from([1, 2, 7, 512, 3000])


@st.composite
def shapes(draw):
    kind = draw(st.sampled_from(["decode", "prefill", "mixed"]))
    n = draw(_seqs)
    if kind == "decode":
        return BatchShape.decode(n, draw(_ctx), new_tokens=draw(st.sampled_from([1, 2])))
    k = draw(st.integers(1, 4))
    new = tuple(draw(_new) for _ in range(k))
    ctx = tuple(draw(_ctx) for _ in range(k))
    if kind == "prefill":
        return BatchShape.prefill(k, new, ctx)
    return BatchShape(phase="prefill", num_seqs=n + k, new_tokens=(1,) * n + new, context_tokens=(draw(_ctx),) * n + ctx)


@pytest.mark.parametrize("name", list(SPECS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(shapes(), min_size=2, max_size=8))
def test_memoised_steps_equal_fresh_builds(name, batches):
    spec = _spec(name)
    memoised = InstanceCost(spec, cache_steps=False)  # one instance: later shapes reuse earlier blocks
    for b in batches + batches[:2]:  # and costs a shape again from its memoised blocks
        fresh = InstanceCost(spec, cache_steps=False).step(b)
        assert memoised.step(b) == fresh
        assert memoised.ops(b) == InstanceCost(spec, cache_steps=False).ops(b)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(shapes(), min_size=2, max_size=5))
def test_instances_sharing_one_memo_equal_fresh_builds(batches):
    """The planner's pool models share one ``BlockMemo`` and cost models across instances
    (``InstanceCost.share_cost_models``, contexts told apart by ``BlockMemo.context_id``):
    every instance's steps equal its own fresh build, whatever the others built before."""
    from dataclasses import replace

    memo = BlockMemo(max_contexts=5)  # small: ids restart on the way
    by_cluster: dict = {}
    variants = [dict(SPECS[n]) for n in SPECS if n != "gqa_ring"]
    variants += [{**SPECS["mla_dp_ep_mtp_mb2"], "mtp_depth": 0, "layout": Layout(dp=8, ep=8)},
                 {**SPECS["mla_dp_ep_mtp_mb2"], "moe_imbalance": 1.25}]
    insts = []
    for kw in variants:
        kw = dict(kw)
        spec = InstanceSpec(model=get_model(kw.pop("model")), cluster=get_cluster(kw.pop("cluster")), **kw)
        cms = by_cluster.get(spec.cluster.name)
        if cms is None:
            cm = CostModel(cluster=spec.cluster)
            cms = by_cluster[spec.cluster.name] = (cm, replace(cm, dispatch_kernel="low_latency"))
        insts.append((spec, InstanceCost(spec, cache_steps=False).share_cost_models(*cms, blocks=memo)))
    for b in batches + batches[:1]:
        for spec, shared in insts:
            assert shared.step(b) == InstanceCost(spec, cache_steps=False).step(b), spec


@pytest.mark.parametrize("name", ["dense_gqa_tp4", "mla_dp_ep_mtp_mb2", "dense_gqa_eager_mb2"])
@settings(max_examples=10, deadline=None)
@given(batches=st.lists(shapes(), min_size=2, max_size=6))
def test_step_ops_through_a_memo_equal_step_ops_without(name, batches):
    spec = _spec(name)
    memo = BlockMemo(max_entries=7)  # small: emptied on the way
    kw = dict(dtype=spec.weight_dtype, kernels=spec.kernels, include_mtp=spec.mtp_depth > 0)
    for b in batches:
        plain = step_ops(spec.model, b, spec.layout, **kw)
        assert step_ops(spec.model, b, spec.layout, memo=memo, **kw) == plain
        assert len(memo._blocks) <= memo.max_entries


def test_block_memo_hands_out_the_same_ops_and_their_costs_once():
    spec = _spec("mla_dp_ep_mtp_mb2")
    memo = BlockMemo()
    kw = dict(dtype="fp8", include_mtp=True)
    a = step_ops(spec.model, BatchShape.decode(64, 1000, new_tokens=2), spec.layout, memo=memo, **kw)
    b = step_ops(spec.model, BatchShape.decode(64, 3000, new_tokens=2), spec.layout, memo=memo, **kw)
    shared = [x for x, y in zip(a, b) if x is y]
    # every op but the attention itself (its keys grew) is the same object
    assert {o.name.rsplit(".", 1)[-1] for o in a if o not in shared} == {"attn", "q_absorb_bmm", "out_absorb_bmm"}
    cm = CostModel(cluster=spec.cluster)
    first = [cm.op_cost(o) for o in a]
    assert all(cm.op_cost(o) is c for o, c in zip(a, first))  # kept on the op
    other = CostModel(cluster=spec.cluster)
    assert [other.op_cost(o) for o in a] == first  # another model times them itself, alike
    assert all(o.derived is not None for o in a) and repr(a[0]).count("derived") == 0


_lens = st.one_of(st.integers(1, 5000), st.sampled_from([1, 2, 10**7, 2**26 + 1, 3 * 10**8]))


@settings(max_examples=200, deadline=None)
@given(seqs=st.lists(st.tuples(_lens, st.one_of(st.integers(0, 10**6), st.sampled_from([0, 2**40]))),
                     min_size=1, max_size=40),
       repeat=st.integers(1, 300))
def test_pair_sum_is_the_float_loop_bit_for_bit(seqs, repeat):
    """``BlockCtx.pair_sum`` (exact integers below 2**53) equals the per-sequence float loop."""
    from workloads.accounting import attention_pairs
    from workloads.ops_blocks import BlockCtx

    seqs = seqs * repeat if len(seqs) == 1 else seqs
    new, ctx = tuple(s for s, _ in seqs), tuple(x for _, x in seqs)
    c = BlockCtx(model=get_model("llama-3.1-70b"), phase="prefill", dtype="bf16", kv_dtype="bf16", new=new, ctx=ctx,
                 tokens=sum(new), attn_tp=1, tp=1, ep=1, moe_tp=1, sp=1, absorb=False, moe_tokens_all=sum(new),
                 moe_imbalance=1.0, dispatch_dtype="bf16", combine_dtype="bf16")
    loop = sum(attention_pairs(n, x, True) for n, x in zip(new, ctx))
    assert c.pair_sum == loop and repr(c.pair_sum) == repr(float(loop))


@settings(max_examples=100, deadline=None)
@given(batch=shapes(), parts=st.sampled_from([1, 2, 3, 8, 144]))
def test_busiest_is_the_first_rank_of_split(batch, parts):
    assert batch.busiest(parts) == batch.split(parts)[0]
    uniform = BatchShape.decode(batch.num_seqs, 7)
    assert uniform.busiest(parts) == uniform.split(parts)[0]
