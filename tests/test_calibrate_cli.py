"""The calibration loop through the CLI: `clustersim calibrate` (CPU, quick grids) writes a profile,
errors exit non-zero with one line, and `--profile DIR` then drives estimate and simulate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clustersim.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "llama-3.1-70b_h200_tp4_colocated.yaml"
runner = CliRunner()
STEP = ["estimate", "step", "--model", "llama-3.1-8b", "--hardware", "h200", "--phase", "decode", "--batch", "8",
        "--context", "1024", "--json"]


def _cli(*args: str, cwd: Path | None = None, pre: str = "") -> subprocess.CompletedProcess:
    """``clustersim ARGS`` in a fresh interpreter (``pre``: Python run first, e.g. to hide torch)."""
    code = f"{pre}\nimport sys\nsys.argv = ['clustersim', *{list(args)!r}]\nfrom clustersim.cli import main\nmain()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def quick_profile(tmp_path_factory) -> Path:
    """`clustersim calibrate --out d --device cpu --quick`, run as a user would (default suites)."""
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("calib") / "d"
    r = _cli("calibrate", "--out", str(d), "--device", "cpu", "--quick")
    assert r.returncode == 0, r.stderr
    assert "tables written:" in r.stdout and "skipped: collectives:" in r.stdout
    return d


def test_calibrate_quick_cpu_writes_a_profile(quick_profile):
    meta = json.loads((quick_profile / "metadata.json").read_text())
    assert meta["suites"][0] == "gemm" and "collectives" in meta["skipped"]
    assert meta["complete"] is False  # the distributed suites did not run on CPU
    for table in ("gemm_bf16", "attn_decode_bf16", "mla_decode_bf16", "elementwise_bf16"):
        assert len((quick_profile / f"{table}.csv").read_text().splitlines()) > 1, table


def test_calibrate_measures_its_own_in_step_gap(quick_profile):
    """The default suites include in_step_gap; the profile states its table's median (bounded)."""
    import csv

    from calibration.bench.in_step_gap import gap_from_rows
    from calibration.profile import load_profile
    from simulator.costmodel import MAX_IN_STEP_GAP_S, profile_in_step_gap_s

    with open(quick_profile / "in_step_gap.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # (chain - alone) / ops from the CSV's rounded times: within their rounding of the chain's time
    assert rows and all(abs(float(r["gap_s"]) * int(r["ops"]) - (float(r["chain_s"]) - float(r["ops_alone_s"])))
                        <= 1e-5 * float(r["chain_s"]) for r in rows)
    prof = load_profile(quick_profile)
    gap = gap_from_rows(rows)
    assert prof.stated_in_step_gap_s == gap
    assert profile_in_step_gap_s(prof) == (gap if 0.0 <= gap <= MAX_IN_STEP_GAP_S else 0.0)


def test_calibrate_rerun_resumes(quick_profile):
    rows = {p.name: p.read_text() for p in quick_profile.glob("*.csv")}
    r = runner.invoke(app, ["calibrate", "--out", str(quick_profile), "--device", "cpu", "--quick", "--quiet",
                            "--suite", "gemm,attn_decode"])
    assert r.exit_code == 0, r.output
    assert "(0 new)" in r.output and {p.name: p.read_text() for p in quick_profile.glob("*.csv")} == rows


def test_estimate_step_uses_the_measured_profile(quick_profile):
    base = json.loads(runner.invoke(app, STEP).output)
    r = runner.invoke(app, STEP + ["--profile", str(quick_profile)])
    assert r.exit_code == 0, r.output
    est = json.loads(r.output)
    assert est["seconds"] != pytest.approx(base["seconds"], rel=1e-3)
    p = est["profile"]
    assert p["name"] == "d" and p["path"] == str(quick_profile.resolve()) and p["gpu"].startswith("cpu")
    assert p["date_utc"] and "not measured on a catalog GPU" in p["transfer"]
    assert "gemm_fp8" in p["fallback"]["tables"] and p["fallback"]["profile"] == "h200"
    sources = [o["source"] for o in est["ops"]]
    assert sum("profile d" in s for s in sources) >= len(sources) // 2
    assert base["profile"]["name"] == "h200" and base["profile"]["transfer"] is None


def test_simulate_names_the_profile(quick_profile, tmp_path):
    r = runner.invoke(app, ["simulate", str(EXAMPLE), "--set", "workload.num_requests=20", "--profile",
                            str(quick_profile), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert re.search(r"profile\.name\s*│\s*d\s*│", r.output) and "profile.fallback.tables" in r.output
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["profile"]["name"] == "d" and s["config"]["profile"] == str(quick_profile.resolve())
    assert s["summary"]["counts"]["finished"] == 20


def test_unknown_suite_exits_2_with_one_line(tmp_path):
    r = _cli("calibrate", "--out", str(tmp_path / "x"), "--suite", "gemm,nope", "--device", "cpu")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "unknown suite(s) nope" in r.stderr and "valid: all" in r.stderr


def test_missing_gpu_exits_2_with_one_line(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    r = _cli("calibrate", "--out", str(tmp_path / "x"))  # --device cuda is the default
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no CUDA device" in r.stderr
    assert not (tmp_path / "x").exists()


def test_missing_torch_exits_2_with_one_line(tmp_path):
    r = _cli("calibrate", "--out", str(tmp_path / "x"), "--device", "cpu", pre="import sys; sys.modules['torch'] = None")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "needs torch" in r.stderr


def test_suite_failure_exits_1_and_keeps_the_others(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from calibration import run
    from calibration.bench import elementwise

    def boom(ctx):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(elementwise, "run", boom)
    code = run.main(["--out", str(tmp_path), "--quick", "--device", "cpu", "--quiet", "--suite", "elementwise,attn_decode"])
    assert code == 1 and (tmp_path / "attn_decode_bf16.csv").exists()
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert "kernel exploded" in meta["skipped"]["elementwise"] and meta["complete"] is False


def test_calibrate_fp8_grouped_suite_is_skipped_cleanly_without_sm90(tmp_path):
    """``clustersim calibrate --suite grouped_mm_fp8`` on a CPU (or a GPU without sm90): exit 0, a
    note naming why, and no table (the shipped H200 table was measured with this suite)."""
    pytest.importorskip("torch")
    r = _cli("calibrate", "--out", str(tmp_path / "p"), "--suite", "grouped_mm_fp8", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "torch._scaled_grouped_mm unavailable here" in r.stdout + r.stderr
    assert not (tmp_path / "p" / "grouped_mm_fp8.csv").exists()
    meta = json.loads((tmp_path / "p" / "metadata.json").read_text())
    assert meta["suites"] == ["grouped_mm_fp8"]
