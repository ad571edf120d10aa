"""CPU smoke tests of the microbenchmark runner and the ground-truth driver (tiny shapes)."""

import json
import subprocess
import sys

import pandas as pd
import pytest

SCHEMAS = {
    "gemm_bf16.csv": ["m", "n", "k", "m_run", "seconds", "tflops", "method"],
    "grouped_gemm_bf16.csv": ["groups", "m_per_group", "n", "k", "seconds", "tflops", "method"],
    "attn_prefill_bf16.csv": ["batch", "seq", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v", "causal",
                              "seconds", "tflops", "backend", "gqa_impl", "method"],
    "attn_decode_bf16.csv": ["batch", "context", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v",
                             "seconds", "kv_bytes", "gbps", "tflops", "backend", "gqa_impl", "method"],
    "mla_decode_bf16.csv": ["batch", "context", "heads_q", "head_dim_qk", "head_dim_v", "impl", "seconds",
                            "kv_bytes", "gbps", "tflops", "impl_detail", "method"],
    "elementwise_bf16.csv": ["op", "elements", "bytes", "seconds", "gbps", "method"],
    "hbm.csv": ["bytes", "seconds", "gbps", "method"],
    "rmsnorm_bf16.csv": ["rows", "width", "bytes", "seconds", "method"],
    "moe_topk.csv": ["tokens", "experts", "top_k", "seconds", "method"],
    "moe_scatter.csv": ["tokens_per_rank", "experts", "top_k", "ep", "hidden", "pairs", "rows", "bytes",
                        "seconds", "gbps", "method"],
    "attn_decode_tiles.csv": ["batch", "context", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v",
                              "seconds", "kv_bytes", "gbps", "tflops", "backend", "gqa_impl", "method"],
    "attn_prefill_qview_bf16.csv": ["batch", "seq", "heads_q", "heads_kv", "head_dim_qk", "head_dim_v", "causal",
                                    "seconds", "tflops", "backend", "gqa_impl", "method"],
}


def test_profile_module_imports_without_torch():
    code = "import sys, calibration, calibration.profile; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_csv_table_resume(tmp_path):
    from calibration.store import CsvTable

    t = CsvTable(tmp_path / "x.csv", ["a", "b", "seconds"], ["a", "b"])
    t.append(dict(a=1, b=2, seconds=0.5))
    again = CsvTable(tmp_path / "x.csv", ["a", "b", "seconds"], ["a", "b"])
    assert again.has(a=1, b=2) and not again.has(a=1, b=3)
    with pytest.raises(ValueError):
        CsvTable(tmp_path / "x.csv", ["a", "seconds"], ["a"])


def test_runner_quick_cpu_schema_metadata_and_resume(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from calibration import run

    monkeypatch.setenv("CLUSTERSIM_GIT_SHA", "0123456789abcdef0123456789abcdef01234567")
    suites = ("gemm,grouped_gemm,attn_prefill,attn_decode,mla_decode,elementwise,moe_routing,"
              "attn_decode_tiles,attn_prefill_qview")
    assert run.main(["--out", str(tmp_path), "--quick", "--device", "cpu", "--suite", suites]) == 0
    for name, cols in SCHEMAS.items():
        df = pd.read_csv(tmp_path / name)
        assert list(df.columns) == cols, name
        assert len(df) > 0 and (df["seconds"] > 0).all(), name
    meta = json.loads((tmp_path / "metadata.json").read_text())
    for field in ("gpu_name", "driver", "cuda", "torch", "nccl", "date_utc", "git_sha", "hostname", "command"):
        assert field in meta
    assert meta["git_sha"].startswith("0123456") and meta["complete"] is True
    sizes = {n: len(pd.read_csv(tmp_path / n)) for n in SCHEMAS}
    # resume: drop the last gemm row, rerun: only that row is measured again
    g = tmp_path / "gemm_bf16.csv"
    lines = g.read_text().splitlines(True)
    g.write_text("".join(lines[:-1]))
    assert run.main(["--out", str(tmp_path), "--quick", "--device", "cpu", "--suite", suites]) == 0
    assert {n: len(pd.read_csv(tmp_path / n)) for n in SCHEMAS} == sizes
    assert len(json.loads((tmp_path / "metadata.json").read_text())["runs"]) >= 1


def test_runner_time_budget_stops_cleanly(tmp_path):
    pytest.importorskip("torch")
    from calibration import run

    assert run.main(["--out", str(tmp_path), "--quick", "--device", "cpu", "--suite", "gemm",
                     "--max-seconds", "0"]) == 0
    assert not (tmp_path / "gemm_bf16.csv").exists()  # the suite never started
    assert json.loads((tmp_path / "metadata.json").read_text())["complete"] is False


def test_unknown_suite_is_an_error(tmp_path):
    from calibration import run

    assert run.main(["--out", str(tmp_path), "--suite", "nope"]) == 2


def test_groundtruth_quick_cpu(tmp_path):
    pytest.importorskip("torch")
    from calibration import groundtruth

    assert groundtruth.main(["--out", str(tmp_path), "--quick", "--device", "cpu"]) == 0
    pre = pd.read_csv(tmp_path / "gt_dense_prefill.csv")
    dec = pd.read_csv(tmp_path / "gt_dense_decode.csv")
    moe = pd.read_csv(tmp_path / "gt_moe_layer.csv")
    assert list(pre.columns) == groundtruth.PREFILL_COLUMNS and len(pre) == 2
    assert list(dec.columns) == groundtruth.DECODE_COLUMNS and len(dec) == 2
    assert list(moe.columns) == groundtruth.MOE_COLUMNS and len(moe) == 2
    meta = json.loads((tmp_path / "groundtruth_metadata.json").read_text())
    assert meta["excluded"] and "command" in meta


def test_uniform_routing_is_seeded_and_local():
    from calibration.groundtruth import DSV3_MOE_EP4, uniform_routing

    e1, t1 = uniform_routing(DSV3_MOE_EP4, 512, seed=7)
    e2, t2 = uniform_routing(DSV3_MOE_EP4, 512, seed=7)
    assert (e1 == e2).all() and (t1 == t2).all()
    assert e1.max() < 64 and (e1[:-1] <= e1[1:]).all()
    # expected pairs on one of 4 ranks: 4*512 tokens * 8 choices / 4
    assert abs(len(e1) - 4096) < 300


def test_measured_ground_truth_present():
    from pathlib import Path

    root = Path(__file__).parent / "data" / "measured"
    meta = json.loads((root / "groundtruth_metadata.json").read_text())
    assert "H200" in meta["gpu_name"]
    dec = pd.read_csv(root / "gt_dense_decode.csv")
    assert set(dec.model) == {"llama-3.1-8b", "llama-3.1-70b"} and (dec.cuda_graph == 1).all()
    moe = pd.read_csv(root / "gt_moe_layer.csv")
    assert sorted(moe.tokens_per_rank) == [128, 256, 512, 1024, 2048, 4096, 8192]
