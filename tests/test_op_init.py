"""``workloads.op.Op``'s hand-written ``__init__`` is the dataclass's: the same parameters, in
field order, with the fields' defaults, and the same values set."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from workloads.op import GEMM, Op, OpKind, OpRole


def test_init_parameters_are_the_fields():
    params = list(inspect.signature(Op.__init__).parameters.values())[1:]
    init_fields = [f for f in dataclasses.fields(Op) if f.init]
    assert [p.name for p in params] == [f.name for f in init_fields]
    for p, f in zip(params, init_fields):
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default, f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert p.default is not inspect.Parameter.empty, f.name
        else:
            assert p.default is inspect.Parameter.empty, f.name


def test_init_sets_every_field_and_stays_frozen():
    a = Op("x", "gemm", {"m": 1}, 2.0, 3.0, 4.0)
    assert a.kind is OpKind.GEMM and a.meta == {} and a.role is OpRole.COMMON and a.derived is None
    b = Op("x", GEMM, {"m": 1}, 2.0, 3.0, 4.0)
    assert a.meta is not b.meta  # a fresh dict per op, as default_factory=dict
    assert a == b and dataclasses.replace(a, name="y").name == "y"
    assert repr(a) == repr(b) and pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.flops = 1.0
    with pytest.raises(ValueError):
        Op("x", "no_such_kind", {}, 0.0, 0.0, 0.0)
    full = Op(name="n", kind=GEMM, shape={}, flops=1.0, bytes_read=2.0, bytes_written=3.0, dtype="fp8", count=3,
              layer="moe", stream="comm", collective="all_reduce", group_size=4, bytes_per_rank=5.0,
              meta={"a": 1}, role=OpRole.ROUTED_EXPERT)
    assert [getattr(full, f.name) for f in dataclasses.fields(Op) if f.init] == [
        "n", GEMM, {}, 1.0, 2.0, 3.0, "fp8", 3, "moe", "comm", "all_reduce", 4, 5.0, {"a": 1}, OpRole.ROUTED_EXPERT]
