"""Bad and unusual inputs through the CLI (issue 11, items 2-6 and 22): one line, exit 2, fast.

Each test is named after the issue's reproducing command. The CLI runs in-process (typer's
CliRunner on ``clustersim.cli.app``) with its default options.
"""

from __future__ import annotations

import json
import math
import re
import time
import tracemalloc
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

import workloads.config_file as config_file
import workloads.limits as L
from clustersim.cli import app
from clustersim.outputs import to_json
from planner.schema import PlanConfig
from workloads.config_file import DEPLOYMENT_KEYS, PLAN_KEYS, TRAINING_KEYS, detect_kind
from workloads.deployment import Deployment
from workloads.training import TrainingJob
from workloads.yamlloc import ConfigError, parse_yaml_with_locations

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
DEPLOY = EX / "deepseek-v3_h800_pd-disagg.yaml"
LLAMA = EX / "llama-3.1-70b_h200_tp4_colocated.yaml"
PLAN = EX / "plan_deepseek-v3_h200x32.yaml"
TRAIN = EX / "train_deepseek-v3_h800_2048.yaml"
COMMANDS = ("validate", "simulate", "plan", "what-if")
runner = CliRunner()


def run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(r, *needles: str) -> str:
    """Assert exit 2 with one ``error:`` line on stderr holding every needle; return the line."""
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in r.output
    for n in needles:
        assert n in err, (n, err)
    return err


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


# ---------------------------------------------------------------- item 2: YAML aliases and depth

def billion_laughs() -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for p, c in zip("abcdefgh", "bcdefghi"):
        text += f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n"
    return text


@pytest.mark.parametrize("command", COMMANDS)
def test_billion_laughs_refused_fast_with_little_memory(tmp_path, command):
    text = billion_laughs()
    assert len(text) == 342
    path = write(tmp_path, "laughs.yaml", text)
    tracemalloc.start()
    t0 = time.perf_counter()
    r = run(command, path)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    one_line_error(r, "laughs.yaml:", f"more than {L.MAX_YAML_NODES:,} values after expanding aliases")
    assert elapsed < 10 and peak < 200e6, (elapsed, peak)


@pytest.mark.parametrize("command", COMMANDS)
def test_recursive_alias_refused(tmp_path, command):
    path = write(tmp_path, "rec.yaml", "a: &a [*a]\n")
    one_line_error(run(command, path), "rec.yaml:1:8: a[0]:", "recursive alias")


@pytest.mark.parametrize("command", COMMANDS)
def test_list_nested_5000_deep_refused(tmp_path, command):
    path = write(tmp_path, "deep.yaml", "[" * 5000 + "]" * 5000 + "\n")
    one_line_error(run(command, path), f"deep.yaml:1:{L.MAX_YAML_DEPTH + 1}:", f"more than {L.MAX_YAML_DEPTH} levels")


def test_depth_and_node_limits_are_exact(monkeypatch):
    ok = "[" * L.MAX_YAML_DEPTH + "]" * L.MAX_YAML_DEPTH
    parse_yaml_with_locations(ok)
    with pytest.raises(ConfigError, match="levels deep"):
        parse_yaml_with_locations("[" + ok + "]")
    monkeypatch.setattr("workloads.yamlloc.MAX_YAML_NODES", 1000)  # the count is exact (the list counts too)
    parse_yaml_with_locations("[" + ",".join(["1"] * 999) + "]")
    with pytest.raises(ConfigError, match="more than 1,000 values"):
        parse_yaml_with_locations("[" + ",".join(["1"] * 1000) + "]")
    with pytest.raises(ConfigError, match="more than 1,000 values after expanding aliases"):
        parse_yaml_with_locations("a: &a [" + ",".join(["1"] * 600) + "]\nb: *a\n")
    monkeypatch.undo()
    # an alias counts every value it copies, and cannot nest past the depth limit either
    inner = "[" * (L.MAX_YAML_DEPTH - 1) + "]" * (L.MAX_YAML_DEPTH - 1)
    parse_yaml_with_locations("a: &a " + inner + "\nb: *a\n")
    with pytest.raises(ConfigError, match="after expanding \\*a"):
        parse_yaml_with_locations("a: &a " + inner + "\nb: [*a]\n")


