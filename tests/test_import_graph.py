"""The module import graph of the packages, read from the source (AST): no cycles, layers downwards.

Every ``import`` and ``from ... import`` counts, at module level, inside functions and under
``TYPE_CHECKING`` alike (a function-level or annotation-only import is how a cycle hides), and
so does a module named in a string that a package's ``__init__`` loads with ``import_module``
(its lazy exports).
A package's ``__init__`` is a module of its own: ``from simulator.training import x`` in
``simulator.training.y`` is an edge to it.
Layers (DESIGN.md): hardware < workloads < calibration < simulator < planner < clustersim.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("hardware", "workloads", "calibration", "simulator", "planner", "clustersim")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in LAYERS:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _owner(name: str, mods: dict) -> str | None:
    """The module of ours that ``name`` (a module, or a name inside one) lives in."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.AST, module: str, is_pkg: bool, mods: dict) -> set[str]:
    if isinstance(node, ast.Import):
        return {t for a in node.names if (t := _owner(a.name, mods))}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    out = set()
    for a in node.names:
        sub = f"{source}.{a.name}"
        t = sub if sub in mods else _owner(source, mods)  # a submodule, or a name of the module
        if t:
            out.add(t)
    return out


def _lazy_targets(tree: ast.AST, mods: dict) -> set[str]:
    """Modules a package imports by name at run time, its lazy exports (``clustersim/__init__.py``):
    where its ``__init__`` calls ``import_module``, each string constant naming a module of ours."""
    calls = any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "import_module"
                for n in ast.walk(tree))
    return {n.value for n in ast.walk(tree) if calls and isinstance(n, ast.Constant) and n.value in mods}


@functools.lru_cache(maxsize=1)
def import_graph() -> dict[str, frozenset[str]]:
    """module -> the modules of ours it imports (anywhere in its source)."""
    mods = _modules()
    graph = {}
    for m, f in mods.items():
        tree = ast.parse(f.read_text(encoding="utf-8"), str(f))
        edges: set[str] = set()
        for node in ast.walk(tree):
            edges |= _targets(node, m, f.name == "__init__.py", mods)
        if f.name == "__init__.py":
            edges |= _lazy_targets(tree, mods)
        edges.discard(m)
        graph[m] = frozenset(edges)
    return graph


def strongly_connected(graph: dict) -> list[frozenset[str]]:
    """Components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(frozenset(comp))
    return found


def test_no_import_cycles():
    cycles = [sorted(c) for c in strongly_connected(import_graph())]
    assert not cycles, f"import cycles (function-level and TYPE_CHECKING imports included): {cycles}"


def test_layers_import_downwards_only():
    rank = {p: i for i, p in enumerate(LAYERS)}
    upward = [f"{m} -> {t}" for m, ts in sorted(import_graph().items()) for t in sorted(ts)
              if rank[t.split(".")[0]] > rank[m.split(".")[0]]]
    assert not upward, f"imports up the layers: {upward}"


def test_the_graph_sees_function_level_imports_and_cycles():
    """The checker itself: a function-level import is an edge, and a two-module loop is found."""
    mods = _modules()
    tree = ast.parse("def f():\n    from planner.space import PoolChoice\n    import workloads.layout\n"
                     "    from . import feasibility\n    from simulator import training\n")
    edges = set().union(*(_targets(n, "planner.x", False, mods) for n in ast.walk(tree)))
    assert edges == {"planner.space", "workloads.layout", "planner.feasibility", "simulator.training"}
    lazy = ast.parse("_EXPORTS = {'simulate': 'clustersim.api', 'x': 'no.such'}\n"
                     "def __getattr__(n):\n    return import_module(_EXPORTS[n])\n")
    assert _lazy_targets(lazy, mods) == {"clustersim.api"}
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []
