"""Two micro-batches (dual micro-batch overlap) on batches too small to split (issue 11 item 1).

A batch that cannot be split (a decode batch with fewer sequences than micro-batches, a lone
one-token prefill) runs as one micro-batch with no overlap, as serving engines do; it used to
build a zero-token micro-batch and crash with a TypeError traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clustersim.cli import app
from hardware.catalog import get_cluster
from simulator.instance import InstanceCost, InstanceSpec
from workloads.layout import Layout
from workloads.models import get_model
from workloads.ops import BatchShape

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.mark.parametrize("example,override", [
    ("llama-3.1-70b_h200_tp4_colocated.yaml", "serving.pool.micro_batches=2"),
    ("deepseek-v3_h800_pd-disagg.yaml", "serving.decode.mtp_depth=0"),
])
def test_two_micro_batches_without_mtp_simulate_through_the_cli(example, override):
    r = runner.invoke(app, ["simulate", str(ROOT / "examples" / example), "--set", override,
                            "--set", "workload.num_requests=60", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)["summary"]
    assert summary["counts"]["finished"] == 60 and summary["counts"]["unfinished"] == 0
    assert summary["ttft_ms"]["p50"] > 0 and summary["tpot_ms"]["p50"] > 0


def _spec(model: str, micro_batches: int, mtp: bool) -> InstanceSpec:
    if model == "deepseek-v3":
        return InstanceSpec(model=get_model(model), cluster=get_cluster("h800-mpft"),
                            layout=Layout(dp=8, ep=8, micro_batches=micro_batches), weight_dtype="fp8",
                            mtp_depth=1 if mtp else 0)
    return InstanceSpec(model=get_model(model), cluster=get_cluster("h200-node"),
                        layout=Layout(tp=4, micro_batches=micro_batches), mtp_depth=1 if mtp else 0)


@pytest.mark.parametrize("model", ["deepseek-v3", "llama-3.1-70b"])
@pytest.mark.parametrize("mtp", [False, True])
@pytest.mark.parametrize("micro_batches", [1, 2])
@pytest.mark.parametrize("seqs", [1, 2, 3, 4])
def test_decode_step_any_batch_and_micro_batches(model, mtp, micro_batches, seqs):
    spec = _spec(model, micro_batches, mtp)
    cost = InstanceCost(spec).step(BatchShape.decode(seqs, 1024, new_tokens=1 + int(mtp)))
    assert cost.seconds > 0 and cost.compute_s > 0
    # splittable batches run as two micro-batches, the rest as one (no overlap)
    assert cost.micro_batches == (2 if micro_batches == 2 and seqs >= 2 else 1)
    if cost.micro_batches == 1:
        assert cost.seconds == pytest.approx(cost.compute_s + cost.comm_s)
    if micro_batches == 2 and seqs == 1:  # unsplittable: exactly the one-micro-batch step
        one = InstanceCost(_spec(model, 1, mtp)).step(BatchShape.decode(seqs, 1024, new_tokens=1 + int(mtp)))
        assert cost.seconds == one.seconds


@pytest.mark.parametrize("tokens,expected", [(1, 1), (2, 2), (4096, 2)])
def test_lone_prefill_splits_its_tokens_when_it_can(tokens, expected):
    cost = InstanceCost(_spec("deepseek-v3", 2, False)).step(BatchShape.prefill(1, tokens))
    assert cost.micro_batches == expected
