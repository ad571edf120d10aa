"""FlashMLA's tile scheduler replayed (``calibration.flashmla_sched``) and the time unequal lengths add.

The probe (calibration/profiles/h200/mla_decode_flashmla_spread.csv, benchmarks/flashmla_spread_probe.py,
2026-12-02) timed equal and unequal batches of the same mean; the fit charges ~0.38 us per extra split
request at 128 heads and ~0.11 us at 16. Hold-out: the 12 spread rows of flashmla_between_h200.csv
(another call, not in the fit) in tests/test_kernel_tables_out_of_sample.py.
"""

from __future__ import annotations

import pytest

from calibration.flashmla_sched import (extra_splits, fit_per_split_s, per_split_at, probe_variants, sm_parts,
                                        split_requests, spread_lengths)


def test_scheduler_packs_equal_batches_and_splits_unequal_ones():
    assert sm_parts(128) == 66 and sm_parts(16) == 132 and sm_parts(128, q_per_seq=2) == 33
    assert split_requests((1024,) * 128, 128) == 0  # 21 blocks a request, 46 a part: two whole requests
    assert split_requests((1024,) * 32, 128) == 32  # 16 a part: every request cut
    assert split_requests(spread_lengths(128, 1024), 128) == 50
    assert split_requests((7,), 128) == 0 and split_requests((), 128) == 0


def test_extra_splits():
    assert extra_splits(128, 1024, 128) == 50 and extra_splits(32, 1024, 128) == 0
    assert extra_splits(1, 4096, 128) == 0
    for b in (2, 3, 17, 64, 200, 512):
        for c in (100, 1000, 5000):
            assert extra_splits(b, c, 128) >= 0


def test_spread_lengths_keep_the_mean():
    for b, c in ((2, 1000), (128, 1024), (77, 3000)):
        lens = spread_lengths(b, c)
        assert len(lens) == b and abs(sum(lens) / b - c) <= 1 and min(lens) >= c // 4 and max(lens) <= c * 7 // 4 + 1


def test_fit_from_the_shipped_probe():
    from calibration.profile import load_profile

    fit = load_profile("h200")._flashmla_per_split
    assert set(fit) == {16, 128}
    assert 0.3e-6 < fit[128] < 0.5e-6 and 0.05e-6 < fit[16] < 0.2e-6
    assert per_split_at(fit, 8) == fit[16] and per_split_at(fit, 256) == fit[128]
    assert per_split_at(fit, 72) == pytest.approx((fit[16] + fit[128]) / 2)


def test_fit_is_exact_on_a_synthetic_probe():
    rows = []
    for b, c in ((128, 1024), (64, 1024)):
        for v, lens in probe_variants(b, c).items():
            extra = split_requests(tuple(lens), 128) - split_requests((c,) * b, 128)
            rows.append({"heads_q": 128, "batch": b, "mean": c, "variant": v, "seconds": (50.0 + 0.5 * extra) * 1e-6})
    assert fit_per_split_s(rows)[128] == pytest.approx(0.5e-6)


def _serving(lengths: str, model: str = "deepseek-v3", extra: tuple = ()) -> dict:
    import json

    from typer.testing import CliRunner

    from clustersim.cli import app

    args = ["estimate", "serving", "--model", model, "--hardware", "h800-mpft", "--phase", "decode",
            "--batch-per-device", "128", "--context", "4096", "--json", *extra]
    if lengths:
        args += ["--lengths", lengths]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_estimate_lengths_equal_drops_the_unequal_charge_through_the_cli():
    """``--lengths equal`` (a benchmark batch): FlashMLA's attention is the table's equal batch, no split
    charge; the default (mixed, a serving batch at mean --context) keeps it; a GQA model does not care."""
    ep = ("--ep", "128", "--dtype", "fp8", "--micro-batches", "2")
    mixed, default, equal = _serving("mixed", extra=ep), _serving("", extra=ep), _serving("equal", extra=ep)
    assert default == mixed and mixed["lengths"] == "mixed" and equal["lengths"] == "equal"
    assert equal["output_tokens_per_s_per_device"] > 1.02 * mixed["output_tokens_per_s_per_device"]
    attn = [o["source"] for o in equal["ops"] if "attn" in o["name"] and "flashmla" in o["source"]]
    assert attn and not any("split across SM parts" in s for s in attn)
    assert any("split across SM parts" in o["source"] for o in mixed["ops"])
    gqa = ("--ep", "8", "--tp", "8")
    assert (_serving("equal", "llama-3.1-70b", gqa)["step_s"] == _serving("mixed", "llama-3.1-70b", gqa)["step_s"])


def test_estimate_lengths_rejects_other_values():
    from typer.testing import CliRunner

    from clustersim.cli import app

    r = CliRunner().invoke(app, ["estimate", "serving", "--model", "deepseek-v3", "--hardware", "h800-mpft",
                                 "--phase", "decode", "--ep", "128", "--batch-per-device", "8", "--context", "64",
                                 "--lengths", "uniform"])
    assert r.exit_code == 2 and "--lengths 'uniform' (valid: mixed, equal)" in r.output
