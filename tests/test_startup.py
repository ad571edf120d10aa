"""Start-up: short commands import only what they use (issue 15: ``clustersim --help`` and
``estimate collective``/``dispatch`` in a fraction of a second). Each command runs as a whole
``clustersim`` process with its default options; the test reads which heavy modules it imported,
not how long it took (timings belong in ``benchmarks/bench_speed.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: libraries a short command must not import: the table reader, the statistics package, the
#: event loop (and pandas' Arrow backend), numpy (an estimate of the fabric reads no profile
#: table: the profile's lookups and the collectives' placement arrays import it when used), the
#: table printer (``clustersim.texttable`` writes its bytes) and pydantic (the CLI reads plain
#: options itself; the hardware catalog loads from its snapshot) where no model config is read
HEAVY = ("pandas", "scipy", "simpy", "pyarrow", "numpy", "rich.console", "pydantic")

_PROBE = """
import json, sys
sys.argv = ["clustersim", *json.loads(sys.argv[1])]
from clustersim.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
sys.stdout.flush()
print("\\n" + json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def _run(args: list[str]) -> tuple[str, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text, _, last = out.stdout.rstrip().rpartition("\n")
    return text, json.loads(last)


def test_help_imports_no_heavy_library():
    text, probe = _run(["--help"])
    assert probe == {"code": 0, "heavy": []}
    assert "simulate" in text and "estimate" in text


@pytest.mark.parametrize("args,heavy", [
    (["estimate", "collective", "--hardware", "h800-mpft", "--gpus", "16384", "--op", "all_to_all",
      "--bytes-per-rank", "1e6", "--json"], []),
    (["estimate", "dispatch", "--hardware", "h800-mpft", "--ep", "256", "--tokens-per-rank", "128", "--json"],
     ["pydantic"]),  # the model catalog (workloads.models) is pydantic
], ids=["collective", "dispatch"])
def test_estimates_of_the_fabric_import_no_table_reader(args, heavy):
    text, probe = _run(args)
    assert probe == {"code": 0, "heavy": heavy}
    result = json.loads(text)
    assert result["seconds"] > 0 and result["hardware"] == "h800-mpft"


def test_a_table_is_printed_without_rich():
    text, probe = _run(["estimate", "collective", "--hardware", "h800-mpft", "--gpus", "64", "--op", "all_reduce",
                        "--bytes-per-rank", "1e8"])
    assert probe == {"code": 0, "heavy": []}
    assert "collective estimate" in text and "│ algorithm" in text
