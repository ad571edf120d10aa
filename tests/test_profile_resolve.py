"""One profile resolver (calibration.resolve): names, directories beside a YAML file, table-by-table
fallback of a partial profile to the shipped one, the transfer note, and every command's report."""

from __future__ import annotations

import json
import re
import shutil
from importlib import resources
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from calibration.profile import UnknownProfileError
from calibration.resolve import LayeredProfile, profile_info, resolve_profile
from clustersim.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
STEP = ["estimate", "step", "--model", "llama-3.1-8b", "--phase", "decode", "--batch", "8", "--context", "1024",
        "--json"]


@pytest.fixture()
def partial(tmp_path) -> Path:
    """An H200 profile holding only the bf16 GEMM table (as a `--suite gemm` run would): the same
    measurements as the shipped profile, so every answer must equal the shipped one's."""
    d = tmp_path / "cfg" / "partial"
    d.mkdir(parents=True)
    with resources.as_file(resources.files("calibration") / "profiles" / "h200") as src:
        for name in ("gemm_bf16.csv", "metadata.json"):
            shutil.copy(Path(src) / name, d / name)
    return d


def _json(args: list[str]) -> dict:
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_names_defaults_and_errors():
    assert resolve_profile("default", "h200-sxm").name == "h200"
    assert resolve_profile("default", "h800-sxm").name == "h200"  # the reference, transferred
    assert resolve_profile(None, "h200-sxm") is None and resolve_profile("none", "h200-sxm") is None
    with pytest.raises(UnknownProfileError, match=r"unknown profile 'nosuch'.*valid: default, none, h200"):
        resolve_profile("nosuch", "h200-sxm")
    info = profile_info(resolve_profile("default", "h800-sxm"), "h800-sxm")
    assert "measured on h200-sxm, target h800-sxm: point transfer" in info["transfer"]
    assert info["path"] is None and info["gpu"] == "NVIDIA H200"


def test_partial_profile_falls_back_table_by_table(partial):
    prof = resolve_profile(str(partial), "h200-sxm")
    assert isinstance(prof, LayeredProfile) and "gemm_bf16" not in prof.fallback_tables
    assert {"attn_decode_bf16", "gemm_fp8", "elementwise_bf16"} <= set(prof.fallback_tables)
    for hw in ("h200", "h800"):
        base = _json(STEP + ["--hardware", hw])
        est = _json(STEP + ["--hardware", hw, "--profile", str(partial)])
        assert est["seconds"] == pytest.approx(base["seconds"], rel=1e-12)  # same data, read table by table
        src = {o["name"]: o["source"] for o in est["ops"]}
        gemm = next(s for n, s in src.items() if n.endswith("qkv_proj"))
        attn = next(s for n, s in src.items() if n.endswith("attn"))
        assert "profile:partial:gemm_bf16" in gemm and "profile:h200:attn_decode" in attn  # _bf16 or _long_bf16
        if hw == "h800":
            assert gemm.startswith("transfer:h200-sxm->h800-sxm") and "target h800-sxm" in est["profile"]["transfer"]
        assert est["profile"]["name"] == "partial" and "attn_decode_bf16" in est["profile"]["fallback"]["tables"]


def test_every_estimate_names_its_profile(partial):
    cmds = [["estimate", "collective", "--hardware", "h200", "--op", "all_reduce", "--gpus", "8",
             "--bytes-per-rank", "1e6"],
            ["estimate", "dispatch", "--hardware", "h800-mpft", "--ep", "16", "--tokens-per-rank", "64"],
            ["estimate", "moe-layer", "--model", "deepseek-v3", "--hardware", "h200", "--ep", "8",
             "--tokens-per-rank", "128"],
            ["estimate", "attention", "--hardware", "h200", "--sp", "4", "--seq", "8192", "--heads", "32",
             "--head-dim", "128"],
            ["estimate", "serving", "--model", "llama-3.1-8b", "--hardware", "h200", "--phase", "decode",
             "--batch-per-device", "16", "--context", "2048"]]
    for cmd in cmds:
        assert _json(cmd + ["--json"])["profile"]["name"] == "h200", cmd
        got = _json(cmd + ["--profile", str(partial), "--json"])["profile"]
        assert got["name"] == "partial" and got["path"] == str(partial.resolve()) and got["date_utc"], cmd
        assert _json(cmd + ["--profile", "none", "--json"])["profile"]["name"] is None, cmd


def _deployment(tmp_path: Path, profile: str | None) -> Path:
    data = yaml.safe_load((ROOT / "examples" / "llama-3.1-70b_h200_tp4_colocated.yaml").read_text())
    data["workload"]["num_requests"] = 20
    if profile is not None:
        data["profile"] = profile
    path = tmp_path / "cfg" / "dep.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_deployment_yaml_profile_is_relative_to_the_file(partial, tmp_path):
    dep = _deployment(tmp_path, "partial")  # beside dep.yaml, not in the working directory
    s = _json(["simulate", str(dep), "--json"])
    assert s["profile"]["name"] == "partial" and s["profile"]["path"] == str(partial.resolve())
    assert s["config"]["profile"] == str(partial.resolve())
    default = _json(["simulate", str(_deployment(tmp_path, None)), "--json"])
    assert default["profile"]["name"] == "h200" and default["summary"] == s["summary"]  # same data
    roofline = _json(["simulate", str(dep), "--profile", "none", "--json"])
    assert roofline["profile"]["name"] is None and roofline["summary"] != s["summary"]


def test_unknown_profile_in_yaml_is_one_line(tmp_path):
    r = runner.invoke(app, ["simulate", str(_deployment(tmp_path, "nosuch"))])
    assert r.exit_code == 2
    line = r.output.strip()
    assert "\n" not in line and re.search(r"dep\.yaml: profile: unknown profile 'nosuch'", line)


def test_training_yaml_profile(partial, tmp_path):
    data = yaml.safe_load((ROOT / "examples" / "train_deepseek-v3_h800_2048.yaml").read_text())
    body = data["training"] if "training" in data else data
    body["profile"] = "partial"
    path = tmp_path / "cfg" / "train.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    s = _json(["simulate", str(path), "--json"])
    assert s["kind"] == "training" and s["profile"]["name"] == "partial"
    assert "target h800-sxm" in s["profile"]["transfer"]


def test_plan_threads_the_profile(partial, tmp_path):
    data = yaml.safe_load((ROOT / "examples" / "plan_deepseek-v3_h200x32.yaml").read_text())
    data["search"].update(modes=["colocated"], attention_tp=[8], mtp=[False])
    data["verify"].update(top=1, num_requests=50)  # only a verified layout is recommended
    data["profile"] = "partial"
    path = tmp_path / "cfg" / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    res = _json(["plan", str(path), "--workers", "1", "--json"])
    assert any(n.startswith("profile: partial (") for n in res["notes"])
    assert res["best"]["profile"] == str(partial.resolve())  # the best deployment re-simulates on it
    data["profile"] = "nosuch"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    r = runner.invoke(app, ["plan", str(path), "--workers", "1"])
    assert r.exit_code == 2 and re.search(r"plan\.yaml:\d+:\d+: profile: unknown profile 'nosuch'", r.output)
