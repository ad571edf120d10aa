"""``attention.sp_kind`` in serving (issue 11 item 17): Ulysses and ring attention are costed by
``workloads.sequence_parallel`` (the model training uses) and differ the way their mechanisms say.

* Ulysses: QKV and output all-to-alls of the new tokens, exposed; the KV stays head-sharded.
* Ring: ``sp - 1`` K/V passes per layer, each under one block's attention, so a long prefill of a
  GQA model (few KV heads, attention quadratic in length) hides them entirely.
* Decode: ring (tokens sharded) gathers every head's partial output; Ulysses (heads sharded)
  only a device's ``1 / sp`` of the heads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clustersim.cli import app
from hardware.catalog import get_cluster
from simulator.instance import InstanceCost, InstanceSpec
from workloads.layout import Layout
from workloads.models import get_model
from workloads.ops import BatchShape
from workloads.sequence_parallel import ACT_BYTES, ring_exposed_s

ROOT = Path(__file__).resolve().parents[1]
SP = 4


def _inst(kind: str) -> InstanceCost:
    return InstanceCost(InstanceSpec(model=get_model("llama-3.1-70b"), cluster=get_cluster("h200-node"),
                                     layout=Layout(tp=2, sp=SP, sp_kind=kind)))


def _sp_ops(cost, suffix):
    return [o for o in cost.ops if o.name.endswith(suffix)]


def test_long_gqa_prefill_ring_hides_its_passes_ulysses_pays_its_all_to_alls():
    n = 32768
    uly, ring = _inst("ulysses").step(BatchShape.prefill(1, n)), _inst("ring").step(BatchShape.prefill(1, n))
    assert uly.compute_s == pytest.approx(ring.compute_s)  # same attention work, split two ways
    passes = _sp_ops(ring, "sp.kv_ring_pass")
    assert passes and all(o.seconds == 0.0 for o in passes)  # hidden under block attention
    a2a = _sp_ops(uly, "_all_to_all")
    assert len(a2a) == 2 and all(o.seconds > 0 for o in a2a)
    assert ring.seconds < uly.seconds and ring.comm_s < uly.comm_s
    # Ulysses' volume: QKV of n / sp tokens (32 query + 4 KV heads per TP rank) plus the output
    heads, kvh, d = 32, 4, 128
    ops = _inst("ulysses").ops(BatchShape.prefill(1, n))[0]
    per_layer = sum(o.bytes_per_rank for o in ops if o.name.endswith("_all_to_all"))
    assert per_layer == (n // SP) * ((heads + 2 * kvh) + heads) * d * ACT_BYTES


def test_short_prefill_ring_passes_show_beyond_tiny_blocks():
    ring = _inst("ring").step(BatchShape.prefill(1, 256))
    passes = _sp_ops(ring, "sp.kv_ring_pass")
    assert passes and all(o.seconds > 0 for o in passes)
    assert passes[0].count == 80 * (SP - 1)


def test_decode_ulysses_gathers_only_its_heads():
    b = BatchShape.decode(64, 8192)
    ui, ri = _inst("ulysses"), _inst("ring")
    ug = [o for o in ui.ops(b)[0] if o.name.endswith("sp_out_gather")]
    rg = [o for o in ri.ops(b)[0] if o.name.endswith("sp_out_gather")]
    assert ug and rg and ug[0].bytes_per_rank * SP == rg[0].bytes_per_rank
    uly, ring = ui.step(b), ri.step(b)
    assert uly.compute_s == ring.compute_s and uly.comm_s < ring.comm_s


def test_ring_exposure_formula():
    assert ring_exposed_s(2.0, 1.0, 4) == 0.0
    assert ring_exposed_s(1.0, 3.0, 4) == pytest.approx(6.0)


def test_sp_kinds_differ_through_the_cli():
    base = ["simulate", str(ROOT / "examples/llama-3.1-70b_h200_tp4_colocated.yaml"), "--json",
            "--set", "serving.pool.attention.tp=2", "--set", "serving.pool.attention.sp=2",
            "--set", "workload.num_requests=150"]
    out = {}
    for kind in ("ulysses", "ring"):
        r = CliRunner().invoke(app, base + ["--set", f"serving.pool.attention.sp_kind={kind}"])
        assert r.exit_code == 0, r.output
        out[kind] = json.loads(r.output)["summary"]
    assert out["ulysses"]["ttft_ms"] != out["ring"]["ttft_ms"]
    assert out["ulysses"]["pools"]["pool"]["comm_share"] != out["ring"]["pools"]["pool"]["comm_share"]
