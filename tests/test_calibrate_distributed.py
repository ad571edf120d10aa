"""The distributed suites (collectives, MoE dispatch/combine) on CPU: gloo in two processes, tiny
sizes, through the runner and under torchrun; then the cost model reads their tables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clustersim.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def dist_profile(tmp_path_factory) -> Path:
    """Both distributed suites, spawned as two gloo ranks, tables labelled as a node's NVLink run."""
    pytest.importorskip("torch")
    from calibration import run

    d = tmp_path_factory.mktemp("dist") / "d"
    old = os.environ.get("CLUSTERSIM_FABRIC")
    os.environ["CLUSTERSIM_FABRIC"] = "nvlink"  # what nvidia-smi topo -m gives on an NVLink node
    try:
        assert run.main(["--out", str(d), "--quick", "--device", "cpu", "--quiet",
                         "--suite", "collectives,moe_dispatch"]) == 0
    finally:
        os.environ.pop("CLUSTERSIM_FABRIC") if old is None else os.environ.update(CLUSTERSIM_FABRIC=old)
    return d


def test_collective_tables(dist_profile):
    from calibration.bench import collectives as c

    for op in c.OPS:
        df = pd.read_csv(dist_profile / f"collective_{op}.csv")
        assert list(df.columns) == c.COLUMNS, op
        assert set(df.bytes_per_rank) == set(c.QUICK_SIZES) and (df.group == 2).all() and (df.seconds > 0).all()
        assert (df.fabric == "nvlink").all() and (df.backend == "gloo").all() and (df.method == "perf_counter").all()
        assert df.busbw.iloc[0] == pytest.approx(df.algbw.iloc[0] * c.bus_factor(op, 2), rel=1e-4)  # 6 digits in CSV
    assert c.bus_factor("all_reduce", 8) == pytest.approx(1.75) and c.bus_factor("all_gather", 8) == 0.875
    assert c.group_sizes(8) == [2, 4, 8] and c.group_sizes(6) == [2, 4, 6]


def test_dispatch_table(dist_profile):
    from calibration.bench import moe_dispatch as m
    from hardware.dispatch import token_bytes

    df = pd.read_csv(dist_profile / "moe_dispatch.csv")
    assert list(df.columns) == m.COLUMNS
    assert len(df) == len(m.SHAPES) * len(m.PAYLOADS) * len(m.QUICK_TOKENS)
    for _, r in df.iterrows():
        assert r.bytes_per_rank == r.tokens_per_rank * r.top_k * token_bytes(r.hidden, r["dtype"])
        assert r.seconds > 0 and r.recv_bytes_max > 0 and r.ep == 2
    fp8 = df[(df.model == "deepseek-v3") & (df.dtype == "fp8")]
    assert set(fp8.bytes_per_rank) == {1 * 8 * 7392, 16 * 8 * 7392}  # 7168 B + 56 fp32 scales per copy


def test_uniform_topk_splits_are_seeded_and_conserve_copies():
    from calibration.bench.moe_dispatch import SHAPES, copies_to_ranks

    a = copies_to_ranks(512, SHAPES[0], 8, (1, 8, 512, 0))
    assert (a == copies_to_ranks(512, SHAPES[0], 8, (1, 8, 512, 0))).all()
    assert a.sum() == 512 * 8 and len(a) == 8 and a.min() > 0 and a.max() > a.min()  # uneven splits


def test_rerun_measures_nothing_new(dist_profile, tmp_path):
    from calibration import run

    before = {p.name: p.read_text() for p in dist_profile.glob("*.csv")}
    os.environ["CLUSTERSIM_FABRIC"] = "nvlink"
    try:
        assert run.main(["--out", str(dist_profile), "--quick", "--device", "cpu", "--quiet",
                         "--suite", "moe_dispatch"]) == 0
    finally:
        del os.environ["CLUSTERSIM_FABRIC"]
    assert {p.name: p.read_text() for p in dist_profile.glob("*.csv")} == before


