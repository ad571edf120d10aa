"""Profile lookups on a synthetic profile (exact closed forms) and on the shipped H200 profile."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from calibration.profile import UnknownProfileError, load_profile
from calibration.resolve import default_profile_for

PEAK = 1e15  # synthetic device: 1 PFLOP/s, 1 TB/s
BW = 1e12


def _gemm_t(m, n, k):
    return max(2.0 * m * n * k / PEAK, 2.0 * (m * k + n * k + m * n) / BW)


@pytest.fixture()
def synth(tmp_path):
    ms = [1, 4, 16, 64, 256, 1024, 4096]
    rows = [dict(m=m, n=n, k=k, m_run=m, seconds=_gemm_t(m, n, k), tflops=0, method="x")
            for n, k in ((4096, 4096), (1024, 8192)) for m in ms]
    pd.DataFrame(rows).to_csv(tmp_path / "gemm_bf16.csv", index=False)
    rows = [dict(groups=g, m_per_group=m, n=512, k=256, seconds=g * m * 1e-6, tflops=0, method="x")
            for g in (8, 32) for m in (1, 8, 64)]
    pd.DataFrame(rows).to_csv(tmp_path / "grouped_gemm_bf16.csv", index=False)
    rows = [dict(batch=b, seq=s, heads_q=32, heads_kv=8, head_dim_qk=128, head_dim_v=128, causal=1,
                 seconds=b * s * s * 1e-9, tflops=1, backend="f", gqa_impl="g", method="x")
            for b in (1, 4) for s in (128, 512, 2048)]
    pd.DataFrame(rows).to_csv(tmp_path / "attn_prefill_bf16.csv", index=False)
    rows = [dict(batch=b, context=c, heads_q=32, heads_kv=8, head_dim_qk=128, head_dim_v=128,
                 seconds=b * c * 1e-8, kv_bytes=b * c * 4096, gbps=1, tflops=1, backend="f",
                 gqa_impl="pack_q", method="x") for b in (1, 8, 64) for c in (256, 1024, 4096)]
    pd.DataFrame(rows).to_csv(tmp_path / "attn_decode_bf16.csv", index=False)
    rows = [dict(batch=b, context=c, heads_q=h, head_dim_qk=576, head_dim_v=512, impl=impl,
                 seconds=b * c * h * 1e-9 * (2 if impl == "sdpa" else 1), kv_bytes=b * c * 1152,
                 gbps=1, tflops=1, impl_detail=impl, method="x")
            for impl in ("bmm", "sdpa") for h in (16, 128) for b in (1, 8) for c in (128, 1024)]
    pd.DataFrame(rows).to_csv(tmp_path / "mla_decode_bf16.csv", index=False)
    rows = [dict(op="copy", elements=b // 4, bytes=b, seconds=b / BW, gbps=BW / 1e9, method="x")
            for b in (2**12, 2**20, 2**28)]
    pd.DataFrame(rows).to_csv(tmp_path / "elementwise_bf16.csv", index=False)
    pd.DataFrame([dict(bytes=2**28, seconds=2**28 / (0.9 * BW), gbps=0.9 * BW / 1e9, method="x")]).to_csv(
        tmp_path / "hbm.csv", index=False)
    rows = [dict(fabric="nvlink", group=8, bytes_per_rank=b, seconds=1e-5 + b / 1e11, seconds_eager=1, algbw=1,
                 busbw=1, method="x", backend="nccl")
            for b in (4096, 2**20, 2**30)]
    pd.DataFrame(rows).to_csv(tmp_path / "collective_all_reduce.csv", index=False)
    (tmp_path / "metadata.json").write_text(json.dumps({
        "gpu_name": "synthetic", "reference_peaks": {"bf16_flops_per_s": PEAK, "hbm_bytes_per_s": BW,
                                                     "source": "test"}}))
    return load_profile(tmp_path)


def test_gemm_exact_at_measured_points(synth):
    t, src = synth.gemm_seconds(64, 4096, 4096)
    assert t == pytest.approx(_gemm_t(64, 4096, 4096))
    assert "gemm_bf16" in src and "interpolated" in src


def test_gemm_interpolates_in_log_m(synth):
    t, _ = synth.gemm_seconds(32, 4096, 4096)
    lo, hi = _gemm_t(16, 4096, 4096), _gemm_t(64, 4096, 4096)
    assert t == pytest.approx(math.sqrt(lo * hi))  # log-log midpoint


def test_gemm_outside_m_range_is_none(synth):
    assert synth.gemm_seconds(8192, 4096, 4096) is None


def test_gemm_unmeasured_shape_scales_by_flops(synth):
    t, src = synth.gemm_seconds(64, 4096, 2048)
    assert t == pytest.approx(_gemm_t(64, 4096, 4096) / 2)
    assert "scaled by FLOPs" in src
    assert synth.gemm_seconds(64, 128, 128) is None  # nothing within 8x in N*K
    assert synth.gemm_seconds(64, 4096, 4096, "fp8") is None  # no fp8 table


def test_grouped_gemm_groups_interp_and_scaling(synth):
    assert synth.grouped_gemm_seconds(8, 8, 512, 256)[0] == pytest.approx(64e-6)
    t16, _ = synth.grouped_gemm_seconds(16, 8, 512, 256)  # log-interp between 8 and 32 groups
    assert t16 == pytest.approx(128e-6)
    t64, src = synth.grouped_gemm_seconds(64, 8, 512, 256)
    assert t64 == pytest.approx(512e-6) and "scaled linearly" in src
    assert synth.grouped_gemm_seconds(8, 128, 512, 256) is None


def test_attention_surfaces(synth):
    t, _ = synth.attn_prefill_seconds(1, 512, 32, 8)
    assert t == pytest.approx(512**2 * 1e-9)
    t, src = synth.attn_prefill_seconds(16, 512, 32, 8)  # outside hull: linear in batch from 4
    assert t == pytest.approx(16 * 512**2 * 1e-9) and "batch 4" in src
    t, src = synth.attn_prefill_seconds(1, 512, 64, 16)  # as batch 2 of the 32q/8kv config
    assert t == pytest.approx(2 * 512**2 * 1e-9) and "as batch 2 of 32q/8kv" in src
    assert synth.attn_prefill_seconds(1, 8192, 32, 8) is None
    assert synth.attn_prefill_seconds(1, 512, 32, 8, 192, 128) is None  # no such head dims
    t, _ = synth.attn_decode_seconds(8, 2048, 32, 8)
    assert t == pytest.approx(8 * 2048 * 1e-8, rel=1e-6)
    t, src = synth.attn_decode_seconds(8, 1024, 64, 16)
    assert t == pytest.approx(2 * 8 * 1024 * 1e-8) and "as batch 16 of 32q/8kv" in src


def test_kv_tile_fit_and_rounding(tmp_path):
    """A kernel walking keys in 128-key tiles: the fit finds 128 and decode lookups round up."""
    import math

    from calibration.profile import MeasuredProfile, fit_kv_tile

    rows = []
    for b in (1, 64):
        for base in (1024, 4096):
            for off in (0, 1, 32, 64, 127, 128, 129, 192, 256):
                c = base + off
                rows.append(dict(batch=b, context=c, heads_q=32, heads_kv=8, head_dim_qk=128, head_dim_v=128,
                                 seconds=1e-6 * b * (5 + math.ceil(c / 128))))
    tiles = pd.DataFrame(rows)
    assert fit_kv_tile(tiles) == 128
    linear = tiles.assign(seconds=1e-6 * tiles.batch * (5 + tiles.context / 128))
    assert fit_kv_tile(linear) == 1
    assert fit_kv_tile(None) == 1
    dec = pd.DataFrame([dict(batch=b, context=c, heads_q=32, heads_kv=8, head_dim_qk=128, head_dim_v=128,
                             seconds=1e-8 * b * c) for b in (1, 8) for c in (1024, 2048, 4096)])
    dec.to_csv(tmp_path / "attn_decode_bf16.csv", index=False)
    tiles.to_csv(tmp_path / "attn_decode_tiles.csv", index=False)
    p = MeasuredProfile(tmp_path)
    t, src = p.attn_decode_seconds(8, 1025, 32, 8)
    assert "rounded up to the 128-key tile" in src
    assert t == pytest.approx(p.attn_decode_seconds(8, 1152, 32, 8)[0])


def test_mla_takes_best_impl_and_interpolates_heads(synth):
    assert synth.mla_decode_seconds(8, 1024, 128)[0] == pytest.approx(8 * 1024 * 128 * 1e-9)
    t, src = synth.mla_decode_seconds(8, 1024, 64)
    assert t == pytest.approx(8 * 1024 * 64 * 1e-9) and "interpolated in heads" in src
    t, src = synth.mla_decode_seconds(8, 1024, 8)
    assert t == pytest.approx(8 * 1024 * 16 * 1e-9) and "clamped" in src


def test_elementwise_and_collectives(synth):
    assert synth.elementwise_seconds(2**20)[0] == pytest.approx(2**20 / BW)
    assert synth.elementwise_seconds(2**30)[0] == pytest.approx(2**30 / BW)  # linear beyond
    assert synth.elementwise_seconds(10)[0] == pytest.approx(2**12 / BW)  # floor
    assert synth.elementwise_seconds(100, "nosuchop") is None
    t, src = synth.collective_seconds("all_reduce", 8, 2**20, fabric="nvlink")
    assert t == pytest.approx(1e-5 + 2**20 / 1e11) and "collective_all_reduce" in src and "nvlink" in src
    assert synth.collective_seconds("all_reduce", 8, 2**31, fabric="nvlink")[0] == pytest.approx(
        (1e-5 + 2**30 / 1e11) * 2)  # linear beyond the largest size
    assert synth.collective_seconds("all_reduce", 8, 16, fabric="nvlink")[0] == pytest.approx(1e-5 + 4096 / 1e11)
    assert synth.collective_seconds("all_reduce", 4, 2**20, fabric="nvlink") is None  # group not measured
    assert synth.collective_seconds("all_reduce", 8, 2**20, fabric="ib") is None  # fabric not measured
    assert synth.collective_seconds("all_reduce", 8, 2**20) is None  # no fabric given: never guessed
    # measured on an unknown GPU: it speaks for no catalog device's fabric
    assert synth.collective_seconds("all_reduce", 8, 2**20, fabric="nvlink", device="h200-sxm") is None


def test_efficiency_fit_and_transfer(synth):
    fit = synth.efficiency_fit()
    assert fit.hbm_fraction == pytest.approx(0.9)
    assert "gemm" in fit.kinds
    # synthetic gemm times are exactly the roofline -> fraction 1 wherever the fit has bins
    assert all(v == pytest.approx(1.0) for v in fit.kinds["gemm"].fraction)
    t, src = fit.seconds("gemm", 2 * 4096**3, 3 * 2 * 4096**2, peak_flops_per_s=2e15, hbm_bytes_per_s=2e12)
    assert t == pytest.approx(2 * 4096**3 / 2e15)
    over = fit.with_override("mla_decode", hbm_fraction=0.9, compute_fraction=0.6, source="published")
    t, src = over.seconds("mla_decode", 1.0, 1e9, 1e15, 1e12)
    assert t == pytest.approx(1e9 / 1e12 / 0.9) and "published" in src


def test_unknown_profile_lists_names():
    with pytest.raises(UnknownProfileError, match="h200"):
        load_profile("no-such-profile")


def test_shipped_h200_profile():
    p = load_profile("h200")
    for field in ("gpu_name", "driver", "cuda", "torch", "nccl", "date_utc", "git_sha", "hostname", "command"):
        assert field in p.metadata
    assert "H200" in p.metadata["gpu_name"]
    assert default_profile_for("NVIDIA H200").name == "h200"
    assert default_profile_for("h20") is None and default_profile_for("H800") is None
    # ceilings in the expected range for an H200 SXM (datasheet 989 TFLOP/s bf16, 4.8 TB/s)
    assert 600e12 < p.peak_flops_achieved("bf16") < 989.4e12
    assert 3.5e12 < p.hbm_bytes_per_s() < 4.8e12
    t, _ = p.gemm_seconds(4096, 4096, 4096)
    assert 2 * 4096**3 / t > 500e12
    for r in (p.grouped_gemm_seconds(64, 128, 4096, 7168), p.attn_prefill_seconds(1, 4096, 32, 8),
              p.attn_decode_seconds(64, 4096, 32, 8), p.mla_decode_seconds(64, 4096)):
        assert r is not None and r[0] > 0 and np.isfinite(r[0])
    fit = p.efficiency_fit()
    assert 0.5 < fit.compute_fraction["bf16"] <= 1.0 and 0.7 < fit.hbm_fraction <= 1.0
