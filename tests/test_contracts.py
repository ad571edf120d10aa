"""Types where strings were: one dtype table, the Profile protocol, op kinds and roles as
enums, and no ``activation_dtype`` field that the cost model would ignore."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from calibration.profile import MeasuredProfile, load_profile
from calibration.protocol import Profile
from calibration.resolve import LayeredProfile, profile_info, resolve_profile
from clustersim.cli import app
from hardware import dtypes
from hardware.dispatch import token_bytes
from workloads import accounting, ops_blocks, sequence_parallel
from workloads.op import GEMM, Op, OpKind, OpRole
from workloads.layout import Layout
from workloads.ops import BatchShape, step_ops

# ------------------------------------------------------------------ one dtype table


def test_every_layer_reads_the_one_dtype_table():
    assert accounting.DTYPE_BYTES is dtypes.DTYPE_BYTES and accounting.dtype_bytes is dtypes.dtype_bytes
    assert ops_blocks.ACT_BYTES is accounting.ACT_BYTES is sequence_parallel.ACT_BYTES
    assert accounting.ACT_BYTES == dtypes.dtype_bytes(accounting.ACTIVATION_DTYPE) == 2.0
    # a dispatch payload is its dtype's bytes plus one fp32 scale per 128 elements for 8-bit dtypes
    assert token_bytes(7168, "bf16") == 7168 * dtypes.dtype_bytes("bf16")
    assert token_bytes(7168, "fp8") == 7168 * dtypes.dtype_bytes("fp8") + 56 * 4


def test_dtype_names_are_case_insensitive_and_unknown_ones_list_the_valid():
    assert dtypes.dtype_bytes("FP8") == 1.0 and dtypes.dtype_bytes("int4") == 0.5
    with pytest.raises(ValueError, match=r"unknown dtype 'fp6' \(valid: fp32, bf16, fp16, fp8, int8, fp4, int4\)"):
        dtypes.dtype_bytes("fp6")
    with pytest.raises(ValueError, match="valid: fp8, int8, bf16, fp16, fp32"):
        token_bytes(7168, "fp4")  # no dispatch kernel sends 4-bit payloads
    with pytest.raises(TypeError):
        dtypes.DTYPE_BYTES["fp6"] = 0.75  # read-only


# ------------------------------------------------------------------ the Profile protocol

MEMBERS = [n for n in vars(Profile) if not n.startswith("_")]


def test_protocol_lists_what_the_cost_model_asks():
    assert set(MEMBERS) == {"name", "path", "shipped", "metadata", "device", "fallback", "fallback_tables", "for_op",
                            "op_seconds", "floor_seconds", "efficiency_fit", "collective_seconds", "dispatch_seconds"}


@pytest.mark.parametrize("prof", [load_profile("h200"), resolve_profile("h200", "h800-sxm")],
                         ids=["measured", "layered"])
def test_both_profile_classes_answer_the_protocol(prof):
    assert isinstance(prof, (MeasuredProfile, LayeredProfile))
    missing = [n for n in MEMBERS if not hasattr(prof, n)]
    assert not missing
    op = step_ops("llama-3.1-8b", BatchShape(phase="decode", num_seqs=8, new_tokens=1, context_tokens=512))[1]
    assert isinstance(prof.for_op(op), MeasuredProfile)
    info = profile_info(prof, "h800-sxm")
    assert info["name"] == "h200" and info["measured_on"] == "h200-sxm" and info["path"] is None


def test_a_profile_missing_a_member_fails_loudly():
    """The cost model calls the protocol's members; it no longer guesses past a missing one."""
    from hardware.catalog import get_cluster
    from simulator.costmodel import CostModel

    class Partial:
        device = None
        name = "partial"

        def op_seconds(self, op):
            return None

    gemm = Op("g", GEMM, {"m": 64, "n": 64, "k": 64, "batch": 1}, 2.0 * 64**3, 16384.0, 8192.0)
    with pytest.raises(AttributeError, match="for_op"):
        CostModel(get_cluster("h200-node"), Partial()).compute_seconds(gemm)


# ------------------------------------------------------------------ op kinds and roles


def test_op_kind_is_an_enum_equal_to_its_name():
    op = Op("g", "gemm", {"m": 1, "n": 1, "k": 1}, 2.0, 4.0, 2.0)
    assert op.kind is OpKind.GEMM and op.kind == "gemm" and f"{op.kind}" == "gemm"
    with pytest.raises(ValueError, match="'gemmm' is not a valid OpKind"):
        Op("g", "gemmm", {}, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("kernels", ["fused", "eager"])
def test_routed_expert_ops_are_marked_by_role_not_name(kernels):
    ops = step_ops("deepseek-v3", BatchShape(phase="decode", num_seqs=64, new_tokens=1, context_tokens=1024),
                   Layout(dp=8, ep=8, moe_tp=1), dtype="fp8", kernels=kernels)
    expert = {o.name for o in ops if o.role is OpRole.ROUTED_EXPERT}
    quant = ("act_quant",) if kernels == "eager" else ()  # eager FP8: the SwiGLU output's quantisation
    assert expert == {f"moe.experts_{s}" for s in ("permute", "gate_up", "act", "down", "unpermute") + quant}
    shared = [o for o in ops if o.name.startswith("moe.shared_")]
    assert shared and all(o.role is OpRole.COMMON for o in shared)


# ------------------------------------------------------------------ activation_dtype is gone


@pytest.mark.parametrize("example", ["examples/deepseek-v3_h800_pd-disagg.yaml", "examples/plan_deepseek-v3_h800.yaml"])
def test_activation_dtype_is_refused_with_its_location(tmp_path, example):
    text = open(example).read().replace("kv_dtype: bf16\n", "kv_dtype: bf16\nactivation_dtype: fp8\n", 1)
    path = tmp_path / "x.yaml"
    path.write_text(text)
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2
    line = next(n for n, t in enumerate(text.splitlines(), 1) if t.startswith("activation_dtype"))
    assert f"x.yaml:{line}:1: activation_dtype: unknown field (valid: " in res.output
    assert "weight_dtype" in res.output and len(res.output.strip().splitlines()) == 1