def test_aliases_and_merge_keys_still_work_and_are_copies(tmp_path):
    text = LLAMA.read_text().replace("  pool:\n", "  pool: &p\n") + "extra: *p\n"
    data, locs = parse_yaml_with_locations(text, "x.yaml")
    assert data["extra"] == data["serving"]["pool"] and data["extra"] is not data["serving"]["pool"]
    assert locs[("extra", "attention", "tp")] == locs[("serving", "pool", "attention", "tp")]
    merged, mlocs = parse_yaml_with_locations("base: &b {tp: 4, dp: 2}\npool:\n  <<: *b\n  dp: 8\n", "m.yaml")
    assert merged["pool"] == {"tp": 4, "dp": 8} and mlocs[("pool", "dp")] == (4, 3)
    # --set on one copy leaves the other alone: a shared anchor for prefill and decode
    dep = (EX / "deepseek-v3_h800_pd-disagg.yaml").read_text()
    dep = dep.replace("    micro_batches: 2\n    max_tokens_per_iteration", "    micro_batches: &mb 2\n    max_tokens_per_iteration")
    dep = dep.replace("    micro_batches: 2\n    max_batch_size", "    micro_batches: *mb\n    max_batch_size")
    path = write(tmp_path, "anchored.yaml", dep)
    r = run("validate", path, "--set", "serving.decode.micro_batches=1", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["kind"] == "deployment"


def test_duplicate_and_undefined_anchor_and_non_scalar_key_are_located():
    for text, needle in (("a: &x 1\nb: &x 2\n", "2:4: b: duplicate anchor &x"),
                         ("a: *nope\n", "1:4: a: alias *nope names no anchor"),
                         ("? [1, 2]\n: 3\n", "1:3: <root>: a key must be a plain value"),
                         ("a: !!python/object:os.system x\n", "1:4: invalid YAML"),
                         ("a: 1\n---\nb: 2\n", "2:1: <root>: expected one YAML document"),
                         ("a: " + "9" * 5000 + "\n", "1:4: a: cannot read the value"),
                         ("a: 1\nname: x\x01\n", "2:8: invalid YAML: the control character U+0001"),
                         ('name: "\\ud800"\n', "1:7: name: the text holds a lone UTF-16 surrogate")):
        with pytest.raises(ConfigError) as info:
            parse_yaml_with_locations(text, "f.yaml")
        assert str(info.value).startswith("f.yaml:" + needle), str(info.value)


# ---------------------------------------------------------------- item 3: unbounded sizes

@pytest.mark.parametrize("command", ("validate", "simulate"))
@pytest.mark.parametrize("setting, needle", [
    ("training.global_batch=1000000000000", "training.global_batch: 1000000000000 is too large (valid: <= 16,777,216"),
    ("training.global_batch=1e12", "training.global_batch: '1e12' is not an integer"),
    ("training.global_batch=4194304", "pipeline actions per step"),
])
def test_training_global_batch_bounded(command, setting, needle):
    one_line_error(run(command, TRAIN, "--set", setting), f"{TRAIN}:10:3: " if "4194304" not in setting else "", needle)


@pytest.mark.parametrize("command", ("validate", "simulate"))
@pytest.mark.parametrize("setting, needle", [
    ("workload.num_requests=100000000", "workload.num_requests: 100000000 is too large (valid: <= 1,000,000"),
    ("workload.samples_per_request=1000000", "workload.samples_per_request: 1000000 is too large (valid: <= 1,024"),
    ("serving.decode.mtp_depth=1000000000000000000", "serving.decode.mtp_depth: 1000000000000000000 is too large"),
    ("serving.decode.moe.redundant_experts=1000000000000000000", "redundant_experts: 1000000000000000000 is too large"),
    ("workload.num_requests=1000000 --set workload.samples_per_request=4", "about 4,000,000 sequences"),
    ("workload.num_requests=null --set workload.duration_s=1000000", "about 200,000,000 requests (rate_per_s x duration_s)"),
])
def test_serving_sizes_bounded(command, setting, needle):
    args = []
    for part in setting.split(" --set "):
        args += ["--set", part]
    one_line_error(run(command, DEPLOY, *args), needle)


@pytest.mark.parametrize("setting, needle", [
    ("search.max_instances=100000", "search.max_instances: 100000 is too large (valid: <= 4,096"),
    ("search.decode_batch_per_rank=" + str(list(range(1, 70))), "search.decode_batch_per_rank: 69 values, too many"),
    ("search.attention_tp=[1,2,4,8,16,32,64,128]", None),
    ("verify.top=1000", "verify.top: 1000 is too large"),
])
def test_plan_sizes_bounded(setting, needle):
    r = run("validate", PLAN, "--set", setting)
    if needle is not None:
        one_line_error(r, needle)
    else:
        assert r.exit_code == 0, r.output
    many = "search.decode_batch_per_rank=" + str(list(range(1, 60)))
    one_line_error(run("validate", PLAN, "--set", many, "--set", "search.prefill_tokens_per_rank=[1,2,3]",
                       "--set", "search.redundant_experts=[0,1,2,3,4,5,6,7]"), "choices per pool")


def test_planner_counts_layouts_before_building_them(monkeypatch):
    import planner
    import planner.search as search
    from planner.space import (count_pairs, context_from_plan, count_layouts_of, instance_sizes, layouts_of, pair_count,
                               pool_choices)
    from workloads.models import get_model

    for args in ((1, 1, 100, 50), (3, 5, 1000, 64), (8, 16, 352, 16), (16, 8, 35, 1)):
        assert pair_count(*args) == sum(1 for _ in count_pairs(*args))
    cfg = planner.load_plan(PLAN)
    ctx, model = context_from_plan(cfg), get_model(cfg.model)
    sizes = instance_sizes(ctx, cfg.search)
    feasible = {r: pool_choices(r, cfg.search, model, sizes) for r in ("pool", "prefill", "decode")}
    n = count_layouts_of(ctx, cfg.search, feasible)
    assert n == search._count_layouts(ctx, cfg.search, feasible) == sum(1 for _ in layouts_of(ctx, cfg.search, feasible))
    monkeypatch.setattr(search, "MAX_PLAN_LAYOUTS", n - 1)
    with pytest.raises(ValueError, match=f"search: {n:,} feasible layouts"):
        search._count_layouts(ctx, cfg.search, feasible)


def _numeric_fields(model: type[BaseModel], seen: set) -> list[tuple[str, object]]:
    """(dotted name, FieldInfo) of every int/float (or list of them) field below ``model``."""
    out = []
    if model in seen:
        return out
    seen.add(model)
    for name, field in model.model_fields.items():
        ann = field.annotation
        args = [ann, *get_args(ann)]
        for a in list(args):
            args += list(get_args(a))
        for a in args:
            if isinstance(a, type) and issubclass(a, BaseModel):
                out += [(f"{name}.{n}", f) for n, f in _numeric_fields(a, seen)]
        if any(a in (int, float) for a in args) and bool not in args:
            out.append((name, field))
    return out


@pytest.mark.parametrize("root", [Deployment, PlanConfig, TrainingJob])
def test_every_size_field_has_an_upper_bound_and_no_inf_nan(root):
    from planner.schema import _LIST_LIMITS

    unbounded = []
    for name, field in _numeric_fields(root, set()):
        bounded = any(hasattr(m, "le") or hasattr(m, "lt") for m in field.metadata)
        listed = name.split(".")[-1] in _LIST_LIMITS or name.endswith("redundant_experts")  # list values checked
        if not bounded and not (listed and any(hasattr(m, "max_length") for m in field.metadata)):
            unbounded.append(name)
    assert not unbounded, unbounded
    models, todo = set(), [root]
    while todo:
        m = todo.pop()
        if m in models:
            continue
        models.add(m)
        assert m.model_config.get("allow_inf_nan") is False, m
        for field in m.model_fields.values():
            for a in (field.annotation, *get_args(field.annotation)):
                for b in (a, *get_args(a)):
                    if isinstance(b, type) and issubclass(b, BaseModel):
                        todo.append(b)


def test_limits_table_in_readme_matches_the_code():
    text = (ROOT / "workloads" / "README.md").read_text()
    section = text[text.index("## Input limits"):]
    rows = dict(re.findall(r"^\| (`MAX_\w+`(?:, `MAX_\w+`)*|`MIN_\w+`, `MAX_\w+`) \| ([^|]+) \|", section, re.M))
    names = {k: v for k, v in vars(L).items() if k.startswith(("MAX_", "MIN_"))}
    documented = {}
    for key, values in rows.items():
        for name, value in zip(re.findall(r"`(\w+)`", key), values.split(", ")):
            documented[name] = float(value.replace(",", ""))
    assert set(documented) == set(names)
    for name, value in names.items():
        assert math.isclose(documented[name], value), name


# ---------------------------------------------------------------- item 4: non-finite and negative values

@pytest.mark.parametrize("command", ("validate", "simulate"))
@pytest.mark.parametrize("setting, needle", [
    ("workload.duration_s=.inf", "workload.duration_s: inf is not a finite number"),
    ("serving.decode.moe.imbalance=.inf", "serving.decode.moe.imbalance: inf is not a finite number"),
    ("slo.ttft_ms=.nan", "slo.ttft_ms: nan is not a finite number"),
    ("seed=-1", f"{DEPLOY}:36:1: seed: -1 is too small (valid: >= 0)"),
    ("workload.arrival.rate_per_s=1e-300", "arrive over about"),
])
def test_non_finite_and_negative_values_named(command, setting, needle):
    one_line_error(run(command, DEPLOY, "--set", setting), needle)


@pytest.mark.parametrize("parameter, value", [("bandwidth", "nan"), ("bandwidth", "-1"), ("hbm", "0"),
                                              ("hbm", "-0.5"), ("load", "inf"), ("load", "abc"),
                                              ("tpot_ms", "nan"), ("bandwidth", "1e-300")])
def test_whatif_sweep_values_must_be_finite_and_positive(parameter, value):
    one_line_error(run("what-if", PLAN, "--sweep", parameter, "--values", f"1,{value}"),
                   f"--values: '{value}' is not a valid {parameter} value")


def test_plan_non_finite_values_named():
    one_line_error(run("validate", PLAN, "--set", "search.moe_imbalance=.nan"), "search.moe_imbalance: nan is not a finite")
    one_line_error(run("plan", PLAN, "--set", "hardware.devices=-3"), "hardware.devices: -3 is too small")


def test_json_output_is_strict_never_nan_or_infinity(tmp_path):
    def strict(text: str):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))

    data = strict(to_json({"a": float("inf"), "b": [float("nan"), -float("inf")], "c": 1.5}))
    assert data == {"a": None, "b": [None, None], "c": 1.5}
    import numpy as np

    assert strict(to_json({"x": np.float64("nan"), "y": np.int64(3)})) == {"x": None, "y": 3}
    out = tmp_path / "sim"
    r = run("simulate", LLAMA, "--set", "workload.num_requests=3", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    strict((out / "summary.json").read_text())
    strict(r.stdout)


# ---------------------------------------------------------------- item 5: binary and non-UTF-8 files

@pytest.mark.parametrize("command", COMMANDS)
def test_binary_file_named_by_every_command(tmp_path, command):
    path = write(tmp_path, "bin.yaml", bytes(range(256)) * 4)
    one_line_error(run(command, path), f"{path}:1:1: not a text file")


@pytest.mark.parametrize("command", COMMANDS)
def test_latin1_file_named_by_every_command(tmp_path, command):
    path = write(tmp_path, "latin1.yaml", LLAMA.read_bytes().replace(b"name: llama", "name: caf\xe9".encode("latin-1")))
    one_line_error(run(command, path), f"{path}:2:10: not a UTF-8 text file (byte 0xe9")


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_file_and_directory(tmp_path, command):
    one_line_error(run(command, tmp_path / "nope.yaml"), "nope.yaml: no such file")
    one_line_error(run(command, tmp_path), "is a directory")


# ---------------------------------------------------------------- item 6: huge files, parsed once

@pytest.mark.parametrize("command", COMMANDS)
def test_50mb_file_refused_before_reading(tmp_path, command):
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:
        f.write(b"name: x\n")
        f.truncate(50 * 1024 * 1024)  # sparse: refused by its size, never read
    t0 = time.perf_counter()
    one_line_error(run(command, path), f"{path}: 52,428,800 bytes", f"at most {L.MAX_CONFIG_BYTES:,} bytes")
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("args", [
    ("simulate", LLAMA, "--set", "workload.num_requests=2"),
    ("simulate", TRAIN),
    ("validate", PLAN),
    ("validate", TRAIN),
    ("plan", PLAN, "--set", "hardware.devices=4"),
    ("what-if", PLAN, "--sweep", "bandwidth", "--values", "nan"),
])
def test_every_command_reads_the_file_once(monkeypatch, args):
    calls = []
    real = config_file.read_config_text
    monkeypatch.setattr(config_file, "read_config_text", lambda p: calls.append(p) or real(p))
    r = run(*args)
    assert r.exit_code in (0, 2, 3), r.output  # 3: plan found no layout that fits
    assert len(calls) == 1, calls


# ---------------------------------------------------------------- item 22: validate knows the three kinds

@pytest.mark.parametrize("example", sorted(EX.glob("*.yaml")), ids=lambda p: p.name)
def test_validate_accepts_every_shipped_example(example):
    r = run("validate", example, "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    kind = "plan" if example.name.startswith("plan_") else "training" if example.name.startswith("train_") else "deployment"
    assert report["kind"] == kind
    if kind == "training":
        assert report["devices"] == 2048 and report["micro_batches_per_step"] == 120
    if kind == "plan":
        assert report["candidate_layouts"] > 0


def test_validate_refuses_a_training_job_that_simulate_cannot_fit():
    """validate makes simulate's memory check (the pipeline's peak activations): same line from both."""
    lines = [one_line_error(run(c, TRAIN, "--set", "training.micro_batch_size=2"),
                            f"{TRAIN}:18:3: training.parallelism: out of memory on pipeline device")
             for c in ("validate", "simulate")]
    assert lines[0] == lines[1]
    report = json.loads(run("validate", TRAIN, "--json").stdout)
    assert report["memory_peak_gb"] <= report["memory_usable_gb"]


def test_validate_table_names_the_kind():
    r = run("validate", TRAIN)
    assert r.exit_code == 0 and "valid training" in r.stdout


@pytest.mark.parametrize("command, path, needle", [
    ("simulate", PLAN, "this is a plan file, not a deployment file"),
    ("plan", DEPLOY, "this is a deployment file, not a plan file"),
    ("what-if", TRAIN, "this is a training file, not a plan file"),
    ("what-if", DEPLOY, "this is a deployment file, not a plan file"),
])
def test_a_file_of_another_kind_is_named(command, path, needle):
    one_line_error(run(command, path), f"{path}:1:1: <root>: {needle}")


def test_detect_kind_from_keys():
    assert detect_kind({"training": {}}) == "training"
    assert detect_kind({"model": "m", "cluster": "c", "global_batch": 8}) == "training"
    assert detect_kind({"model": "m", "hardware": {}}) == "plan"
    assert detect_kind({"cluster": "c", "serving": {}}) == "deployment"
    assert detect_kind({"model": "m", "workload": {}}) is None  # nothing tells: the command's own kind
    assert detect_kind(["a"]) is None and detect_kind(None) is None


def test_kind_keys_are_the_schemas_own():
    dep, plan, job = set(Deployment.model_fields), set(PlanConfig.model_fields), set(TrainingJob.model_fields)
    assert PLAN_KEYS <= plan - dep - job
    assert TRAINING_KEYS - {"training"} <= job - dep - plan
    assert DEPLOYMENT_KEYS <= dep - plan - job


def test_set_overrides_still_work_for_every_kind():
    assert run("validate", LLAMA, "--set", "serving.pool.instances=1").exit_code == 0
    r = run("validate", TRAIN, "--set", "training.parallelism.dp=256", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["devices"] == 4096
    r = run("validate", PLAN, "--set", "hardware.devices=16", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["budget_devices"] == 16
