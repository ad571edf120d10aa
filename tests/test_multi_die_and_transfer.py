"""Multi-die packages (Ascend 910C: one attention-DP rank per die), the launch floor in the
transfer to other hardware, and the catalog's share of compute units that EP communication holds."""

from __future__ import annotations

from dataclasses import replace

import pytest

from calibration.profile import load_profile
from hardware.catalog import die_device, get_cluster, get_device
from simulator.costmodel import CostModel
from simulator.instance import InstanceCost, InstanceSpec
from workloads.layout import Layout
from workloads.deployment_rules import die_replicas
from workloads.models import get_model
from workloads.ops import BatchShape
from workloads.ops_blocks import elementwise


def test_die_replicas_rule():
    pkg = get_device("ascend-910c")
    assert die_replicas(pkg, attn_tp=1) == 2
    assert die_replicas(pkg, attn_tp=2) == 1 and die_replicas(pkg, attn_tp=1, sp=2) == 1
    assert die_replicas(get_device("h200"), attn_tp=1) == 1
    die = die_device(pkg)
    assert die.name == "ascend-910c-die" and die.hbm_bytes_per_s * 2 == pytest.approx(pkg.hbm_bytes_per_s)
    assert die_device(get_device("h200")).name == get_device("h200").name


def _cm384_spec(**kw):
    base = dict(model=get_model("deepseek-r1"), cluster=get_cluster("cloudmatrix384"),
                layout=Layout(dp=160, ep=160, moe_tp=1, redundant_experts=64), weight_dtype="int8", kv_dtype="bf16")
    return InstanceSpec(**{**base, **kw})


def test_each_die_reads_its_own_replica_of_the_attention_weights():
    batch = BatchShape.decode(160, 4096)  # one sequence per NPU: weight reads dominate
    die_mode = InstanceCost(_cm384_spec())
    assert die_mode.dies == 2
    # the same instance costed as if the package were one device (attention TP 1 over packages)
    pkg = InstanceCost(_cm384_spec(cluster=replace(get_cluster("cloudmatrix384"),
                                                   device=replace(get_device("ascend-910c"), dies=1))))
    assert pkg.dies == 1

    def cost(ic, name):
        return sum(c.total_s for c in ic.step(batch).ops if c.name == name)

    # a weight-bound replicated GEMM: one die reads the full weights at half the package bandwidth
    assert 1.8 < cost(die_mode, "moe.o_proj") / cost(pkg, "moe.o_proj") <= 2.0
    # expert GEMMs are partitioned over EP and stay per package
    assert cost(die_mode, "moe.experts_gate_up") == pytest.approx(cost(pkg, "moe.experts_gate_up"), rel=1e-9)
    assert die_mode.step(batch).seconds > pkg.step(batch).seconds


def test_transfer_keeps_the_launch_floor():
    prof = load_profile("h200")
    h200 = CostModel(cluster=get_cluster("h200-node"), profile=prof)
    h800 = CostModel(cluster=get_cluster("h800-mpft"), profile=prof)
    ratio = get_device("h200").hbm_bytes_per_s / get_device("h800").hbm_bytes_per_s
    tiny = elementwise("x.copy", 1024, layer="x", count=1)
    big = elementwise("x.copy", 2**28, layer="x", count=1)
    t_tiny = h800.compute_seconds(tiny)[0] / h200.compute_seconds(tiny)[0]
    t_big = h800.compute_seconds(big)[0] / h200.compute_seconds(big)[0]
    assert t_tiny == pytest.approx(1.0, abs=1e-6)  # below the measured floor: same launch cost
    assert t_big == pytest.approx(ratio, rel=0.01)  # bandwidth-bound: scales with HBM bandwidth


def test_comm_compute_share_comes_from_the_catalog():
    assert CostModel(cluster=get_cluster("h800-mpft")).sm_fraction == pytest.approx(20 / 132)
    assert CostModel(cluster=get_cluster("cloudmatrix384")).sm_fraction == 0.0
    assert CostModel(cluster=get_cluster("h800-mpft"), comm_sm_fraction=0.25).sm_fraction == 0.25
