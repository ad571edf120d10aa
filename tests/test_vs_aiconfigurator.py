"""benchmarks/vs_aiconfigurator.sh and its helpers, without aiconfigurator (nothing installed, nothing timed).

The shell script's --help / --dry-run / bad option, the parser of aiconfigurator's stdout on a
captured sample (tests/data/aiconfigurator/), the parallel-string parser and the layouts built
from an answer. The comparison itself (minutes, aiconfigurator in its own venv) is a benchmark.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "vs_aiconfigurator.sh"
SAMPLE = ROOT / "tests" / "data" / "aiconfigurator" / "cli_default_dsv3_h200x32.txt"
sys.path.insert(0, str(ROOT / "benchmarks"))

bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _sh(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], check=False, capture_output=True, text=True, timeout=60, env=env)


@bash
def test_help_names_every_option():
    r = _sh("--help")
    assert r.returncode == 0, r.stderr
    for opt in ("--venv", "--aic-version", "--runs", "--ladder", "--steps", "--no-layouts", "--out", "--json", "--dry-run"):
        assert opt in r.stdout


@bash
def test_dry_run_installs_and_runs_nothing(tmp_path):
    venv = tmp_path / "cache" / "aic"
    r = _sh("--dry-run", "--venv", str(venv), "--runs", "3", "--ladder")
    assert r.returncode == 0, r.stderr
    assert f"install: python3 -m venv {venv} && {venv}/bin/pip install aiconfigurator==0.12.0" in r.stdout
    assert f"benchmarks/vs_aiconfigurator.py --aic {venv}/bin/aiconfigurator --runs 3 --ladder" in r.stdout
    assert not venv.exists() and not (tmp_path / "cache").exists()


@bash
def test_unknown_option_is_one_line_exit_2():
    r = _sh("--bogus")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown option --bogus" in r.stderr and "--venv" in r.stderr


def test_parse_aic_tables_on_captured_output():
    import vs_aiconfigurator as V

    a = V.parse_aic_tables(SAMPLE.read_text())
    agg, dis = a["agg"], a["disagg"]
    assert (agg["tokens_per_s_per_gpu"], agg["parallel"], agg["replicas"], agg["bs"]) == (247.71, "tp1pp1dp16etp1ep16", 2, 11)
    assert (dis["p_parallel"], dis["p_workers"], dis["d_parallel"], dis["d_workers"], dis["d_bs"]) == (
        "tp1pp1dp16etp1ep16", 1, "tp1pp1dp8etp2ep4", 2, 26)
    assert dis["tpot_ms"] == pytest.approx(1000 / 25.39) and dis["ttft_ms"] == 1635.92 and dis["gpus"] == 32
    assert len(a["top_agg"]) == 5 and a["top_agg"][3]["parallel"] == "tp8pp1dp1etp1ep8"
    assert a["best"] is agg  # 247.71 > 247.57
    with pytest.raises(ValueError, match="Top Configurations"):
        V.parse_aic_tables("no tables here")


def test_parse_parallel_and_layouts():
    import aic_layouts as A

    assert A.parse_parallel("tp1pp1dp8etp2ep4") == {"tp": 1, "pp": 1, "dp": 8, "etp": 2, "ep": 4}
    for bad in ("tp1dp8ep8", "tp1pp1dp8etp1ep4"):  # malformed; 8 attention GPUs vs 4 MoE GPUs
        with pytest.raises(ValueError):
            A.parse_parallel(bad)
    dis = {"mode": "disagg", "p_parallel": "tp1pp1dp16etp1ep16", "p_workers": 1,
           "d_parallel": "tp1pp1dp8etp2ep4", "d_workers": 2}
    lay = A.aic_layout(dis, {"decode": {"mtp_depth": 1}})
    (p, n_p), (d, n_d) = lay.pools
    assert (lay.mode, lay.devices, n_p, n_d) == ("disaggregated", 32, 1, 2)
    assert (p.layout.dp, p.layout.ep, p.mtp_depth, p.max_tokens_per_iteration) == (16, 16, 0, 16 * A.TOKENS_PER_RANK)
    assert (d.layout.dp, d.layout.ep, d.layout.moe_tp, d.mtp_depth, d.layout.micro_batches) == (8, 4, 2, 1, 1)
    agg = A.aic_layout({"mode": "agg", "parallel": "tp8pp1dp1etp1ep8", "replicas": 4})
    assert (agg.mode, agg.devices, agg.pools[0][0].layout.tp) == ("colocated", 32, 8)
    two = A.aic_layout(dis, {"decode": {"micro_batches": 2}})
    assert two.pools[1][0].layout.micro_batches == 2 and two.pools[0][0].layout.micro_batches == 1
    assert A.applies({"pool"}, (), {"pool": {"tokens_per_rank": 512}})
    assert not A.applies({"prefill", "decode"}, (), {"pool": {"tokens_per_rank": 512}})
