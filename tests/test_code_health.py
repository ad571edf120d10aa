"""Done-when checks of the redesign (issue 13), read from the source with ``ast``:

* no function (or method) in the packages is over 80 lines (``end_lineno - lineno + 1``);
* no private name (``_x``, not a dunder) is imported from another module of ours, neither by
  ``from m import _x`` nor as ``m._x`` on an imported module;
* files are written by two modules only: ``clustersim.outputs`` (every result file of the
  commands) and, below the facade, ``calibration.store`` (the profile directories that
  ``calibrate`` measures into; calibration may not import clustersim);
* the CLI calls only ``clustersim.api``, and only its public names.

Import cycles are ``tests/test_import_graph.py``'s.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from test_import_graph import LAYERS, ROOT, _modules, _owner

MAX_FUNCTION_LINES = 80
#: the only modules that create, replace or remove files
WRITERS = {"clustersim.outputs", "calibration.store"}


@functools.lru_cache(maxsize=1)
def _trees() -> dict[str, tuple[Path, ast.Module]]:
    return {m: (f, ast.parse(f.read_text(encoding="utf-8"), str(f))) for m, f in _modules().items()}


def _where(f: Path, node: ast.AST) -> str:
    return f"{f.relative_to(ROOT)}:{node.lineno}"


# ------------------------------------------------------------------ function length
def long_functions(tree: ast.AST) -> list[tuple[int, str, int]]:
    """(line, name, length) of every def over ``MAX_FUNCTION_LINES`` lines."""
    return [(n.lineno, n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]


def test_no_function_over_80_lines():
    found = [f"{f.relative_to(ROOT)}:{line} {name} ({n} lines)"
             for f, tree in _trees().values() for line, name, n in long_functions(tree)]
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines: {found}"


# ------------------------------------------------------------------ private names
def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _source(node: ast.ImportFrom, module: str, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def private_imports(module: str, is_pkg: bool, tree: ast.AST, mods: dict) -> list[tuple[int, str]]:
    """(line, what) for each private name of another module of ours that ``module`` uses."""
    found, aliases = [], {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            for a in n.names:
                if _owner(a.name, mods) == a.name:
                    aliases[a.asname or a.name] = a.name
        elif isinstance(n, ast.ImportFrom):
            src = _source(n, module, is_pkg)
            for a in n.names:
                if f"{src}.{a.name}" in mods:  # a submodule: its attributes are checked below
                    aliases[a.asname or a.name] = f"{src}.{a.name}"
                elif _private(a.name) and _owner(src, mods) not in (None, module):
                    found.append((n.lineno, f"from {src} import {a.name}"))
    for n in ast.walk(tree):
        if (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases
                and _private(n.attr) and aliases[n.value.id] != module):
            found.append((n.lineno, f"{aliases[n.value.id]}.{n.attr}"))
    return found


def test_no_private_name_imported_from_another_module():
    mods = _modules()
    found = [f"{f.relative_to(ROOT)}:{line}: {what}" for m, (f, tree) in _trees().items()
             for line, what in private_imports(m, f.name == "__init__.py", tree, mods)]
    assert not found, f"private names used across modules (make them public where shared): {found}"


# ------------------------------------------------------------------ file writers
_WRITE_METHODS = {"write_text", "write_bytes", "mkdir", "makedirs", "unlink", "rmdir", "touch", "savefig",
                  "symlink_to", "hardlink_to"}
#: DataFrame methods that write when given a path (``to_json`` only with ``path_or_buf=``: plotly's
#: ``pio.to_json(fig)`` returns text)
_FRAME_WRITERS = {"to_csv", "to_parquet", "to_excel", "to_pickle", "to_feather", "to_hdf"}
_MODULE_WRITERS = {("os", "open"), ("os", "replace"), ("os", "rename"), ("os", "remove"), ("os", "makedirs"),
                   ("os", "mkdir"), ("np", "save"), ("np", "savez"), ("numpy", "save"), ("torch", "save")}


def _mode(call: ast.Call) -> str | None:
    """The mode of ``open(file, mode)`` or ``path.open(mode)``, when it is a constant."""
    first = 0 if isinstance(call.func, ast.Attribute) else 1
    args = [*call.args[first:first + 1], *(k.value for k in call.keywords if k.arg == "mode")]
    return args[0].value if args and isinstance(args[0], ast.Constant) else None


def _in_memory(tree: ast.AST) -> set[str]:
    """Names bound to an in-memory file (``buf = io.BytesIO()``): writing to them writes no file."""
    return {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
            and getattr(n.value.func, "attr", getattr(n.value.func, "id", "")) in ("BytesIO", "StringIO")
            for t in n.targets if isinstance(t, ast.Name)}


def file_writes(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, call) of every call that creates, changes or removes a file or directory."""
    found, memory = [], _in_memory(tree)
    for n in ast.walk(tree):
        if not isinstance(n, ast.Call) or (n.args and isinstance(n.args[0], ast.Name) and n.args[0].id in memory):
            continue
        fn = n.func
        name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
        owner = fn.value.id if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) else None
        mode = _mode(n) if name == "open" and owner != "os" else None
        dumps_to = name in ("dump", "safe_dump") and (len(n.args) >= 2 or any(k.arg == "stream" for k in n.keywords))
        frame = isinstance(fn, ast.Attribute) and (
            (name in _FRAME_WRITERS and n.args) or (name in _FRAME_WRITERS | {"to_json"}
                                                    and any(k.arg == "path_or_buf" for k in n.keywords)))
        if (name in _WRITE_METHODS or (owner, name) in _MODULE_WRITERS or owner == "shutil" or dumps_to or frame
                or (mode is not None and any(c in mode for c in "wax+"))):
            found.append((n.lineno, f"{owner + '.' if owner else ''}{name}"))
    return found


