"""The CLI's two-column tables (field, value) as plain text, without importing rich.

``clustersim.cli`` prints a command's answer as a rich ``Table`` (a title, no header, two
columns). Importing and running rich costs a short command (``estimate collective``) about a
sixth of its start-up (issue 15), so ``kv_table`` writes the same bytes itself where rich prints
no colour: output that is not a terminal (a file, a pipe, a test; ``console_is_terminal`` is
rich's rule), a UTF-8 encoding, and text that rich prints as it is (printable ASCII, no markup
tag such as ``[bold]``, no emoji code such as ``:smile:``). There it follows the layout of rich's
``Table`` with its defaults: the ``SQUARE`` box of a header-less table, one space of padding,
the columns' measured widths collapsed to the console's width (``Table._collapse_widths``,
``ratio_reduce``), words wrapped as ``Text.wrap`` wraps them (a word wider than its column cut
with an ellipsis), the title centred over the table. Anything else -- a terminal (colours),
another encoding, a title word wider than the table (rich folds it) -- answers None and the CLI
prints with rich. Written against rich 15.0; ``tests/test_texttable.py`` compares the two byte for
byte, with the rich installed, on thousands of random tables and widths.
"""

from __future__ import annotations

import builtins
import os
import re
import sys
from typing import Mapping, Sequence

__all__ = ["console_is_terminal", "kv_table"]

_WORD = re.compile(r"\s*\S+\s*")
_PLAIN = re.compile(r"[ -~]*")  # printable ASCII: one cell per character
#: rich's markup tags (``rich.markup.RE_TAGS``); a ``[`` that opens none is printed as it is
_TAG = re.compile(r"((\\*)\[([a-z#/@][^[]*?)])")
#: rich's emoji codes (``rich.emoji._emoji_replace``): a match naming a known emoji is replaced
_EMOJI = re.compile(r"(:(\S*?)(?:(?:\-)(emoji|text))?:)")
_PAD = 1  # cell padding, left and right
_EDGE = 3  # a two-column table's vertical rules: left edge, divider, right edge


def console_is_terminal(stream, environ: Mapping[str, str] | None = None) -> bool:
    """rich's ``Console(file=stream).is_terminal`` (no ``force_terminal``), without rich: not
    under IDLE or Jupyter, then ``TTY_COMPATIBLE`` (0 or 1), then ``FORCE_COLOR`` (set: a
    terminal unless empty), then ``stream.isatty()``."""
    environ = os.environ if environ is None else environ
    if getattr(sys.stdin, "__module__", "").startswith("idlelib") or hasattr(builtins, "get_ipython"):
        return False
    tty_compatible = environ.get("TTY_COMPATIBLE", "")
    if tty_compatible in ("0", "1"):
        return tty_compatible == "1"
    force_color = environ.get("FORCE_COLOR")
    if force_color is not None:
        return force_color != ""
    isatty = getattr(stream, "isatty", None)
    try:
        return False if isatty is None else bool(isatty())
    except ValueError:
        return False


def _plain_console(stream, environ: Mapping[str, str]) -> bool:
    """Whether rich's ``Console()`` on ``stream`` would print no colour and the default box: not a
    terminal, UTF-8, not Jupyter or Windows."""
    if os.name != "posix" or hasattr(builtins, "get_ipython"):
        return False
    if getattr(sys.stdin, "__module__", "").startswith("idlelib"):
        return False
    if not (getattr(stream, "encoding", "utf-8") or "utf-8").lower().startswith("utf"):
        return False
    return not console_is_terminal(stream, environ)


def _has_markup(text: str) -> bool:
    """Whether rich's markup would change ``text``: a tag, or an escaped ``\\[``."""
    return "[" in text and (_TAG.search(text) is not None or "\\[" in text)


def _has_emoji(text: str) -> bool:
    """Whether rich would replace an emoji code in ``text`` (its table of names is read only
    when the text holds a ``:name:`` at all)."""
    matches = _EMOJI.findall(text)
    if not matches:
        return False
    try:
        from rich._emoji_codes import EMOJI
    except ImportError:  # another rich: assume it would
        return True
    return any(name.lower() in EMOJI for _, name, _ in matches)


def _std_fileno(stream, default: int) -> int:
    try:
        return stream.fileno()
    except Exception:  # noqa: BLE001 - rich's own fallback
        return default


def _console_width(environ: Mapping[str, str]) -> int:
    """rich's ``Console().size.width`` when the console is not a terminal (``COLUMNS``, else a
    terminal on stdin, stdout or stderr, else 80)."""
    columns, lines = environ.get("COLUMNS"), environ.get("LINES")
    fixed = int(columns) if columns is not None and columns.isdigit() else None
    if fixed is not None and lines is not None and lines.isdigit():
        return fixed
    width = None
    for fd in (_std_fileno(sys.__stdin__, 0), _std_fileno(sys.__stdout__, 1), _std_fileno(sys.__stderr__, 2)):
        try:
            width, _ = os.get_terminal_size(fd)
        except (AttributeError, ValueError, OSError):
            pass
        else:
            break
    if fixed is not None:
        width = fixed
    return width or 80


