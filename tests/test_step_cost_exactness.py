"""A step-cost miss's shortcuts give exactly the floats of the plain computations they replace:
the causal (query, key) pair total taken per run of equal sequences against the float sum over
every sequence, the step context built from an instance's shared fields against the dataclass's
own constructor, and scipy's OpenBLAS left on one thread by the interpolation surfaces."""

from __future__ import annotations

import math
from dataclasses import fields

from hypothesis import given, settings
from hypothesis import strategies as st

from workloads.accounting import attention_pairs, causal_pairs_sum
from workloads.models import get_model
from workloads.ops_blocks import STEP_FIELDS, BlockCtx, BlockMemo

_runs = st.lists(st.tuples(st.integers(1, 70_000), st.integers(0, 300_000), st.integers(1, 40)), min_size=1,
                 max_size=8)


def _expand(runs):
    new = tuple(n for n, _, k in runs for _ in range(k))
    ctx = tuple(c for _, c, k in runs for _ in range(k))
    return new, ctx


@settings(max_examples=400, deadline=None)
@given(_runs)
def test_causal_pairs_sum_is_the_float_sum(runs):
    new, ctx = _expand(runs)
    plain = sum(attention_pairs(n, c, True) for n, c in zip(new, ctx))
    got = causal_pairs_sum(new, ctx)
    assert got == plain and type(got) is float


def test_causal_pairs_sum_falls_back_past_exact_floats():
    new, ctx = (3, 2**40, 5), (1, 2**30, 7)  # a total past 2**53: the float loop, term by term
    assert causal_pairs_sum(new, ctx) == sum(attention_pairs(n, c, True) for n, c in zip(new, ctx))
    new, ctx = (2.5, 3.0), (1.0, 4.0)  # non-int lengths
    assert causal_pairs_sum(new, ctx) == sum(attention_pairs(n, c, True) for n, c in zip(new, ctx))
    assert causal_pairs_sum((), ()) == 0


def test_step_context_equals_the_constructed_one():
    memo = BlockMemo()
    inst = dict(model=get_model("llama-3.1-70b"), dtype="bf16", kv_dtype="bf16", attn_tp=4, tp=4, ep=1, moe_tp=1,
                sp=1, moe_imbalance=1.0, dispatch_dtype="bf16", combine_dtype="bf16", expert_slots=0,
                kernels="fused")
    step = dict(phase="prefill", new=(1, 1, 300), ctx=(2000, 2000, 5000), tokens=302, absorb=False,
                moe_tokens_all=302)
    fast = BlockCtx.for_step(BlockCtx.instance_fields(memo, **inst), **step)
    plain = BlockCtx(**inst, **step).with_memo(memo)
    assert fast == plain and fast.memo_id == plain.memo_id and fast.memo is memo
    assert {f.name for f in fields(BlockCtx)} - STEP_FIELDS <= set(inst) | {"memo", "memo_id"}
    for name in ("pair_sum", "key_sum", "varlen", "kernel_set", "eager", "kv_local"):
        assert getattr(fast, name) == getattr(plain, name), name
    assert math.isclose(fast.pair_sum, 2 * (2000 + 1) + 300 * 5000 + 300 * 301 / 2)


def test_surfaces_leave_scipy_blas_on_one_thread():
    import ctypes

    from scipy.linalg import _fblas

    from calibration.interp import single_threaded_scipy_blas

    lib = ctypes.CDLL(_fblas.__file__)
    getter = getattr(lib, "scipy_openblas_get_num_threads", None) or getattr(lib, "openblas_get_num_threads", None)
    assert single_threaded_scipy_blas() == (getter is not None)
    if getter is not None:
        assert getter() == 1
