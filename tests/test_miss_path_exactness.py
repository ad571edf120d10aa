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
