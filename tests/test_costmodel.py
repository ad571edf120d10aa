"""Cost model: sources, cross-device transfer, roofline fallback and micro-batch overlap."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hardware.catalog import get_cluster, get_device
from simulator.costmodel import CostModel
from simulator.instance import InstanceCost, InstanceSpec
from workloads.models import get_model
from workloads.op import COLLECTIVE, GEMM, Op
from workloads.layout import Layout
from workloads.ops import BatchShape, step_ops


class FakeFit:
    def seconds(self, kind, flops, nbytes, peak, hbm):
        return max(flops / (peak * 0.6), nbytes / (hbm * 0.9)) + 1e-6, "fake_fit"


@dataclass(eq=False)
class FakeProfile:
    """A profile that 'measured' every plain GEMM at a fixed efficiency on ``device`` (it
    answers ``calibration.protocol.Profile`` with no base class: the protocol is structural)."""

    device: object
    efficiency: float = 0.5
    name: str = "fake"
    path: Path = Path("fake")
    shipped: bool = False
    metadata: dict = field(default_factory=dict)
    fallback: None = None
    fallback_tables: tuple = ()

    def gemm_seconds(self, m, n, k, dtype):
        return 2.0 * m * n * k / (self.device.peak_flops(dtype) * self.efficiency), "fake_gemm"

    def for_op(self, op):
        return self

    def op_seconds(self, op):
        if op.kind == GEMM:
            s = op.shape
            return self.gemm_seconds(s["m"], s["n"], s["k"], op.dtype)
        return None

    def floor_seconds(self, op):
        return 0.0

    def efficiency_fit(self):
        return FakeFit()

    def collective_seconds(self, op, group, bytes_per_rank, fabric=None, device=None):
        return None

    def dispatch_seconds(self, direction, ep, tokens_per_rank, hidden, top_k, experts, dtype, fabric=None,
                         device=None):
        return None


def _gemm(m=4096, n=4096, k=4096, dtype="bf16") -> Op:
    return Op("g", GEMM, {"m": m, "n": n, "k": k, "batch": 1}, 2.0 * m * n * k, 2 * (m * k + n * k), 2 * m * n,
              dtype=dtype)


def test_profile_on_own_device_is_used_verbatim():
    cluster = get_cluster("h200-node")
    prof = FakeProfile(cluster.device)
    t, src = CostModel(cluster, prof).compute_seconds(_gemm())
    assert src == "profile:fake_gemm"
    assert t == pytest.approx(2 * 4096**3 / (cluster.device.peak_flops("bf16") * 0.5))


def test_transfer_keeps_measured_efficiency_and_swaps_peaks():
    # measured on H200 at 50% of bf16 peak; on an Ascend 910C the same efficiency of its own peak
    prof = FakeProfile(get_device("h200"))
    target = get_cluster("cloudmatrix384")
    t, src = CostModel(target, prof).compute_seconds(_gemm())
    assert src.startswith("transfer:h200-sxm->ascend-910c")
    assert t == pytest.approx(2 * 4096**3 / (target.device.peak_flops("bf16") * 0.5), rel=1e-9)


def test_transfer_memory_bound_scales_with_hbm():
    prof = FakeProfile(get_device("h200"), efficiency=1.0)
    op = _gemm(m=1, n=8192, k=8192)  # GEMV: memory-bound on both devices
    h200 = get_device("h200")
    h800 = get_cluster("h800-mpft")
    t_ref = prof.gemm_seconds(1, 8192, 8192, "bf16")[0]
    t, _ = CostModel(h800, prof).compute_seconds(op)
    # a GEMV's measured time (here at the compute rate) is scaled by the roofline ratio: HBM bound on both
    assert t == pytest.approx(t_ref * h200.hbm_bytes_per_s / h800.device.hbm_bytes_per_s, rel=1e-6)


def test_roofline_fallback_uses_fitted_efficiency():
    cluster = get_cluster("h200-node")
    op = Op("b", GEMM, {"m": 64, "n": 512, "k": 128, "batch": 128}, 2.0 * 128 * 64 * 512 * 128, 1e6, 1e6)
    t, src = CostModel(cluster, FakeProfile(cluster.device)).compute_seconds(op)
    assert src == "roofline:fake_fit"
    expect = max(op.flops / (cluster.device.peak_flops("bf16") * 0.6), 2e6 / (cluster.device.hbm_bytes_per_s * 0.9))
    assert t == pytest.approx(expect + 1e-6)


def test_no_profile_is_roofline_default():
    cm = CostModel(get_cluster("h200-node"))
    assert cm.compute_seconds(_gemm())[1] == "roofline:default"


def test_collective_source_is_fabric_model():
    cm = CostModel(get_cluster("h200-node"))
    op = Op("ar", COLLECTIVE, {}, 0.0, 2**24, 2**24, stream="comm", collective="all_reduce", group_size=4,
            bytes_per_rank=2**24)
    t, src = cm.comm_seconds(op)
    assert t > 0 and src.startswith("model")


def test_serial_step_is_sum_and_overlap_hides_comm():
    m = get_model("deepseek-v3")
    cluster = get_cluster("h800-mpft")
    par = Layout(dp=32, ep=32, moe_tp=1)
    ops = step_ops(m, BatchShape.prefill(32, 2048), par, dtype="fp8")
    cm = CostModel(cluster)
    serial = cm.step_cost([ops], overlap=False)
    assert serial.seconds == pytest.approx(serial.compute_s + serial.comm_s)
    half = step_ops(m, BatchShape.prefill(16, 2048), Layout(dp=32, ep=32, moe_tp=1), dtype="fp8")
    both = cm.step_cost([half, half])
    # overlapped: at least the longer (slowed) stream, less than serial
    assert both.seconds >= max(both.compute_s / (1 - cm.sm_fraction), both.comm_s) - 1e-12
    assert both.seconds < both.compute_s + both.comm_s


def test_instance_cost_caches_and_counts_mtp():
    spec = InstanceSpec(model=get_model("deepseek-v3"), cluster=get_cluster("h800-mpft"), layout=Layout(dp=16, ep=16),
                        weight_dtype="fp8", mtp_depth=1)
    inst = InstanceCost(spec)
    b = BatchShape.decode(16 * 32, 4096, new_tokens=2)
    assert inst.step(b) is inst.step(b)
    names = {o.name for o in inst.step(b).ops}
    assert any(n.startswith("mtp.") for n in names)


def test_every_op_has_a_source():
    spec = InstanceSpec(model=get_model("llama-3.1-70b"), cluster=get_cluster("h200-node"), layout=Layout(tp=4))
    cost = InstanceCost(spec).step(BatchShape.decode(32, 2048))
    assert all(o.source for o in cost.ops)
    assert cost.seconds == pytest.approx(cost.compute_s + cost.comm_s)


def test_op_key_equal_exactly_when_the_nested_items_are():
    """``costmodel._op_key`` (one flat tuple) tells ops apart as the nested item tuples did: the
    same fields and items give one key; an item moved between shape and meta, a changed value
    or a different field do not."""
    from simulator.costmodel import _op_key

    def op(shape, meta, **kw):
        return Op("x", GEMM, shape, 1.0, 2.0, 3.0, meta=meta, **kw)

    def nested(o):
        return (o.kind, o.role, o.dtype, o.flops, o.bytes_read, o.bytes_written, o.collective, o.group_size,
                o.bytes_per_rank, tuple(o.shape.items()), tuple(o.meta.items()))

    ops = [op({"m": 1, "n": 2}, {}), op({"m": 1}, {"n": 2}), op({}, {"m": 1, "n": 2}), op({"m": 1, "n": 3}, {}),
           op({"n": 2, "m": 1}, {}), op({"m": 1, "n": 2}, {}, dtype="fp8"), op({"m": 1, "n": 2}, {"x": "n"}),
           op({"m": 1, "n": 2}, {}, count=4, layer="moe"), op({"m": 1.0, "n": 2}, {})]
    for a in ops:
        for b in ops:
            assert (_op_key(a) == _op_key(b)) == (nested(a) == nested(b))
            if nested(a) == nested(b):
                assert hash(_op_key(a)) == hash(_op_key(b))
    with pytest.raises(TypeError):
        hash(_op_key(op({"m": 1}, {"groups": [1, 2]})))