@pytest.fixture()
def h200_labelled(dist_profile, tmp_path) -> Path:
    """The gloo tables with the provenance a node run writes (GPU name), so they speak for H200 NVLink."""
    d = tmp_path / "node"
    shutil.copytree(dist_profile, d)
    meta = json.loads((d / "metadata.json").read_text())
    (d / "metadata.json").write_text(json.dumps({**meta, "gpu_name": "NVIDIA H200"}))
    return d


def _est(*args: str) -> dict:
    r = runner.invoke(app, ["estimate", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_cost_model_reads_the_collective_table(h200_labelled):
    table = pd.read_csv(h200_labelled / "collective_all_reduce.csv").set_index("bytes_per_rank")
    base = ["collective", "--hardware", "h200-node", "--op", "all_reduce", "--profile", str(h200_labelled)]
    hit = _est(*base, "--gpus", "2", "--bytes-per-rank", "65536")
    assert hit["seconds"] == pytest.approx(table.seconds[65536], rel=1e-6)
    assert hit["source"].startswith("profile:node:collective_all_reduce") and "nvlink, group 2" in hit["source"]
    mid = _est(*base, "--gpus", "2", "--bytes-per-rank", "16384")
    lo, hi = sorted((table.seconds[4096], table.seconds[65536]))
    assert lo <= mid["seconds"] <= hi and "interpolated" in mid["source"]
    assert _est(*base, "--gpus", "4", "--bytes-per-rank", "65536")["source"].startswith("model:")  # group 4 unmeasured
    other = ["collective", "--hardware", "h800-mpft", "--op", "all_reduce", "--gpus", "2", "--bytes-per-rank", "65536"]
    assert _est(*other, "--profile", str(h200_labelled))["source"].startswith("model:")  # another device's NVLink
    assert _est(*base[:-2], "--gpus", "2", "--bytes-per-rank", "65536")["source"].startswith("model:")  # shipped


def test_cost_model_reads_the_dispatch_table(h200_labelled):
    df = pd.read_csv(h200_labelled / "moe_dispatch.csv")
    row = lambda d, dt: df[(df.model == "deepseek-v3") & (df.direction == d) & (df.dtype == dt)  # noqa: E731
                           & (df.tokens_per_rank == 16)].seconds.item()
    est = _est("dispatch", "--hardware", "h200-node", "--ep", "2", "--tokens-per-rank", "16", "--model", "deepseek-v3",
               "--dispatch-dtype", "fp8", "--profile", str(h200_labelled))
    assert est["dispatch_s"] == pytest.approx(row("dispatch", "fp8"), rel=1e-6)
    assert est["combine_s"] == pytest.approx(row("combine", "bf16"), rel=1e-6)
    assert "moe_dispatch" in est["source"]
    layer = _est("moe-layer", "--model", "deepseek-v3", "--hardware", "h200-node", "--ep", "2", "--tokens-per-rank",
                 "16", "--profile", str(h200_labelled))
    srcs = {o["name"].split(".")[-1]: o for o in layer["ops"]}
    assert "profile:node:moe_dispatch" in srcs["dispatch"]["source"]
    assert srcs["dispatch"]["seconds_each"] == pytest.approx(row("dispatch", "bf16"), rel=1e-6)
    shipped = _est("dispatch", "--hardware", "h200-node", "--ep", "2", "--tokens-per-rank", "16")
    assert "moe_dispatch" not in shipped["source"]


def test_calibrate_under_torchrun_rank0_writes(tmp_path):
    pytest.importorskip("torch")
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    d = tmp_path / "tr"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["torchrun", "--nproc-per-node", "2", "-m", "clustersim.cli", "calibrate", "--out", str(d),
                        "--device", "cpu", "--quick", "--suite", "collectives,gemm"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("tables written:") == 1  # only rank 0 reports
    meta = json.loads((d / "metadata.json").read_text())
    assert meta["world_size"] == 2 and meta["complete"] is True
    df = pd.read_csv(d / "collective_all_reduce.csv")
    assert len(df) == 2 and (df.fabric == "gloo").all()  # one row per size: rank 1 wrote nothing
    assert len(pd.read_csv(d / "gemm_bf16.csv")) > 0
