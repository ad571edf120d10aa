"""The CLI reads plain option values (str, int, float, bool) without typer's pydantic adapters
(``clustersim.cli._PlainValue``, a start-up cost: issue 15); every value, good or bad, must come
out as typer's own coercion gives it: the same value of the same type, or the same error."""

from __future__ import annotations

import math

import typer
from typer._coercion import build_runtime_param

from clustersim import cli

VALUES = ["0", "1", "7", "16384", "99999999999999999999999", "1e6", "1E6", ".5", "5.", "1.25e-3", "1_000", " 5",
          "5 ", "+5", "-1", "016", "0x10", "abc", "", "inf", "nan", "1e400", "h800-mpft", "hä", "all_to_all",
          None, True, False, 0, 1, 3, 2.5, 0.0, -1.0]


def _outcome(runtime, value, param, ctx):
    try:
        got = runtime.coerce(value, param=param, ctx=ctx)
    except Exception as exc:  # noqa: BLE001 - the error is the outcome compared
        return ("error", type(exc).__name__, str(exc))
    return ("value", type(got).__name__, "nan" if isinstance(got, float) and math.isnan(got) else got)


def _plain_params():
    root = typer.main.get_command(cli.app)
    stack = [root]
    while stack:
        command = stack.pop()
        stack.extend(getattr(command, "commands", {}).values())
        ctx = typer.Context(command)
        for param in [*command.params, command.get_help_option(ctx)]:
            if param is not None and isinstance(getattr(param, "_runtime_param", None), cli._PlainValue):
                yield command, ctx, param


def test_plain_values_are_typers_values():
    seen = 0
    for command, ctx, param in _plain_params():
        plain = param._runtime_param
        for value in VALUES:
            param._runtime_param = plain  # a fallback hands the option to typer: put it back
            ours = _outcome(plain, value, param, ctx)
            theirs = _outcome(build_runtime_param(param.type_descriptor), value, param, ctx)
            assert ours == theirs, (command.name, param.name, value)
            seen += 1
        param._runtime_param = plain
    assert seen > 1000  # every command's plain options, the groups' --help