def test_only_the_writers_write_files():
    found = [f"{f.relative_to(ROOT)}:{line}: {call}" for m, (f, tree) in _trees().items() if m not in WRITERS
             for line, call in file_writes(tree)]
    assert not found, f"files written outside {sorted(WRITERS)}: {found}"


# ------------------------------------------------------------------ the CLI's surface
def test_the_cli_calls_only_the_public_api():
    """``clustersim.cli`` imports nothing of ours but ``clustersim.api``, and uses only names the
    api publishes (``api.__all__``)."""
    from clustersim import api

    mods = _modules()
    f, tree = _trees()["clustersim.cli"]
    ours = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            ours |= {a.name for a in n.names if _owner(a.name, mods)}
        elif isinstance(n, ast.ImportFrom) and _owner(n.module or "", mods):
            ours |= {f"{n.module}.{a.name}" for a in n.names}
    assert ours == {"clustersim.api"}, f"the CLI imports {sorted(ours)}"
    used = {n.attr for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "api"}
    assert used and used <= set(api.__all__), f"not in clustersim.api.__all__: {sorted(used - set(api.__all__))}"
    assert all(hasattr(api, name) for name in api.__all__)


# ------------------------------------------------------------------ the checkers themselves
def test_the_checkers_find_what_they_look_for():
    mods = _modules()
    src = ("from simulator.engine import _ceil_blocks, Server\nfrom planner import analytic\n"
           "import hardware.catalog as cat\n\n"
           "def f(df, p):\n    analytic._x()\n    cat._fail('a', 'b', 'c')\n    p.write_text('x')\n"
           "    df.to_csv(p)\n    df.to_csv()\n    open(p, 'a')\n    open(p)\n    'a'.replace('a', 'b')\n"
           "    p.open('w')\n    p.open()\n    df.to_json(orient='records')\n    to_json(p)\n"
           "    buf = io.BytesIO()\n    fig.savefig(buf)\n    fig.savefig(p)\n"
           + "    pass\n" * MAX_FUNCTION_LINES)
    tree = ast.parse(src)
    assert [what for _, what in private_imports("planner.x", False, tree, mods)] == [
        "from simulator.engine import _ceil_blocks", "planner.analytic._x", "hardware.catalog._fail"]
    assert private_imports("simulator.engine", False, ast.parse("from simulator.engine import _x"), mods) == []
    assert [call for _, call in file_writes(tree)] == ["p.write_text", "df.to_csv", "open", "p.open", "fig.savefig"]
    assert [name for _, name, _ in long_functions(tree)] == ["f"]
    assert set(LAYERS) == {m.split(".")[0] for m in mods}
