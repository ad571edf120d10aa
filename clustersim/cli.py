"""The ``clustersim`` command line.

Sub-commands are thin: they parse arguments into a job, run it with ``clustersim.api.run_job``
(the one dispatcher), write its files with ``api.save_outputs`` and render the data as a rich
table or JSON. They call ``clustersim.api`` only (``tests/test_code_health.py``). User errors
(bad names, bad files, bad values) become a one-line message on stderr and exit code 2, never
a traceback.
"""

# No ``from __future__ import annotations``: typer reads every command's annotations at each start
# (inspect.signature(eval_str=True) and get_type_hints); evaluated once at import they cost less.
import json
import os
import re
import signal
import sys

# One BLAS thread unless the user says otherwise (before numpy is imported): the simulator and the
# cost model are single-threaded, and OpenBLAS's idle threads spin on a small machine (its first
# call costs ~1 s of CPU on 2 cores); the planner's worker processes are the parallelism.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import typer

# ---------------------------------------------------------------- parameter values
#: what an option of a plain type must look like for ``_PlainValue`` to read it (else typer does)
_PLAIN_NUMBER = {int: re.compile(r"0|[1-9][0-9]{0,17}"),
                 float: re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")}


class _PlainValue:
    """The value of a ``str``, ``int``, ``float`` or ``bool`` option as typer would coerce it, read
    without typer's pydantic adapters (importing pydantic and building one adapter per option is
    most of a short command's start-up: issue 15). Only the unambiguous cases are read here: none,
    an ASCII string as it is, digits as the int or float Python and pydantic both read exactly, a
    default of the option's own type; within the option's min/max. Anything else (a bad value, a
    bound broken, a sign or spaces) goes to typer's own coercion, its usual value or message."""

    def __init__(self, param: Any, kind: type):
        self.kind = kind
        info = param.type_descriptor.parameter_info
        self.low, self.high = info.min, info.max

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None:
            return None
        got = self._read(value)
        if got is None or (self.low is not None and got < self.low) or (self.high is not None and got > self.high):
            param._runtime_param = None  # typer's coercion from here on (its message, its value)
            return param.get_runtime_param().coerce(value, param=param, ctx=ctx)
        return got

    def _read(self, value: Any) -> Any:
        if type(value) is self.kind:
            return value if self.kind is not str or value.isascii() else None
        if type(value) is not str or self.kind not in _PLAIN_NUMBER or not _PLAIN_NUMBER[self.kind].fullmatch(value):
            return None
        got = self.kind(value)
        return got if got - got == 0 else None  # finite


def _plain_kind(param: Any) -> type | None:
    """The plain type (str, int, float, bool) of a typer option or argument that ``_PlainValue``
    may read, or None (a path, a list, a choice, a parser, clamping, or another typer)."""
    desc = getattr(param, "type_descriptor", None)
    info = getattr(desc, "parameter_info", None)
    if info is None or getattr(param, "_runtime_param", False) is not None or not hasattr(param, "get_runtime_param"):
        return None
    kind = desc.annotation
    if kind not in (str, int, float, bool) or param.multiple or param.nargs != 1 or desc.file_annotation is not None:
        return None
    if info.parser is not None or info.clamp or desc.is_choice:
        return None
    return kind


def _read_plainly(params: list) -> None:
    """Give each plain option of ``params`` its ``_PlainValue`` (typer builds its own on first use)."""
    for param in params:
        kind = _plain_kind(param)
        if kind is not None:
            param._runtime_param = _PlainValue(param, kind)


class _PlainParams:
    """Typer's command or group, its plain options (and ``--help``) read by ``_PlainValue``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _read_plainly(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        _read_plainly([] if option is None else [option])
        return option


class _Command(_PlainParams, typer.core.TyperCommand):
    """Every command of this CLI."""


class _Group(_PlainParams, typer.core.TyperGroup):
    """Every command group of this CLI."""


#: help and usage errors in click's plain format: typer's rich panels import ~0.1 s of modules
#: (rich.markdown and friends) on every ``--help`` (issue 15: ``clustersim --help`` <= 0.15 s)
_PLAIN = {"rich_markup_mode": None, "cls": _Group}
app = typer.Typer(add_completion=False, no_args_is_help=True, help="Simulate and plan large LLM deployments.",
                  **_PLAIN)
hardware_app = typer.Typer(no_args_is_help=True, help="Accelerators, fabrics and clusters in the catalog.", **_PLAIN)
model_app = typer.Typer(no_args_is_help=True, help="Model architectures and their exact accounting.", **_PLAIN)
estimate_app = typer.Typer(no_args_is_help=True, help="Cost-model estimates (no simulation).", **_PLAIN)
app.add_typer(hardware_app, name="hardware")
app.add_typer(model_app, name="model")
app.add_typer(estimate_app, name="estimate")


PROFILE_HELP = ("Calibration profile: default, a shipped name (h200), a directory written by clustersim "
                "calibrate, or none (roofline). Overrides the YAML's profile: field.")


def _profile_opt() -> Any:
    return typer.Option(None, "--profile", help=PROFILE_HELP)


#: the catalog's one name rule (hardware.catalog.lookup_hardware / cluster_for; hardware/README.md)
KERNELS_HELP = ("kernel set (workloads.kernel_sets): eager = plain torch ops (SDPA decode without a key split, "
                "SDPA MLA decode, torch._grouped_mm, unfused glue); fused = a serving engine's kernels (split-KV "
                "decode, FlashMLA, fused MoE, DeepGEMM, fused glue).")
LENGTHS_HELP = ("decode batch: mixed = a serving batch of unequal lengths whose mean is --context; equal = every "
                "sequence at exactly --context (a benchmark batch). Matters where a kernel's time depends on the "
                "spread (FlashMLA splits long requests across SMs).")
HARDWARE_HELP = ("A cluster (h200-node, h800-mpft, or an alias: mpft, nvl72, cm384) is that cluster; a device "
                 "(h200, h800, b200, h20, 910c) is the smallest catalog cluster of that device holding the group.")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _guard(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; user-caused errors become one line and exit code 2."""
    try:
        return fn()
    except (ValueError, LookupError) as exc:
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        _fail(msg.splitlines()[0] if msg else type(exc).__name__)
    except FileNotFoundError as exc:
        _fail(f"{exc.filename}: no such file")


def _quiet_opt() -> Any:
    return typer.Option(False, "--quiet", help="No progress bars (they go to stderr, only on a terminal; "
                        "CLUSTERSIM_PROGRESS=always|never overrides).")


def _with_progress(quiet: bool, fn: Callable[[Any], Any]) -> Any:
    """``fn(progress)`` under progress bars on stderr (``clustersim.progress``), guarded: the bars
    are gone before an error line is printed."""
    from clustersim import api

    def go() -> Any:
        with api.progress_bars(quiet) as progress:
            return fn(progress)

    return _guard(go)


def _out_dir(out: Optional[Path]) -> Any:
    """The checked ``--out`` directory (created, writable) before any work, or None."""
    if out is None:
        return None
    from clustersim import api

    return _guard(lambda: api.prepare_out(out))


REPORT_HELP = "Also write report.html into --out: one self-contained page of charts (needs the report extra)."


def _report_ready(report: bool, out: Optional[Path]) -> None:
    """``--report`` needs ``--out`` and plotly: say so in one line before any work."""
    if not report:
        return
    if out is None:
        _fail("--report needs --out DIR: the report is written there as report.html")
    from clustersim import api

    _guard(api.require_report)


@contextmanager
def _interruptible(what: str, out_dir: Any = None, written: str = "nothing written") -> Iterator[None]:
    """Ctrl-C: one line on stderr saying what stopped and what was written, then exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        written = out_dir.report() if out_dir is not None else written
        typer.echo(f"interrupted: {what}; {written}", err=True)
        raise typer.Exit(code=130) from None


def _run(job: Any, quiet: bool | None = None, plan: bool = False) -> Any:
    """``api.run_job(job)``, guarded; under progress bars unless ``quiet`` is None (``plan``: through
    ``api.plan_progress``, which imports what the plan's files need while its verification runs)."""
    from clustersim import api

    if quiet is None:
        return _guard(lambda: api.run_job(job))
    if plan:
        return _with_progress(quiet, lambda progress: api.run_job(job, api.plan_progress(progress)))
    return _with_progress(quiet, lambda progress: api.run_job(job, progress))


def _save(out_dir: Any, outcome: Any, report: bool, **plan_options: Any) -> None:
    """The outcome's files into ``--out`` (and its ``--report`` page), guarded; ``plan_options``:
    a serving plan's (``api.save_outputs``)."""
    from clustersim import api

    if out_dir is not None or report:
        _guard(lambda: api.save_outputs(out_dir, outcome, report=report, **plan_options))


@contextmanager
def _plotter(out_dir: Any, doc: Any) -> Iterator[Any]:
    """With ``--out`` on a serving plan, ``api.plot_helper``: a process that starts while the
    plan runs and draws pareto.png; None otherwise."""
    from clustersim import api

    helper = api.plot_helper() if out_dir is not None and getattr(doc, "kind", None) != "training" else None
    try:
        yield helper
    finally:
        if helper is not None:
            helper.close()


def _print_json(data: Any) -> None:
    from clustersim import api  # strict JSON: NaN and infinities print as null

    typer.echo(api.to_json(json.loads(json.dumps(data, default=_json_default))))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return str(obj)


def _table(title: str, rows: list[tuple[str, Any]]) -> None:
    from clustersim import api

    cells = [(str(key), _fmt(value)) for key, value in rows]
    text = api.kv_table(title, cells)  # rich's bytes without rich, where it reproduces them
    if text is not None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in cells:
        table.add_row(key, value)
    Console().print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e4 or abs(value) < 1e-3:
            return f"{value:.4g}"
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _flatten(prefix: str, data: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        for i, item in enumerate(data):
            _flatten(f"{prefix}[{i}]", item, out)
    else:
        out.append((prefix, data))


def _show(title: str, data: dict, as_json: bool) -> None:
    if as_json:
        _print_json(data)
        return
    rows: list[tuple[str, Any]] = []
    _flatten("", data, rows)
    _table(title, rows)


# ---------------------------------------------------------------- hardware
@hardware_app.command("list")
def hardware_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the devices and clusters in the catalog."""
    from clustersim import api

    data = _guard(api.hardware_list)
    if as_json:
        _print_json(data)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="clusters")
    for col in ("name", "device", "devices", "nodes", "description"):
        table.add_column(col)
    for row in data["clusters"]:
        table.add_row(row["name"], row["device"], f"{row['devices']:,}", f"{row['nodes']:,}", row["description"])
    Console().print(table)
    Console().print("devices: " + ", ".join(data["devices"]))


@hardware_app.command("show")
def hardware_show(name: str, as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show a device or a cluster (topology counts, cost, tiers, bandwidths).

    A cluster name or alias (h200-node, mpft) shows the cluster, a device name or alias (h200, h800) the device.
    """
    from clustersim import api

    _show(name, _guard(lambda: api.hardware_report(name)), as_json)


# ---------------------------------------------------------------- models
@model_app.command("list")
def model_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the models in the catalog."""
    from clustersim import api

    data = _guard(api.model_list)
    if as_json:
        _print_json(data)
        return
    for name in data:
        typer.echo(name)


@model_app.command("show")
def model_show(name: str, as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show a model's architecture and accounting (parameters, KV bytes, training FLOPs)."""
    from clustersim import api

    _show(name, _guard(lambda: api.model_report(name)), as_json)


# ---------------------------------------------------------------- deployments
@app.command("validate")
def validate_cmd(
    config: Path = typer.Argument(..., help="Deployment, plan or training-job YAML (the kind is detected)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a field: a.b.c=value (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Validate a deployment, plan or training-job file with the checks the other commands make,
    and print its report (deployment: accounting per pool; plan: budget and search space;
    training: layout, micro-batches, tokens per step and peak memory per device)."""
    from clustersim import api

    report = _run(api.ValidateJob(config, tuple(set_ or ()))).result
    _show(f"{config}: valid {report['kind']}", report, as_json)


@app.command("calibrate")
def calibrate_cmd(
    out: Path = typer.Option(..., "--out", help="Profile directory to write (resumes if it exists)."),
    suite: str = typer.Option("all", "--suite", help="'all' or comma-separated suites (python -m calibration.run -h)."),
    quick: bool = typer.Option(False, "--quick", help="Small grids (smoke test)."),
    max_seconds: float = typer.Option(0.0, "--max-seconds", help="Stop cleanly after this long (0: no limit)."),
    device: str = typer.Option("cuda", "--device", help="cuda or cpu."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars or suite messages (the summary stays)."),
    check: bool = typer.Option(False, "--check", help="Then measure a few whole-model steps and print "
                               "predicted vs measured (written to OUT/check.csv, check.json)."),
) -> None:
    """Run the microbenchmarks on this machine's GPU and write a profile (needs torch: the calibrate extra).

    Use it with --profile DIR on simulate, estimate, plan and what-if (or profile: DIR in a YAML).
    The collectives and moe_dispatch suites need every GPU of the node:
    torchrun --nproc-per-node N -m clustersim.cli calibrate --out DIR --suite collectives,moe_dispatch
    """
    from clustersim import api

    out_dir = _out_dir(out)
    with _interruptible("calibrate", written=f"the rows measured so far stay in {out}/; rerun the same command "
                                             "to resume"):
        mode = _guard(api.progress_mode)
        done = _run(api.CalibrateJob(out, suite=suite, quick=quick, max_seconds=max_seconds, device=device,
                                     quiet=quiet, check=check, progress=mode)).result
        if done.exit_code:
            out_dir.discard()  # a usage error (no GPU, no torch, bad suite) leaves no empty profile behind
            raise typer.Exit(code=done.exit_code)
        if check:
            typer.echo(api.format_calibration_check(done))


@app.command("simulate")
def simulate_cmd(
    config: Path = typer.Argument(..., help="Deployment YAML (serving) or training-job YAML."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a field: a.b.c=value (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write summary.json, requests.csv, timeseries.csv here."),
    trace: bool = typer.Option(False, "--trace", help="Also write trace.json, a Chrome/Perfetto trace "
                               "(serving iterations and requests, or the training pipeline); needs --out."),
    profile: Optional[str] = _profile_opt(),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    report: bool = typer.Option(False, "--report", help=REPORT_HELP),
    quiet: bool = _quiet_opt(),
) -> None:
    """Simulate a serving deployment (or a training job) and report latency, throughput, goodput."""
    from clustersim import api

    if trace and out is None:
        _fail("--trace needs --out DIR: the trace is written there as trace.json")
    _report_ready(report, out)
    out_dir = _out_dir(out)
    with _interruptible(f"simulate {config}", out_dir):
        doc = _guard(lambda: api.load_config(config))
        done = _run(api.SimulateJob(doc, tuple(set_ or ()), trace=trace, profile=profile, report=report), quiet)
        _save(out_dir, done, report)
    summary = done.summary
    if as_json:
        _print_json(summary)
        return
    _show(f"{config} ({done.kind})", {**summary["summary"], "profile": summary["profile"]}, False)
    if out is not None:
        typer.echo(f"wrote {out}/")


@app.command("plan")
def plan_cmd(
    plan_yaml: Path = typer.Argument(..., help="PLAN.yaml: model, hardware budget, workload, SLOs, search space."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a field: a.b.c=value (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write ranked.parquet (every row), ranked.csv (the top "
                                       "rows), pareto.csv/png, plan.json, best_deployment.yaml."),
    csv_rows: Optional[int] = typer.Option(None, "--csv-rows", min=0, help="Rows of ranked.csv, from the top "
                                           "(default 1000; 0: every row); ranked.parquet holds them all."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Run on an existing Ray cluster."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Local worker processes."),
    profile: Optional[str] = _profile_opt(),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    report: bool = typer.Option(False, "--report", help=REPORT_HELP),
    quiet: bool = _quiet_opt(),
) -> None:
    """Search serving layouts under SLOs (rank analytically, verify the best in the simulator),
    or, given a training-job YAML, training layouts under the memory limit by tokens/day.

    Exit codes: 0 a layout verified in the simulator was found; 2 a bad input; 3 no layout
    fits the budget and SLOs (the closest one and the rule it breaks are printed); 4 layouts
    fit but none passed verification (each check's reason is printed)."""
    from clustersim import api

    _report_ready(report, out)
    out_dir = _out_dir(out)
    with api.frozen_heap():  # the plan's start allocates ~10^6 objects: fewer collections (api.frozen_heap)
        doc = _guard(lambda: api.load_config(plan_yaml))  # read once; a training job plans training layouts
        with _interruptible(f"plan {plan_yaml}", out_dir), _plotter(out_dir, doc) as plotter:
            done = _run(api.PlanJob(doc, tuple(set_ or ()), ray_address, workers, profile=profile), quiet,
                        plan=getattr(doc, "kind", None) != "training")
            _save(out_dir, done, report, csv_rows=csv_rows, plotter=plotter)
    if done.kind == "training":
        table = done.result
        if as_json:
            _print_json({"kind": "training", "profile": table.attrs.get("profile"),
                         "ranked": json.loads(table.head(20).to_json(orient="records"))})
            return
        from rich.console import Console

        typer.echo(table.attrs.get("profile_line", ""))
        cols = [c for c in ("feasible", "pp_schedule", "tp", "pp", "ep", "dp", "step_time_s", "tokens_per_day",
                            "mfu_causal", "memory_peak_gb", "reason") if c in table.columns]
        Console().print(table[cols].head(15).to_string(index=False))
        return
    result = done.result
    if as_json:
        _print_json(result.to_dict(rows=20))
        raise typer.Exit(code=result.exit_code)
    _plan_report(result)
    if result.best is not None and out is None:
        typer.echo(result.best_yaml())
    raise typer.Exit(code=result.exit_code)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 1 else f"{value:.3g}"
    return "-" if value == "not run" else _fmt(value)


#: short headers of ``planner.result.SUMMARY_COLUMNS`` in the terminal table
_PLAN_HEADERS = {"rank": "#", "devices": "dev", "ttft_ms": "TTFT\nms", "tpot_ms": "TPOT\nms",
                 "tokens_per_s_per_device": "tok/s\n/dev", "tokens_per_s_per_user": "tok/s\n/user",
                 "capacity_rps": "req/s", "verified": "veri-\nfied", "sim_capacity_rps": "sim\nreq/s",
                 "sim_tokens_per_s_per_device": "sim tok/s\n/dev"}


def _plan_report(result: Any) -> None:
    """The plan's top layouts (``planner.result.SUMMARY_COLUMNS``: figures in a table, the
    layouts listed under it), the simulator's verification (analytic vs simulated capacity,
    with the gap), notes, and why nothing is recommended when nothing is."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    top = result.summary(10 if result.table["feasible"].any() else 5)
    if "reason" in top.columns:  # nothing feasible: the closest layouts and what each breaks
        typer.echo(f"plan {result.plan.name}: no feasible layout; the closest:")
        for _, row in top.iterrows():
            typer.echo(f"  #{row['rank']}: {row['layout']} ({row['devices']} devices): {row['reason']}")
        top = top.iloc[0:0]
    cols = [c for c in top.columns if c != "layout"]
    table = Table(title=f"plan {result.plan.name}: top layouts (analytic figures at capacity; sim: simulator)")
    for c in cols:
        table.add_column(_PLAN_HEADERS.get(c, c), justify="left" if c == "verified" else "right")
    for _, row in top.iterrows():
        table.add_row(*[_cell(row[c]) for c in cols])
    if len(top):
        console.print(table)
    for _, row in top.iterrows():
        typer.echo(f"  #{row['rank']}: {row['layout']}")
    ver = result.verification
    if len(ver):
        vt = Table(title="verification in the simulator (capacity = requests/s within the SLOs)")
        vcols = [("rank", "#"), ("status", "status"), ("claimed_rps", "req/s"), ("sim_capacity_rps", "sim\nreq/s"),
                 ("capacity_gap", "gap"), ("analytic_ttft_ms", "TTFT\nms"), ("sim_ttft_p_ms", "sim\nTTFT"),
                 ("analytic_tpot_ms", "TPOT\nms"), ("sim_tpot_p_ms", "sim\nTPOT")]
        vcols = [(c, h) for c, h in vcols if c in ver.columns]
        for _, h in vcols:
            vt.add_column(h, justify="left" if h == "status" else "right")
        for _, row in ver.iterrows():
            vt.add_row(*[(f"{row[c]:+.1%}" if c == "capacity_gap" and row[c] == row[c] else _cell(row[c]))
                         for c, _ in vcols])
        console.print(vt)
        typer.echo("  gap = analytic / simulated capacity - 1; TTFT and TPOT at the claimed rate (p"
                   f"{result.plan.slo.percentile:g})")
        for _, row in ver.iterrows():
            if row.get("reason"):
                typer.echo(f"  #{row['rank']} {row['status']}: {row['reason']}")
    for note in result.notes:
        typer.echo(f"note: {note}")
    if result.explanation:
        typer.echo(f"error: {result.explanation}", err=True)


@app.command("what-if")
def whatif_cmd(
    plan_yaml: Path = typer.Argument(..., help="PLAN.yaml (model, workload, SLOs, search space)."),
    capacity: bool = typer.Option(False, "--capacity", help="Fewest devices that serve the load within SLOs."),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="load, bandwidth, hbm, device, tpot_ms or ttft_ms."),
    values: Optional[str] = typer.Option(None, "--values", help="Comma-separated sweep values."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Comma-separated hardware to compare: a cluster "
                                          "name is that cluster, a device name the smallest catalog cluster of "
                                          "that device holding the plan's budget."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a field: a.b.c=value (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the table as CSV (and a PNG plot)."),
    profile: Optional[str] = _profile_opt(),
    as_json: bool = typer.Option(False, "--json"),
    report: bool = typer.Option(False, "--report", help=REPORT_HELP),
    quiet: bool = _quiet_opt(),
) -> None:
    """Capacity planning, one-parameter sweeps and side-by-side hardware comparison."""
    from clustersim import api

    _report_ready(report, out)
    out_dir = _out_dir(out)
    if capacity:
        mode = dict(mode="capacity")
    elif sweep:
        mode = dict(mode="sweep", parameter=sweep, values=tuple(v.strip() for v in values.split(",")) if values else None)
    else:
        mode = dict(mode="compare", hardware=tuple(h.strip() for h in (compare or "").split(",") if h.strip()))
    # the plan is validated before any work (and before the progress bars)
    job = _guard(lambda: api.prepare(api.WhatIfJob(plan_yaml, tuple(set_ or ()), profile=profile, **mode)))
    with _interruptible(f"what-if {plan_yaml}", out_dir):
        done = _run(job, quiet)
        _save(out_dir, done, report)
    kind, df = done.kind, done.result
    if as_json:
        _print_json({"kind": kind, "attrs": {k: v for k, v in df.attrs.items()},
                     "rows": json.loads(df.to_json(orient="records"))})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"what-if: {kind}")
    cols = [c for c in df.columns if c not in ("layout", "plan_wall_s", "hardware_usd")][:14]
    for c in cols:
        table.add_column(c)
    for _, row in df.iterrows():
        table.add_row(*[_fmt(row[c]) for c in cols])
    Console().print(table)
    if "layout" in df.columns:
        for _, row in df.iterrows():
            typer.echo(f"{row.iloc[0]}: {row['layout']}")
    for k, v in df.attrs.items():
        typer.echo(f"{k}: {v}")


@app.command("check")
def check_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print every check as JSON."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write check.csv and check.json here."),
    report: bool = typer.Option(False, "--report", help=REPORT_HELP),
    only: Optional[List[str]] = typer.Option(None, "--only", help="Run this family only (repeatable): accounting, "
                                             "topology, catalog, comm.deepep, ..., measured."),
    points: bool = typer.Option(False, "--points", help="Print every ground-truth point, not only the summary."),
) -> None:
    """How far to trust the model: every published reference (clustersim/data/reference) and every
    point of our GPU ground truth, predicted now: source, setting, published vs predicted, error,
    tolerance, fit or holdout, and status ok / known gap (with the mechanism the model lacks) / fail.
    Exits 1 when a check fails (known gaps do not fail)."""
    from clustersim import api

    _report_ready(report, out)
    out_dir = _out_dir(out)
    with _interruptible("check", out_dir):
        done = _run(api.CheckJob(tuple(only or ())))
        _save(out_dir, done, report)
    result = done.result
    if as_json:
        _print_json(result.to_dict())
    else:
        typer.echo(api.format_checks(result, all_points=points))
        if out is not None:
            typer.echo(f"wrote {out}/")
    if not result.passed:
        raise typer.Exit(code=1)


# ---------------------------------------------------------------- estimates
def _estimate(what: str, title: str, as_json: bool, profile: Optional[str], **args: Any) -> None:
    """Run the estimate ``what`` (``api.EstimateJob``) and print it."""
    from clustersim import api

    data = _run(api.EstimateJob(what, {**args, "profile": profile or "default"})).result
    _estimate_out(data, as_json, title)


def _estimate_out(data: dict, as_json: bool, title: str) -> None:
    if as_json:
        _print_json(data)
        return
    head = {k: v for k, v in data.items() if k not in ("ops",)}
    _show(title, head, False)
    ops = data.get("ops")
    if ops:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="per-operator breakdown")
        for col in ("name", "count", "each (us)", "total (us)", "source"):
            table.add_column(col)
        for o in ops:
            each = o.get("seconds_each", 0.0)
            table.add_row(o["name"], str(o.get("count", 1)), f"{each * 1e6:,.1f}",
                          f"{o.get('seconds_total', each * o.get('count', 1)) * 1e6:,.1f}", o.get("source", ""))
        Console().print(table)


@estimate_app.command("step")
def estimate_step_cmd(
    model: str = typer.Option(..., "--model"),
    hardware: str = typer.Option(..., "--hardware", help=HARDWARE_HELP),
    phase: str = typer.Option(..., "--phase", help="prefill or decode."),
    batch: int = typer.Option(1, "--batch", min=1),
    seq: Optional[int] = typer.Option(None, "--seq", min=1, help="Prefill tokens per sequence."),
    context: Optional[int] = typer.Option(None, "--context", min=0, help="Tokens already cached per sequence "
                                          "(decode; prefill: --seq new tokens after them, a chunk)."),
    tp: int = typer.Option(1, "--tp", min=1),
    dtype: str = typer.Option("bf16", "--dtype"),
    kernels: str = typer.Option("eager", "--kernels", help=KERNELS_HELP),
    lengths: str = typer.Option("mixed", "--lengths", help=LENGTHS_HELP),
    profile: Optional[str] = _profile_opt(),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One forward step of a whole model (prefill or decode)."""
    _estimate("step", "step estimate", as_json, profile, model=model, hardware=hardware, phase=phase, batch=batch,
              seq=seq, context=context, tp=tp, dtype=dtype, kernels=kernels, lengths=lengths)


@estimate_app.command("collective")
def estimate_collective_cmd(
    hardware: str = typer.Option(..., "--hardware", help=HARDWARE_HELP),
    op: str = typer.Option(..., "--op", help="all_reduce, all_gather, reduce_scatter, all_to_all, send_recv."),
    gpus: int = typer.Option(..., "--gpus", min=1),
    bytes_per_rank: float = typer.Option(..., "--bytes-per-rank", min=0),
    profile: Optional[str] = _profile_opt(),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One collective on a group of devices of a catalog cluster."""
    _estimate("collective", "collective estimate", as_json, profile, hardware=hardware, op=op, gpus=gpus,
              bytes_per_rank=bytes_per_rank)


@estimate_app.command("dispatch")
def estimate_dispatch_cmd(
    hardware: str = typer.Option(..., "--hardware", help=HARDWARE_HELP),
    ep: int = typer.Option(..., "--ep", min=1),
    tokens_per_rank: int = typer.Option(..., "--tokens-per-rank", min=0),
    model: str = typer.Option("deepseek-v3", "--model"),
    kernel: str = typer.Option("low_latency", "--kernel", help="normal or low_latency."),
    dispatch_dtype: Optional[str] = typer.Option(None, "--dispatch-dtype", help="fp8, bf16 or int8."),
    profile: Optional[str] = _profile_opt(),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """MoE dispatch and combine on one EP rank."""
    _estimate("dispatch", "dispatch/combine estimate", as_json, profile, hardware=hardware, ep=ep,
              tokens_per_rank=tokens_per_rank, model=model, kernel=kernel, dispatch_dtype=dispatch_dtype)


@estimate_app.command("moe-layer")
def estimate_moe_layer_cmd(
    model: str = typer.Option(..., "--model"),
    hardware: str = typer.Option(..., "--hardware", help=HARDWARE_HELP),
    ep: int = typer.Option(..., "--ep", min=1),
    tokens_per_rank: int = typer.Option(..., "--tokens-per-rank", min=1),
    dtype: str = typer.Option("bf16", "--dtype"),
    kernel: str = typer.Option("normal", "--kernel"),
    kernels: str = typer.Option("eager", "--kernels", help=KERNELS_HELP),
    profile: Optional[str] = _profile_opt(),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One expert-parallel MoE layer: router, dispatch, experts (incl. shared), combine."""
    _estimate("moe-layer", "MoE layer estimate", as_json, profile, model=model, hardware=hardware, ep=ep,
              tokens_per_rank=tokens_per_rank, dtype=dtype, kernel=kernel, kernels=kernels)


@estimate_app.command("attention")
def estimate_attention_cmd(
    hardware: str = typer.Option(..., "--hardware", help=HARDWARE_HELP),
    sp: int = typer.Option(..., "--sp", min=1),
    sp_kind: str = typer.Option("ulysses", "--sp-kind", help="ulysses or ring."),
    seq: int = typer.Option(..., "--seq", min=1),
    heads: int = typer.Option(..., "--heads", min=1),
    head_dim: int = typer.Option(..., "--head-dim", min=1),
    batch: int = typer.Option(1, "--batch", min=1),
    profile: Optional[str] = _profile_opt(),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Sequence-parallel causal attention of one layer (all-to-alls or ring passes plus attention)."""
    _estimate("attention", "sequence-parallel attention estimate", as_json, profile, hardware=hardware, sp=sp,
              sp_kind=sp_kind, seq=seq, heads=heads, head_dim=head_dim, batch=batch)


@estimate_app.command("serving")
def estimate_serving_cmd(
    model: str = typer.Option(..., "--model"),
    hardware: str = typer.Option(..., "--hardware", help=HARDWARE_HELP),
    phase: str = typer.Option(..., "--phase"),
    ep: int = typer.Option(1, "--ep", min=1),
    tp: int = typer.Option(1, "--tp", min=1),
    batch_per_device: int = typer.Option(..., "--batch-per-device", min=1),
    seq: Optional[int] = typer.Option(None, "--seq", min=1),
    context: Optional[int] = typer.Option(None, "--context", min=0),
    micro_batches: int = typer.Option(1, "--micro-batches", min=1, max=2),
    mtp_acceptance: Optional[float] = typer.Option(None, "--mtp-acceptance", min=0.0, max=1.0),
    dtype: str = typer.Option("bf16", "--dtype"),
    redundant_experts: int = typer.Option(0, "--redundant-experts", min=0),
    kernels: str = typer.Option("fused", "--kernels", help=KERNELS_HELP),
    lengths: str = typer.Option("mixed", "--lengths", help=LENGTHS_HELP),
    profile: Optional[str] = _profile_opt(),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Steady state of one serving instance: step time, TPOT or batch time, tokens/s per device."""
    _estimate("serving", "serving estimate", as_json, profile, model=model, hardware=hardware, phase=phase, ep=ep,
              batch_per_device=batch_per_device, tp=tp, seq=seq, context=context, micro_batches=micro_batches,
              mtp_acceptance=mtp_acceptance, dtype=dtype, redundant_experts=redundant_experts, kernels=kernels,
              lengths=lengths)


def _allocators() -> None:
    """Memory given back when freed, so a plan's peak is what it holds at once: pyarrow (which
    pandas imports) on the C allocator (its default pool keeps what it frees), and glibc's
    threshold for mapping large blocks fixed at 512 KiB (it otherwise rises as arrays are freed,
    and the heap then keeps them: about 25 MB at the peak of planning plan_deepseek-v3_h800)."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 512 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: its defaults
        pass


for _commands in (app, hardware_app, model_app, estimate_app):
    for _info in _commands.registered_commands:
        if _info.cls in (None, typer.core.TyperCommand):
            _info.cls = _Command


def main() -> None:
    """Console entry point. After a Ctrl-C has been reported (exit 130), further ones are ignored
    so that they cannot break the shutdown (joining pool workers) with a traceback."""
    _allocators()
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - before a command's own handler is in place
        typer.echo("interrupted: nothing written", err=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 130:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            # A Ctrl-C that landed inside a string eval (namedtuple and friends, while importing)
            # leaves CPython's "unhandled KeyboardInterrupt" flag set, and under `python -m` the
            # interpreter then kills itself with SIGINT instead of exiting 130. Every string eval
            # clears that flag first, so this no-op restores the exit code.
            exec("pass")
        raise
    finally:
        _leave_heap()


def _leave_heap() -> None:
    """Before the interpreter's teardown: the garbage collector's permanent generation takes
    the heap (``gc.freeze``), so the final collections skip it; objects are still freed by
    their reference counts. A plan's process otherwise spends ~0.3 s scanning its memos,
    tables and modules on the way out (issue 15)."""
    import gc

    gc.freeze()


def run() -> None:
    """The ``clustersim`` program (console script, ``python -m clustersim.cli``): ``main``, then
    the process ends at once: the atexit handlers run and stdout/stderr are flushed, but the
    interpreter does not free its heap object by object (~0.1 s after a plan). With a live
    non-daemon thread, or output that cannot be flushed, it exits the usual way."""
    try:
        main()
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    import atexit
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    if code is not None and not isinstance(code, int):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the interpreter's own exit reports it
        sys.exit(code)
    os._exit(code or 0)


if __name__ == "__main__":  # pragma: no cover
    run()
