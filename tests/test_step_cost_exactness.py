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


def test_delaunay_loads_alone_and_is_scipy_spatials_class():
    """The triangulation's extension module loads without ``scipy.spatial``'s package (its k-d
    trees, ``scipy.sparse``, ``scipy.special``); a later ``import scipy.spatial`` reuses it, and a
    scipy whose layout differs falls back to the usual import. Each case in a fresh interpreter."""
    import subprocess
    import sys

    alone = (
        "from calibration.interp import _delaunay_class\n"
        "light = _delaunay_class()\n"
        "alone = 'scipy.spatial' not in sys.modules\n"
        "import scipy.spatial\n"
        "assert alone and light is scipy.spatial.Delaunay, (alone, light)\n"
        "assert _delaunay_class.__wrapped__() is scipy.spatial.Delaunay\n"
    )
    fallback = (
        "import calibration.interp as i\n"
        "i._extension_alone = lambda name: None\n"
        "import numpy as np\n"
        "d = i._delaunay_class()\n"
        "assert 'scipy.spatial' in sys.modules and d.__module__ == 'scipy.spatial._qhull'\n"
        "assert d(np.array([[0., 0.], [1., 0.], [0., 1.]])).find_simplex(np.array([0.2, 0.2])) == 0\n"
    )
    for code in (alone, fallback):
        done = subprocess.run([sys.executable, "-c", "import sys\n" + code], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr


def _shipped_surfaces():
    from calibration.resolve import _shipped, shipped_profiles

    out = []
    for name in shipped_profiles():
        p = _shipped(name)
        for label, group in (("prefill", p._prefill), ("decode", p._decode), ("mla", p._mla.surfaces),
                             ("sparse", p._sparse._by_shape)):
            out += [(f"{name}:{label}:{key}", srf) for key, srf in group.items() if srf._lin is not None]
    return out


def _probe_points(tri, rng):
    """Points where a triangle's choice or its sums could go wrong: every vertex, edge midpoints and
    thirds, points on the measured grid lines, random points in and just around the hull, and far
    outside it."""
    import numpy as np

    pts = tri.points
    lo, hi = pts.min(0), pts.max(0)
    span = hi - lo
    out = [pts]
    for a, b, c in tri.simplices:
        for u, v in ((a, b), (b, c), (c, a)):
            out.append(np.array([(pts[u] + pts[v]) / 2, (2 * pts[u] + pts[v]) / 3]))
    out.append(lo + rng.random((3000, 2)) * span)
    out.append(lo - 0.05 * span + rng.random((1000, 2)) * 1.1 * span)
    xs = np.unique(pts[:, 0])
    out.append(np.column_stack([rng.choice(xs, 1000), lo[1] + rng.random(1000) * span[1]]))
    out.append(np.array([lo - span, hi + span, [lo[0] - 1e-12, lo[1]], [hi[0] + 1e-9, hi[1]]]))
    return np.concatenate(out)


def test_linear_triangles_are_scipys_interpolator_bit_for_bit():
    import math

    import numpy as np
    from scipy.interpolate import LinearNDInterpolator

    rng = np.random.default_rng(15)
    surfaces = _shipped_surfaces()
    assert surfaces
    checked = 0
    for label, srf in surfaces:
        lin = srf._lin
        ref = LinearNDInterpolator(lin.tri.points, lin.values)  # its own triangulation of the same points
        assert np.array_equal(ref.tri.simplices, lin.tri.simplices), label
        for x0, x1 in _probe_points(lin.tri, rng).tolist():
            want, got = float(ref(x0, x1)), lin(x0, x1)
            assert (math.isnan(want) and math.isnan(got)) or want == got, (label, x0, x1, want, got)
            checked += 1
        # the cost model's own calls: measured batches at every measured and between-measured b
        for av in srf.a_values.tolist():
            for bv in np.exp(np.linspace(lin.tri.points[:, 1].min(), lin.tri.points[:, 1].max(), 50)).tolist():
                x0, x1 = math.log(av), math.log(bv)
                want, got = float(ref(x0, x1)), lin(x0, x1)
                assert (math.isnan(want) and math.isnan(got)) or want == got, (label, av, bv, want, got)
    assert checked > 10_000


def test_linear_triangles_scipy_answer_where_the_triangle_found_is_not_the_interpolators():
    """The path taken where ``find_simplex``'s wider tolerance found a triangle the interpolator
    may not: scipy's own answer, on the same triangulation."""
    import math

    import numpy as np
    from scipy.interpolate import LinearNDInterpolator

    label, srf = _shipped_surfaces()[0]
    lin = srf._lin
    ref = LinearNDInterpolator(lin.tri.points, lin.values)
    for x0, x1 in _probe_points(lin.tri, np.random.default_rng(7))[::50].tolist():
        want, got = float(ref(x0, x1)), lin._scipy_at(x0, x1)
        assert (math.isnan(want) and math.isnan(got)) or want == got, (label, x0, x1)


_floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=500, deadline=None)
@given(st.lists(_floats, min_size=1, max_size=12, unique=True), st.lists(_floats, min_size=12, max_size=12),
       st.lists(_floats, min_size=1, max_size=6), st.integers(0, 2**40))
