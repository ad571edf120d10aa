"""Public trace formats (issue 16 item 4): each shipped example replays through ``clustersim
simulate``; slicing and speedup are checked against the files read independently here (csv,
json and datetime, not workloads.traces); bad rows are one ``file:line: column: problem`` line."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import workloads.limits as L
from clustersim.cli import app
from simulator.engine import Simulation
from workloads.deployment import load_deployment
from workloads.traces import read_trace_file

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
AZURE = EX / "trace_azure-conv_llama-3.1-70b_h200.yaml"
BURST = EX / "trace_burstgpt_llama-3.1-70b_h200.yaml"
MOON = EX / "trace_mooncake_deepseek-v3_h800_pd-disagg.yaml"
runner = CliRunner()


def simulate(*args, out: Path | None = None) -> tuple[dict, pd.DataFrame | None]:
    extra = ["--out", str(out)] if out is not None else []
    r = runner.invoke(app, ["simulate", *map(str, args), "--json", *extra])
    assert r.exit_code == 0, (r.output, r.exception)
    summary = json.loads(r.stdout)["summary"]
    return summary, (pd.read_csv(out / "requests.csv") if out is not None else None)


def one_line_error(args, *needles: str) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in r.output, err
    for n in needles:
        assert n in err, (n, err)
    return err


# ---------------------------------------------------------------- the files, read independently
def azure_rows(path: Path) -> list[tuple[float, int, int]]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    stamps = [datetime.fromisoformat(r["TIMESTAMP"][:26]).replace(tzinfo=UTC) for r in rows]
    t0 = min(stamps)
    return [((s - t0).total_seconds(), int(r["ContextTokens"]), int(r["GeneratedTokens"])) for s, r in zip(stamps, rows)]


def burstgpt_rows(path: Path) -> list[tuple[float, int, int]]:
    with path.open() as fh:
        return [(float(r["Timestamp"]), int(r["Request tokens"]), int(r["Response tokens"])) for r in csv.DictReader(fh)
                if int(r["Response tokens"]) > 0]


def mooncake_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def window(rows, start_s: float, duration_s: float | None, speedup: float):
    keep = sorted((r for r in rows if r[0] >= start_s and (duration_s is None or r[0] < start_s + duration_s)),
                  key=lambda r: r[0])
    return [((t - start_s) / speedup, p, o) for t, p, o in keep]


# ---------------------------------------------------------------- each format replays through the CLI
def test_azure_example_replays_its_slice_at_its_speedup(tmp_path):
    want = window(azure_rows(EX / "traces" / "azure_conv_2023_sample.csv"), 10.0, 60.0, 2.0)
    s, req = simulate(AZURE, out=tmp_path / "o")
    assert s["counts"]["requests"] == len(want) == s["counts"]["finished"]
    assert np.allclose(req["arrival_s"], [w[0] for w in want], atol=1e-6)
    assert req["prompt_tokens"].tolist() == [max(w[1], 1) for w in want]
    assert req["target_output_tokens"].tolist() == [max(w[2], 1) for w in want]
    assert req["arrival_s"].max() < 30.0  # 60 trace seconds at 2x


def test_burstgpt_example_replays_without_failed_requests(tmp_path):
    path = EX / "traces" / "burstgpt_format_generated.csv"
    raw = list(csv.DictReader(path.open()))
    want = window(burstgpt_rows(path), 0.0, None, 1.5)
    assert len(want) < len(raw)  # the generated sample holds failed requests (0 response tokens)
    s, req = simulate(BURST, out=tmp_path / "o")
    assert s["counts"]["requests"] == len(want) == s["counts"]["finished"]
    assert np.allclose(req["arrival_s"], [w[0] for w in want])
    assert req["prompt_tokens"].tolist() == [w[1] for w in want]


def test_mooncake_example_replays_and_keeps_block_hashes(tmp_path):
    rows = mooncake_rows(EX / "traces" / "mooncake_conversation_sample.jsonl")
    s, req = simulate(MOON, out=tmp_path / "o")
    assert s["counts"]["requests"] == len(rows) == s["counts"]["finished"]
    assert np.allclose(req["arrival_s"], [r["timestamp"] / 1e3 / 5.0 for r in rows])
    assert req["prompt_tokens"].tolist() == [r["input_length"] for r in rows]
    st = Simulation(load_deployment(MOON)).st  # the request records carry the hashes
    assert st.block_hashes is not None and st.block_hashes.block_tokens == 512
    assert [list(st.block_hashes.of(i)) for i in range(len(rows))] == [r["hash_ids"] for r in rows]
    shared = sum(1 for r in rows if r["hash_ids"][0] == rows[0]["hash_ids"][0])
    assert shared > 1  # the conversation trace's requests share a first block: a prefix to cache


@pytest.mark.parametrize("start_s, duration_s, speedup", [(0, None, 1.0), (30, 20, 1.0), (5, 40, 4.0), (0, 50, 0.5)])
def test_slicing_and_speedup_from_the_command_line(tmp_path, start_s, duration_s, speedup):
    sets = [f"workload.arrival.start_s={start_s}", f"workload.arrival.speedup={speedup}",
            f"workload.arrival.duration_s={'null' if duration_s is None else duration_s}"]
    want = window(azure_rows(EX / "traces" / "azure_conv_2023_sample.csv"), start_s, duration_s, speedup)
    s, req = simulate(AZURE, *[a for x in sets for a in ("--set", x)], out=tmp_path / "o")
    assert s["counts"]["requests"] == len(want)
    assert np.allclose(req["arrival_s"], [w[0] for w in want], atol=1e-6)


def test_workload_duration_and_num_requests_cut_the_replayed_slice(tmp_path):
    want = window(azure_rows(EX / "traces" / "azure_conv_2023_sample.csv"), 10.0, 60.0, 2.0)
    s, _ = simulate(AZURE, "--set", "workload.duration_s=10")
    assert s["counts"]["requests"] == sum(1 for w in want if w[0] <= 10.0)
    s, _ = simulate(AZURE, "--set", "workload.num_requests=7")
    assert s["counts"]["requests"] == 7


def test_replay_is_deterministic():
    r1 = runner.invoke(app, ["simulate", str(MOON), "--json"])
    r2 = runner.invoke(app, ["simulate", str(MOON), "--json"])
    assert r1.exit_code == 0 and r1.stdout == r2.stdout


def test_azure_2024_timestamps_with_utc_offsets(tmp_path):
    path = tmp_path / "azure2024.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                    "2024-05-10 00:00:01.509930+00:00,100,10\n"
                    "2024-05-10 00:00:00.009930+00:00,200,20\n"
                    "2024-05-10 02:00:03+02:00,300,30\n"  # 00:00:03 UTC
                    "2024-05-10 00:00:02,400,40\n")  # naive: read as UTC
    tr = read_trace_file(path, "azure")
    assert np.allclose(tr.arrival_s, [1.5, 0.0, 2.99007, 1.99007])
    assert tr.prompt_tokens.tolist() == [100, 200, 300, 400]


def test_csv_and_jsonl_default_format_still_reads(tmp_path):
    (tmp_path / "t.csv").write_text("arrival_s,prompt_tokens,output_tokens,cached_tokens\n0.5,100,4,64\n0.1,30,0,40\n")
    tr = read_trace_file(tmp_path / "t.csv")
    assert tr.arrival_s.tolist() == [0.5, 0.1] and tr.output_tokens.tolist() == [4, 1]  # 0 output -> 1 token
    assert tr.cached_tokens.tolist() == [64, 29]  # at most prompt - 1
    (tmp_path / "t.jsonl").write_text('{"arrival_s": 1, "prompt_tokens": 8, "output_tokens": 2}\n\n')
    assert read_trace_file(tmp_path / "t.jsonl").cached_tokens.tolist() == [0]


# ---------------------------------------------------------------- bad rows: one located line, exit 2
def _deploy(tmp_path: Path, fmt: str, text: str, suffix: str = ".csv", **arrival) -> Path:
    trace = tmp_path / f"trace{suffix}"
    trace.write_text(text)
    doc = yaml.safe_load(AZURE.read_text())
    doc["workload"] = {"arrival": {"kind": "trace", "format": fmt, "path": trace.name, **arrival}}
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


AZ_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZ_OK = "2023-11-16 18:15:46.6805900,374,44\n"
MC_OK = '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}\n'
BG_HEAD = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"


@pytest.mark.parametrize("fmt, text, suffix, needle", [
    ("azure", AZ_HEAD + AZ_OK * 2 + "yesterday,10,10\n", ".csv", "trace.csv:4: TIMESTAMP: 'yesterday' is not a date"),
    ("azure", AZ_HEAD + AZ_OK + "2023-11-16 18:15:47,abc,10\n", ".csv", "trace.csv:3: ContextTokens: 'abc' is not a number"),
    ("azure", AZ_HEAD + AZ_OK + "2023-11-16 18:15:47,12.5,10\n", ".csv", "trace.csv:3: ContextTokens: '12.5' is not a whole"),
    ("azure", AZ_HEAD + AZ_OK + "2023-11-16 18:15:47,10,-3\n", ".csv", "trace.csv:3: GeneratedTokens: '-3' is negative"),
    ("azure", AZ_HEAD + AZ_OK + "2023-11-16 18:15:47,10\n", ".csv", "trace.csv:3: GeneratedTokens: empty"),
    ("azure", AZ_HEAD + AZ_OK + "2023-11-16 18:15:47,10,1,9\n", ".csv", "trace.csv:3: Expected 3 fields in line 3, saw 4"),
    ("azure", AZ_HEAD + "2023-11-16 18:15:47,99999999,1\n", ".csv", "trace.csv:2: ContextTokens: '99999999' is more than"),
    ("azure", BG_HEAD + "1,ChatGPT,10,10,20,API log\n", ".csv",
     "trace.csv:1: header: missing column(s) 'TIMESTAMP', 'ContextTokens', 'GeneratedTokens' (azure traces have: "
     "TIMESTAMP, ContextTokens, GeneratedTokens; the header is that of the burstgpt format"),
    ("burstgpt", BG_HEAD + "1,ChatGPT,10,10,20,API log\nnan,ChatGPT,10,10,20,API log\n", ".csv",
     "trace.csv:3: Timestamp: 'nan' is not a finite number"),
    ("burstgpt", AZ_HEAD + AZ_OK, ".csv", "format: azure"),
    ("mooncake", MC_OK + "{not json\n", ".jsonl", "trace.jsonl:2: not a JSON object"),
    ("mooncake", MC_OK + "\n[1, 2]\n", ".jsonl", "trace.jsonl:3: not a JSON object (list)"),
    ("mooncake", MC_OK + '{"timestamp": 5, "input_length": 600, "output_length": 5, "hash_ids": [1]}\n', ".jsonl",
     "trace.jsonl:2: hash_ids: 1 block hashes for input_length 600 (expected ceil(600 / 512) = 2"),
    ("mooncake", '{"timestamp": 5, "input_length": 6, "output_length": 5}\n', ".jsonl", "trace.jsonl:1: hash_ids: missing"),
    ("mooncake", '{"timestamp": "5", "input_length": 6, "output_length": 5, "hash_ids": [1]}\n', ".jsonl",
     "trace.jsonl:1: timestamp: '5' is a string, not a number"),
    ("mooncake", '{"timestamp": 5, "input_length": 6, "hash_ids": [1]}\n', ".jsonl", "trace.jsonl:1: output_length: missing"),
    ("mooncake", '{"timestamp": 5, "input_length": 6, "output_length": 1, "hash_ids": ["a"]}\n', ".jsonl",
     "trace.jsonl:1: hash_ids: 'a' is not an integer hash"),
    ("csv", "arrival_s,prompt_tokens,output_tokens\n0,1,1\n-1,2,2\n", ".csv", "trace.csv:3: arrival_s: '-1' is negative"),
    ("csv", '{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": true}\n', ".jsonl",
     "trace.jsonl:1: output_tokens: True is not a number"),
])
def test_bad_rows_are_one_line_with_file_line_and_column(tmp_path, fmt, text, suffix, needle):
    one_line_error(["simulate", _deploy(tmp_path, fmt, text, suffix)], needle)


def test_bad_row_in_a_plan_trace_names_the_plan_field_and_the_trace_line(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text(AZ_HEAD + AZ_OK + "2023-11-16 18:15:47,10,x\n")
    doc = yaml.safe_load((EX / "plan_deepseek-v3_h200x32.yaml").read_text())
    doc["workload"] = {"arrival": {"kind": "trace", "format": "azure", "path": "trace.csv"}}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(doc))
    one_line_error(["validate", tmp_path / "plan.yaml"], "workload.arrival.path:",
                   f"{trace}:3: GeneratedTokens: 'x' is not a number")


def test_empty_slice_names_the_trace_span(tmp_path):
    cfg = _deploy(tmp_path, "azure", AZ_HEAD + AZ_OK + "2023-11-16 18:15:56.6805900,10,10\n", start_s=100)
    one_line_error(["simulate", cfg], "no request to replay from start_s 100 s", "arrive from 0 to 10 s")


@pytest.mark.parametrize("setting, needle", [
    ("workload.arrival.speedup=0", "workload.arrival.speedup: 0"),
    ("workload.arrival.start_s=-1", "workload.arrival.start_s: -1"),
    ("workload.arrival.format=parquet", "workload.arrival.format"),
    ("workload.arrival.block_tokens=64", "block_tokens applies to mooncake traces"),
])
def test_trace_fields_are_checked_with_their_location(setting, needle):
    one_line_error(["simulate", AZURE, "--set", setting], f"{AZURE}:", needle)


def test_trace_size_and_row_limits(tmp_path, monkeypatch):
    cfg = _deploy(tmp_path, "azure", AZ_HEAD + AZ_OK * 5)
    monkeypatch.setattr(L, "MAX_TRACE_ROWS", 4)
    one_line_error(["simulate", cfg], "trace.csv: more than 4 rows")
    cfg = _deploy(tmp_path, "mooncake", MC_OK * 5, ".jsonl")
    one_line_error(["simulate", cfg], "trace.jsonl: more than 4 rows")
    monkeypatch.setattr(L, "MAX_TRACE_BLOCK_HASHES", 5)
    one_line_error(["simulate", _deploy(tmp_path, "mooncake", MC_OK * 3, ".jsonl")],
                   "trace.jsonl:3: hash_ids: more than 5 block hashes")
    monkeypatch.setattr(L, "MAX_TRACE_BYTES", 100)
    one_line_error(["simulate", _deploy(tmp_path, "azure", AZ_HEAD + AZ_OK * 5)],
                   "bytes, larger than a trace may be (at most 100")


def test_replayed_request_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "MAX_REQUESTS", 3)
    cfg = _deploy(tmp_path, "azure", AZ_HEAD + AZ_OK * 5)
    one_line_error(["simulate", cfg], "5 requests to replay, more than one simulation may generate (at most 3")


def test_block_hashes_take_keeps_each_requests_hashes():
    from workloads.traces import BlockHashes

    bh = BlockHashes(512, np.array([1, 2, 3, 4, 5, 6]), np.array([0, 2, 2, 5, 6]))
    sub = bh.take(np.array([3, 0, 2]))
    assert sub.as_tuples() == ((6,), (1, 2), (3, 4, 5)) and len(bh.take(np.array([1]))) == 1
    assert bh.take(np.array([1])).of(0) == ()
    assert len(sub) == 3
