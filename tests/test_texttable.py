"""``clustersim.texttable.kv_table`` prints what rich prints for the CLI's two-column tables, byte for
byte, wherever it answers; elsewhere it answers None (the CLI then prints with rich)."""

from __future__ import annotations

import io
import random

from rich.console import Console
from rich.table import Table

from clustersim.texttable import kv_table

WORDS = ["a", "bb", "h800-mpft", "16,384", "4.855e-05", "flat", "model:flat", "ll128", "nvlink, ib-leaf, ib-spine",
         "(calibration/README.md,", "Transfer)", "measured", "on", "h200-sxm,", "target", "point", "transfer",
         "inside", "the", "grids", "x" * 30, "y" * 61, "", "None", "True", "0", "-1.5", "1,234,567.8912",
         "deepep:low_latency:dispatch", "x:y:z", "model:deepep[2025-05]", "[1,", "2]", "a[]b"]


def _rich(title: str, rows: list[tuple[str, str]], env: dict) -> str:
    buf = io.StringIO()
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, value)
    Console(file=buf, _environ=env).print(table)
    return buf.getvalue()


def _text(rng: random.Random, most: int) -> str:
    sep = rng.choice([" ", " ", " ", "  ", ", "])
    return sep.join(rng.choice(WORDS) for _ in range(rng.randint(1, most))).strip(" ") if rng.random() > 0.05 else ""


def test_kv_table_is_rich_byte_for_byte():
    rng = random.Random(15)
    answered = 0
    for _ in range(1500):
        env = {"COLUMNS": str(rng.choice([20, 40, 60, 79, 80, 81, 100, 120, 200, rng.randint(8, 240)])), "LINES": "25"}
        rows = [(_text(rng, 3).replace(" ", "."), _text(rng, rng.choice([2, 8, 30]))) for _ in range(rng.randint(1, 9))]
        title = _text(rng, 6)
        ours = kv_table(title, rows, io.StringIO(), env)
        if ours is not None:
            answered += 1
            assert ours == _rich(title, rows, env), (title, rows, env)
    assert answered > 1200  # the others: a title word wider than the table, an emoji code


def test_kv_table_declines_what_it_does_not_reproduce():
    rows = [("seconds", "4.855e-05")]
    env = {"COLUMNS": "80", "LINES": "25"}
    assert kv_table("t", rows, io.StringIO(), env) is not None
    assert kv_table("t", rows, io.StringIO(), {**env, "FORCE_COLOR": "1"}) is None  # colours
    assert kv_table("t", rows, io.StringIO(), {**env, "TTY_COMPATIBLE": "1"}) is None
    for markup in ("[bold]v", "a [/x] b", "[#fff]c", "\\[x]"):  # markup tags, an escape
        assert kv_table("t", [("k", markup)], io.StringIO(), env) is None
    for emoji in ("a :smile: b", "a:+1:b", ":Tada-text:"):  # emoji codes
        assert kv_table("t", [("k", emoji)], io.StringIO(), env) is None
    assert kv_table("t", [("source", "deepep:low_latency:dispatch")], io.StringIO(), env) is not None
    assert kv_table("t", [("k", "µs")], io.StringIO(), env) is None  # not ASCII
    assert kv_table("x" * 100, rows, io.StringIO(), env) is None  # a title word rich folds
    assert kv_table("t", [("k", "x" * 100)], io.StringIO(), env) == _rich("t", [("k", "x" * 100)], env)  # cut: …
    latin1 = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    assert kv_table("t", rows, latin1, env) is None  # rich draws an ASCII box


def test_console_is_terminal_is_richs_rule():
    """The check ``progress_bars`` and ``kv_table`` make without rich answers as rich's
    ``Console(file=...).is_terminal``, for every setting of the variables it reads."""
    from clustersim.texttable import console_is_terminal

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream in (io.StringIO(), Tty()):
        for tty_compatible in (None, "", "0", "1", "x"):
            for force_color in (None, "", "1", "0"):
                env = {k: v for k, v in (("TTY_COMPATIBLE", tty_compatible), ("FORCE_COLOR", force_color))
                       if v is not None}
                assert console_is_terminal(stream, env) == Console(file=stream, _environ=env).is_terminal, env
