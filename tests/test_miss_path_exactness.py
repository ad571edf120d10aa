"""The step-cost miss path's shortcuts give exactly what the plain computations they replace give:
a batch's parts built without re-validation (``BatchShape.trusted``) against the validated model,
the chunked-prefill table's bisected neighbours against scanning its keys, and ``BlockCtx``'s
lock-free cached properties against ``functools.cached_property``."""

from __future__ import annotations

from functools import cached_property

from hypothesis import given, settings
from hypothesis import strategies as st

from calibration.chunk_lookup import _around
from workloads.ops import BatchShape
from workloads.ops_blocks import _step_property


def _same_model(got: BatchShape, ref: BatchShape) -> None:
    assert got == ref and hash(got) == hash(ref) and got.model_dump() == ref.model_dump()
    assert got.model_fields_set == ref.model_fields_set and repr(got) == repr(ref)
    assert got.__pydantic_extra__ == ref.__pydantic_extra__ and got.__pydantic_private__ == ref.__pydantic_private__


def _validated(b: BatchShape) -> BatchShape:
    return BatchShape(phase=b.phase, num_seqs=b.num_seqs, new_tokens=b.new_tokens, context_tokens=b.context_tokens,
                      logits_for=b.logits_for)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["prefill", "decode"]), st.lists(st.tuples(st.integers(1, 5000), st.integers(0, 9000)),
                                                        min_size=1, max_size=40),
       st.integers(1, 16), st.sampled_from([None, "last", "all"]), st.booleans())
def test_batch_parts_without_revalidation_equal_the_validated_ones(phase, seqs, parts, logits_for, uniform):
    """``split`` and ``busiest`` build their parts ``trusted``: the models validation would build."""
    if uniform:
        batch = BatchShape(phase=phase, num_seqs=len(seqs), new_tokens=seqs[0][0], context_tokens=seqs[0][1],
                           logits_for=logits_for)
    else:
        batch = BatchShape(phase=phase, num_seqs=len(seqs), new_tokens=tuple(n for n, _ in seqs),
                           context_tokens=tuple(c for _, c in seqs), logits_for=logits_for)
    for part in batch.split(parts):
        _same_model(part, _validated(part))
    _same_model(batch.busiest(parts), _validated(batch.split(parts)[0]))


def test_trusted_shape_equals_model_construct():
    new, ctx = (1, 1, 300), (40, 40, 0)
    _same_model(BatchShape.trusted("prefill", 3, new, ctx),
                BatchShape.model_construct(phase="prefill", num_seqs=3, new_tokens=new, context_tokens=ctx))
    _same_model(BatchShape.trusted("decode", 3, 1, 7, "all", with_logits_for=True),
                BatchShape(phase="decode", num_seqs=3, new_tokens=1, context_tokens=7, logits_for="all"))


@settings(max_examples=300, deadline=None)
@given(st.sets(st.integers(1, 10_000), min_size=2, max_size=30), st.floats(1.0, 10_000.0))
def test_bisected_neighbours_equal_the_scans(keys, x):
    keys = sorted(keys)
    if not keys[0] < x < keys[-1] or x in keys:
        return
    assert _around(keys, x) == (max(k for k in keys if k < x), min(k for k in keys if k > x))


def test_step_property_reads_like_cached_property():
    calls = []

    class Ref:
        @cached_property
        def value(self):
            calls.append("ref")
            return len(calls)

    class New:
        @_step_property
        def value(self):
            """Doc."""
            calls.append("new")
            return len(calls)

    ref, new = Ref(), New()
    assert (ref.value, ref.value, new.value, new.value) == (1, 1, 2, 2)
    assert new.__dict__ == {"value": 2} and New.value.__doc__ == "Doc." and calls == ["ref", "new"]


@given(st.lists(st.integers(0, 3), max_size=8))
def test_all_equal_is_a_set_of_at_most_one(values):
    from workloads.ops_blocks import _all_equal

    assert _all_equal(tuple(values)) == (len(set(values)) <= 1)


def _reference_step_ops(model, batch, layout, include_mtp):
    """``step_ops`` as it composed a step before its segments (blocks built in place, no memo)."""
    import math

    from workloads import ops as w
    from workloads.ops_blocks import ACT_BYTES, BlockCtx, attention_block, block, collective

    m = w.get_model(model)
    dense_n, moe_n = w.stage_layers(m, layout.pp, 0)
    local = batch.busiest(layout.dp) if layout.dp > 1 else batch
    tokens = math.ceil(sum(local.new_list) / layout.seq_split) if batch.phase == "prefill" else sum(local.new_list)
    base = w._prepare(m, layout, "bf16", 1.0, "bf16", 0, None, "bf16", "fused", None)[-1]
    c = BlockCtx.for_step(base, phase=batch.phase, new=local.new_list, ctx=local.context_list, tokens=tokens,
                          absorb=batch.phase == "decode",
                          moe_tokens_all=sum(local.new_list) if local is batch else batch.total_new_tokens)

    def layer(kind, count, p, name=None):
        name = name or kind
        ffn = block(c, (), w._ffn_half, c, kind, count, p, name)
        return [*attention_block(c, name, count, p), *ffn]

    ops = [*w._embedding(c, "embed", "embed.")]
    if dense_n:
        ops += layer("dense", dense_n, "dense.")
    if moe_n:
        ops += layer("moe", moe_n, "moe.")
    if layout.pp > 1:
        return ops + [collective("pp.send", "send_recv", 2, tokens * m.hidden_size * ACT_BYTES, layer="pp", count=1)]
    n_logits = local.num_seqs if batch.logits_mode == "last" else tokens
    ops += w._head(c, n_logits, "head", "head.")
    if include_mtp and m.num_mtp_modules:
        n = m.num_mtp_modules
        ops += [*w._embedding(c, "mtp", "mtp.", count=n), *w._mtp_in(c, n)]
        ops += layer("moe" if m.is_moe else "dense", n, "mtp.", "mtp")
        ops += w._head(c, n_logits, "mtp", "mtp.head.", count=n)
    return ops


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([("llama-3.1-70b", dict(tp=4), False), ("llama-3.1-70b", dict(tp=2, pp=2), False),
                        ("deepseek-v3", dict(dp=8, ep=8), True), ("deepseek-v3", dict(tp=2, sp=2), False)]),
       st.sampled_from(["decode", "prefill", "mixed"]), st.integers(1, 40), st.integers(1, 3000),
       st.integers(0, 5000), st.booleans())
def test_step_segments_compose_the_reference_op_list(case, kind, n, chunk, ctx, memoised):
    """``step_ops``'s segments (kept per step key in a memo, or built in place) give the op list the
    blocks composed in place give, op for op."""
    from workloads.layout import Layout
    from workloads.ops import step_ops
    from workloads.ops_blocks import BlockMemo

    model, lay, mtp = case
    layout = Layout(**lay)
    if kind == "decode":
        batch = BatchShape.decode(n, ctx)
    elif kind == "prefill":
        batch = BatchShape.prefill(1, chunk, ctx)
    else:
        batch = BatchShape(phase="prefill", num_seqs=n + 1, new_tokens=(1,) * n + (chunk,),
                           context_tokens=(ctx,) * n + (0,))
    memo = BlockMemo() if memoised else None
    for _ in range(2 if memoised else 1):  # a memoised step again: its kept segments
        assert step_ops(model, batch, layout, include_mtp=mtp, memo=memo) == _reference_step_ops(model, batch,
                                                                                                  layout, mtp)
