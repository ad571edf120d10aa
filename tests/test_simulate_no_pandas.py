"""A serving run imports no pandas unless a DataFrame is asked for (issue 15: pandas and its Arrow
backend are ~75 MB of a ``simulate`` process). ``SimResult`` keeps the run's columns and builds its
DataFrames on first read, with the columns and dtypes they always had; the summary is computed from
the arrays. Each check runs in a fresh process and reads ``sys.modules``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LLAMA = "examples/llama-3.1-70b_h200_tp4_colocated.yaml"
H800 = "examples/deepseek-v3_h800_pd-disagg.yaml"
HEAVY = ("pandas", "pyarrow")

def _probe(code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.rstrip().rpartition("\n")[2])


def _heavy() -> str:
    return f"sorted(m for m in {HEAVY!r} if m in sys.modules)"


@pytest.mark.parametrize("example", [LLAMA, H800], ids=["colocated", "pd"])
def test_a_run_and_its_summary_import_no_pandas(example):
    probe = _probe(f"""
import json, sys
import simulator.engine, simulator.metrics, simulator.result, simulator.steplog
import clustersim.cli, clustersim.api, clustersim.run, clustersim.outputs
from workloads.deployment import load_deployment
from simulator import simulate
before = {_heavy()}
res = simulate(load_deployment({example!r}, ["workload.num_requests=60"]), step_cost=lambda role, shape: 0.01)
s = res.summary
after_run = {_heavy()}
df = res.requests
print(json.dumps({{"before": before, "after_run": after_run, "finished": s["counts"]["finished"],
                  "pandas_after_frame": "pandas" in sys.modules, "columns": list(df.columns),
                  "dtypes": [str(t) for t in df.dtypes], "rows": len(df)}}))
""")
    assert probe["before"] == [] and probe["after_run"] == []
    assert probe["finished"] == 60 and probe["rows"] == 60 and probe["pandas_after_frame"]
    from simulator.result import REQUEST_COLUMNS

    assert probe["columns"] == list(REQUEST_COLUMNS)
    ints = {"id", "prompt_tokens", "cached_tokens", "output_tokens", "target_output_tokens", "samples",
            "prefill_instance", "decode_instance", "preemptions", "cancelled_samples"}
    assert probe["dtypes"] == ["int64" if c in ints else "float64" for c in REQUEST_COLUMNS]


def test_cli_simulate_end_to_end_imports_no_pandas():
    """The whole ``clustersim simulate`` command (default options, no ``--out``): loading, the profile's
    lookups, the run, the summary and its printing import neither pandas nor pyarrow."""
    probe = _probe(f"""
import json, sys
sys.argv = ["clustersim", "simulate", {LLAMA!r}, "--set", "workload.num_requests=40", "--json"]
from clustersim.cli import main
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
sys.stdout.flush()
print("\\n" + json.dumps({{"heavy": {_heavy()}}}))
""")
    assert probe == {"heavy": []}


def test_tables_are_built_once_and_result_is_read_only():
    from workloads.deployment import load_deployment
    from simulator import simulate

    res = simulate(load_deployment(H800, ["workload.num_requests=40"]), step_cost=lambda role, shape: 0.01)
    assert res.requests is res.requests and res.transfers is res.transfers and res.steps is res.steps
    assert list(res.transfers.columns) == ["start_s", "end_s", "bytes", "src_instance", "dst_instance"]
    assert len(res.transfers) == res.summary["engine"]["kv_transfers"]
    assert list(res.op_seconds.columns) == ["pool", "source", "kind", "seconds"] and res.cache.empty
    assert np.array_equal(res.request_columns["finish_s"], res.requests["finish_s"].to_numpy(), equal_nan=True)
    with pytest.raises(AttributeError):
        res.summary = {}


def test_run_state_counts_are_narrow_only_when_every_value_fits():
    """``RunState`` holds token and block counts as int32 only while the largest value a run can
    store (a prompt plus every sample's output, doubled for a sum of two) is below 2**30."""
    from simulator.requests import token_dtype

    assert token_dtype(4_194_304, 4_194_304, 1) is np.int32
    assert token_dtype(4_194_304, 4_194_304, 254) is np.int32
    assert token_dtype(4_194_304, 4_194_304, 256) is np.int64
    assert token_dtype(2**30, 1, 1) is np.int64
    from workloads.deployment import load_deployment
    from simulator.engine import Simulation

    sim = Simulation(load_deployment(LLAMA, ["workload.num_requests=30"]), step_cost=lambda role, shape: 0.01)
    st = sim.st
    assert st.s_gen.dtype == np.int32 and st.prompt.dtype == np.int32 and st.transfer_s is None
    assert st.s_req[np.array([3, 5])].tolist() == [3, 5]  # one sample: stream s is request s
    res = sim.run()
    assert res.summary["counts"]["output_tokens"] == int(res.requests["output_tokens"].sum())
