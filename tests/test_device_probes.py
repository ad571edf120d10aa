"""The device probes of session 8 on a machine without a GPU: each exits 2 with one line, and the
point sets they measure are the documented ones (the GPU runs are in benchmarks/device_runs/)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return mod


@pytest.mark.parametrize("probe,args", [
    ("grouped_fp8_tiles_probe", ["--out", "x.csv"]),
    ("gemm_oos_probe", ["--out", "x.csv"]),
    ("gemm_grid_extend", ["--out", "o", "--profile", "calibration/profiles/h200"]),
])
def test_probe_without_gpu_exits_2(probe, args, tmp_path):
    import torch

    if torch.cuda.is_available():  # pragma: no cover - CI has no GPU
        pytest.skip("a GPU is visible")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{probe}.py"), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 2 and done.stderr.strip() == "no GPU"


def test_tile_probe_straddles_every_boundary_of_the_rule():
    """Each boundary of ``calibration.grouped_tiles`` has a measured point on both sides: one of
    the probe's own, the other the probe's or the shipped table's grid."""
    from calibration.bench.grouped_gemm import M_GRID

    probe = _load("grouped_fp8_tiles_probe")
    seen = set(probe.EQUAL_M) | set(M_GRID)
    for below, above in ((128, 129), (256, 257), (512, 513), (1024, 1025), (2047, 2048)):
        assert (below in probe.EQUAL_M or above in probe.EQUAL_M) and below in seen and above in seen
    assert not set(probe.EQUAL_M) & set(M_GRID)  # out of sample: none is a table row


def test_flashmla_between_points_are_off_the_table():
    probe = _load("flashmla_probe")
    table = {(h, b, c) for h, s_q, b, c in probe.points() if s_q == 1}
    pts = probe.between_points()
    assert len(pts) == 72
    assert all((h, b, c) not in table for h, _, b, c, spread in pts if spread == 0)
    assert {spread for *_, spread in pts} == {0.0, probe.SPREAD}


def test_gemm_grid_holds_the_multiples_of_64_between_its_steps():
    from calibration.bench.gemm import M_GRID

    assert {320, 448, 640, 896, 1280, 1792} <= set(M_GRID) and list(M_GRID) == sorted(M_GRID)
