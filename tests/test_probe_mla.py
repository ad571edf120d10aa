"""benchmarks/mla_kernel_probe.py (a device probe for issue 14's remaining gaps) runs on CPU on tiny shapes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import mla_kernel_probe


def test_probe_writes_kernels_predictions_and_layouts(tmp_path):
    assert mla_kernel_probe.main(["--out", str(tmp_path), "--device", "cpu", "--quick"]) == 0
    doc = json.loads((tmp_path / "summary.json").read_text())
    tags = {s["tag"] for s in doc["steps"]}
    assert {"mla-prefill-b1-s16", "moe-tiny-moe-ep4-t2"} <= tags
    for s in doc["steps"]:
        assert s["kernels"] > 0 and s["predicted_s"] > 0 and s["predicted_ops"]
        assert (tmp_path / f"{s['tag']}.csv").read_text().startswith("idx,kernel,us")
    lay = doc["prefill_layouts"][0]
    assert lay["contiguous_us"] > 0 and lay["model_views_us"] > 0 and "model_v_only_backend" in lay
