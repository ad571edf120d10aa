"""The numbers the READMEs quote are the code's (issue 11, item 22): every
``<!-- generated:NAME -->`` block equals what ``docs/gen_numbers.py`` computes now.

When this fails, run ``python docs/gen_numbers.py`` and commit the READMEs it rewrites.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_generator():
    spec = importlib.util.spec_from_file_location("docs_gen_numbers", ROOT / "docs" / "gen_numbers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def test_every_marker_names_a_block_and_every_block_is_marked_once():
    marked = gen.markers()
    for path, names in marked.items():
        for name in names:
            assert name in gen.BLOCKS, f"{path}: unknown generated block {name!r}"
            assert gen.BLOCKS[name].path == path, f"{name} is marked in {path}, generated for {gen.BLOCKS[name].path}"
    for name, block in gen.BLOCKS.items():
        assert marked.get(block.path, []).count(name) == 1, f"{block.path}: block {name} marked {marked.get(block.path)}"


@pytest.mark.parametrize("name", sorted(gen.BLOCKS))
def test_committed_block_equals_the_code(name):
    block = gen.BLOCKS[name]
    committed = gen.current(name, (ROOT / block.path).read_text(encoding="utf-8"))
    assert committed == block.make(), f"{block.path}: block {name} is stale; run python docs/gen_numbers.py"


def test_render_replaces_only_the_block():
    text = "a <!-- generated:training_dsv3 -->\nold\n<!-- /generated --> b <!-- generated:x -->y<!-- /generated -->"
    out = gen.render("training_dsv3", text, "new")
    assert out == "a <!-- generated:training_dsv3 -->\nnew\n<!-- /generated --> b <!-- generated:x -->y<!-- /generated -->"
    assert gen.current("training_dsv3", out) == "new"