def _divide(text: str, width: int, crop: bool) -> list[str] | None:
    """``text`` broken into lines of at most ``width`` cells at word boundaries, as rich's
    ``Text.wrap`` does (``divide_line``, ``rstrip_end``, ``truncate``). A word longer than
    ``width`` stands on a line of its own cut to ``width - 1`` cells and an ellipsis (``crop``:
    a table cell's overflow); without ``crop`` (a title: rich folds it) the answer is None."""
    if width < 1 and text:
        return None
    breaks, offset = [], 0
    for m in _WORD.finditer(text):
        start, word = m.start(), m.group(0)
        length = len(word.rstrip())
        if width - offset >= length:
            offset += len(word)
        elif length > width:
            if not crop:
                return None
            if start:
                breaks.append(start)
            offset = len(word)
        elif offset and start:
            breaks.append(start)
            offset = len(word)
    lines = []
    for a, b in zip([0, *breaks], [*breaks, len(text)]):
        line = text[a:b]
        if len(line) > width:  # rstrip_end: trailing spaces beyond the width go
            line = line[:len(line) - min(len(line) - len(line.rstrip()), len(line) - width)]
        lines.append(line if len(line) <= width else line[:width - 1] + "…")
    return lines


def _measure(cells: Sequence[str], max_width: int) -> int:
    """The maximum of rich's measurement of a column of padded cells within ``max_width``."""
    if max_width < 1:
        return 0
    if max_width - 2 * _PAD < 1:
        return max_width
    widest = max(min(len(c), max_width) for c in cells)
    return min((widest if widest >= 1 else 0) + 2 * _PAD, max_width)


def _reduce(total: int, ratios: list[int], maximums: list[int], values: list[int]) -> list[int]:
    """rich's ``ratio_reduce``."""
    ratios = [r if m else 0 for r, m in zip(ratios, maximums)]
    total_ratio, remaining, out = sum(ratios), total, []
    if not total_ratio:
        return values[:]
    for ratio, maximum, value in zip(ratios, maximums, values):
        if ratio and total_ratio > 0:
            cut = min(maximum, round(ratio * remaining / total_ratio))
            out.append(value - cut)
            remaining -= cut
            total_ratio -= ratio
        else:
            out.append(value)
    return out


def _widths(columns: Sequence[Sequence[str]], max_width: int) -> list[int]:
    """The columns' widths, padding included (rich's ``Table._calculate_column_widths`` for
    flexible, wrapping columns and no ``expand``)."""
    widths = [_measure(col, max_width) or 1 for col in columns]
    if sum(widths) > max_width:
        excess = sum(widths) - max_width
        while sum(widths) and excess > 0:  # Table._collapse_widths, every column wrapable
            top = max(widths)
            second = max(w if w != top else 0 for w in widths)
            ratios = [1 if w == top else 0 for w in widths]
            if not any(ratios) or not top - second:
                break
            widths = _reduce(excess, ratios, [min(excess, top - second)] * len(widths), widths)
            excess = sum(widths) - max_width
        if sum(widths) > max_width:
            widths = _reduce(sum(widths) - max_width, [1] * len(widths), widths, widths)
        widths = [_measure(col, w) for col, w in zip(columns, widths)]
    return widths


def kv_table(title: str, rows: Sequence[tuple[str, str]], stream=None,
             environ: Mapping[str, str] | None = None) -> str | None:
    """The text rich prints for ``Table(title=title, show_header=False)`` of two columns holding
    ``rows`` on a ``Console()`` writing to ``stream`` (default ``sys.stdout``), or None where this
    module does not reproduce rich (see the module docstring)."""
    stream = sys.stdout if stream is None else stream
    environ = os.environ if environ is None else environ
    texts = [title, *(t for row in rows for t in row)]
    if not rows or not _plain_console(stream, environ) or any(
            _PLAIN.fullmatch(t) is None or _has_markup(t) or _has_emoji(t) for t in texts):
        return None
    columns = [[k for k, _ in rows], [v for _, v in rows]]
    widths = _widths(columns, _console_width(environ) - _EDGE)
    body = []
    for row in rows:
        cells = [_divide(text, w - 2 * _PAD, crop=True) if w >= 2 * _PAD else None for text, w in zip(row, widths)]
        if any(c is None for c in cells):
            return None
        height = max(len(c) for c in cells)
        for i in range(height):
            body.append("│" + "│".join(" " + (c[i] if i < len(c) else "").ljust(w - 2) + " "
                                        for c, w in zip(cells, widths)) + "│")
    table_width = sum(widths) + _EDGE
    head = _divide(title, table_width, crop=False) if title else []
    if head is None:
        return None
    centred = [(" " * ((table_width - len(t.rstrip())) // 2) + t.rstrip()).ljust(table_width) for t in head]
    top = "┌" + "┬".join("─" * w for w in widths) + "┐"
    bottom = "└" + "┴".join("─" * w for w in widths) + "┘"
    return "\n".join([*centred, top, *body, bottom]) + "\n"
