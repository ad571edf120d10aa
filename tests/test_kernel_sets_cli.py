"""Every estimate names the kernel set it assumed, through the CLI with its default options."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from clustersim.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


STEP = ["estimate", "step", "--model", "deepseek-v2-lite", "--hardware", "h200", "--phase", "decode", "--batch", "4",
        "--context", "8192"]


def _attn_source(data) -> str:
    return next(o["source"] for o in data["ops"] if o["name"] == "moe.attn")


def test_estimate_step_defaults_to_eager_and_says_so():
    d = json.loads(run(*STEP, "--json").output)
    ks = d["kernel_set"]
    assert d["kernels"] == "eager" and ks["name"] == "eager"
    assert ks["mla_decode"] == "sdpa" and ks["attn_decode"] == "sdpa" and ks["grouped_gemm"] == "grouped_mm"
    assert "mla_decode_impls_bf16 (impl sdpa" in _attn_source(d)
    fused = json.loads(run(*STEP, "--kernels", "fused", "--json").output)
    assert fused["kernel_set"]["mla_decode"] == "flashmla" and "mla_decode_flashmla_bf16" in _attn_source(fused)
    assert fused["seconds"] < d["seconds"] / 2  # SDPA walks 8K keys per sequence in one block


def test_estimate_text_output_names_the_implementations():
    r = run(*STEP)
    assert r.exit_code == 0, r.output
    assert "kernel_set.mla_decode" in r.output and "sdpa" in r.output


def test_estimate_serving_defaults_to_fused():
    args = ["estimate", "serving", "--model", "llama-3.1-8b", "--hardware", "h200", "--phase", "decode",
            "--batch-per-device", "1", "--context", "32768", "--json"]
    fused = json.loads(run(*args).output)
    eager = json.loads(run(*args, "--kernels", "eager").output)
    assert fused["kernel_set"]["name"] == "fused" and fused["kernel_set"]["attn_decode"] == "split_kv"
    src = {o["name"]: o["source"] for o in fused["ops"]}
    assert "split-KV x" in src["dense.attn"]
    assert eager["kernel_set"]["name"] == "eager" and "serial walk" in {o["name"]: o["source"] for o in eager["ops"]}[
        "dense.attn"]
    assert fused["tpot_s"] < eager["tpot_s"]


def test_estimate_moe_layer_at_one_token_costs_the_touched_experts():
    d = json.loads(run("estimate", "moe-layer", "--model", "deepseek-v3", "--hardware", "h200", "--ep", "1",
                       "--tokens-per-rank", "1", "--json").output)
    gu = next(o for o in d["ops"] if o["name"] == "moe.experts_gate_up")
    assert "grouped_mm_sparse_bf16 (8 active groups" in gu["source"] and gu["seconds_each"] < 3e-4
    assert d["kernel_set"]["name"] == "eager"


def test_unknown_kernel_set_is_one_line_exit_2():
    for cmd in (STEP, ["estimate", "serving", "--model", "llama-3.1-8b", "--hardware", "h200", "--phase", "decode",
                       "--batch-per-device", "1", "--context", "128"]):
        r = run(*cmd, "--kernels", "triton")
        assert r.exit_code == 2 and r.output.strip().count("\n") == 0
        assert "kernels 'triton' unknown (valid: fused, eager)" in r.output
