"""The ``clustersim`` command line.

Sub-commands are thin: they parse arguments, call ``clustersim.api`` and render the data as
a rich table or JSON. User errors (bad names, bad files, bad values) become a one-line
message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Simulate and plan large LLM deployments.")
hardware_app = typer.Typer(no_args_is_help=True, help="Accelerators, fabrics and clusters in the catalog.")
model_app = typer.Typer(no_args_is_help=True, help="Model architectures and their exact accounting.")
estimate_app = typer.Typer(no_args_is_help=True, help="Cost-model estimates (no simulation).")
app.add_typer(hardware_app, name="hardware")
app.add_typer(model_app, name="model")
app.add_typer(estimate_app, name="estimate")


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


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=_json_default))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return str(obj)


def _table(title: str, rows: list[tuple[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(str(key), _fmt(value))
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
    """Show a device or a cluster (topology counts, cost, tiers, bandwidths)."""
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
    deploy: Path = typer.Argument(..., help="Deployment YAML."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a field: a.b.c=value (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Validate a deployment file and print its accounting report."""
    from clustersim import api

    report = _guard(lambda: api.deployment_report(api.validate(deploy, set_ or ())))
    _show(f"{deploy}: valid", report, as_json)


@app.command("calibrate")
def calibrate_cmd(
    out: Path = typer.Option(..., "--out", help="Profile directory to write (resumes if it exists)."),
    suite: str = typer.Option("all", "--suite", help="Comma-separated suites, or 'all'."),
    quick: bool = typer.Option(False, "--quick", help="Small grids (smoke test)."),
    max_seconds: float = typer.Option(0.0, "--max-seconds", help="Stop cleanly after this long (0: no limit)."),
    device: str = typer.Option("cuda", "--device", help="cuda or cpu."),
) -> None:
    """Run the microbenchmarks on this machine's GPU(s) and write a profile (needs the calibrate extra)."""
    from clustersim import api

    _guard(lambda: api.calibrate(out, suite=suite, quick=quick, max_seconds=max_seconds, device=device))


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