def test_interp1_is_numpys_interp(knots, values, probes, big):
    import numpy as np

    from calibration.interp import interp1

    xs = sorted(knots)
    ys = values[: len(xs)]
    points = probes + xs + [xs[0] - 1.0, xs[-1] + 1.0, float("nan"), big, (xs[0] + xs[-1]) / 2]
    for x in points:
        want = float(np.interp(x, np.array(xs), np.array(ys)))
        got = interp1(x, xs, ys)
        assert (math.isnan(want) and math.isnan(got)) or want == got, (x, xs, ys)


def test_curves_keep_the_loglog_floats():
    import numpy as np

    from calibration.interp import Curve, _interp_loglog
    from calibration.resolve import _shipped, shipped_profiles

    rng = np.random.default_rng(3)
    curves = []
    for name in shipped_profiles():
        p = _shipped(name)
        for srf in (*p._prefill.values(), *p._decode.values(), *p._mla.surfaces.values()):
            curves += list(srf.by_a.values())
    curves.append(Curve(np.array([4.0]), np.array([1e-5])))
    assert len(curves) > 20
    for c in curves:
        xs = c.xs
        probes = [*xs.tolist(), *np.exp(rng.uniform(np.log(xs[0]) - 0.1, np.log(xs[-1]) + 0.1, 200)).tolist(),
                  float(xs[0]) * (1 - 1e-10), float(xs[-1]) * (1 + 1e-10), 0.0, -1.0]
        for x in probes:
            assert c(x) == _interp_loglog(xs, c.ys, x), (x, xs)


def test_equal_micro_batches_cost_as_two_separate_builds():
    """A batch split into two equal micro-batches builds one op list for both (``InstanceCost.ops``);
    its step equals composing two lists built apart, without a memo."""
    from hardware.catalog import get_cluster
    from simulator.costmodel import CostModel
    from simulator.instance import InstanceCost, InstanceSpec, _halves
    from workloads.layout import Layout
    from workloads.ops import BatchShape, step_ops

    spec = InstanceSpec(model=get_model("llama-3.1-70b"), cluster=get_cluster("h200-node"),
                        layout=Layout(tp=2, micro_batches=2), kernels="eager")
    for b in (BatchShape.decode(8, 1000), BatchShape.decode(7, 333), BatchShape.prefill(2, (512, 512), (0, 0)),
              BatchShape.prefill(1, 3000, 100)):
        parts = _halves(b, 2)
        ic = InstanceCost(spec, cache_steps=False)
        ops = ic.ops(b)
        if len(parts) == 2 and parts[0] == parts[1]:
            assert all(x is y for x, y in zip(ops[0], ops[1]))
        apart = [step_ops(spec.model, mb, spec.layout, dtype="bf16", kv_dtype="bf16", kernels="eager")
                 for mb in parts]
        assert ops == apart
        assert ic.step(b) == CostModel(cluster=spec.cluster).step_cost(apart)
