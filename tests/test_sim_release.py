"""``simulator.engine.simulate`` pauses the garbage collector for its event loop and lets go of the
run's state when it returns: the collector's settings come back as they were, and the run leaves no
reference cycles holding its cost-model op lists (they were freed only by a full collection,
~0.3 s of a 100k-request process at its exit). Each check runs in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CODE = r"""
import gc, json
from clustersim.api import simulate
gc.collect()
before = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())
gc.set_debug(gc.DEBUG_SAVEALL)
res = simulate("examples/{example}", ["workload.num_requests=300"])
gc.collect()
kinds = {{}}
for o in gc.garbage:
    kinds[type(o).__name__] = kinds.get(type(o).__name__, 0) + 1
gc.set_debug(0)
after = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())
print(json.dumps({{"before": before, "after": after, "finished": int(res.summary["counts"]["finished"]),
                  "garbage": kinds}}))
"""


def _probe(example: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _CODE.format(example=example)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.rstrip().rpartition("\n")[2])


def test_simulate_restores_the_collector_and_leaves_no_op_cycles():
    for example in ("llama-3.1-70b_h200_tp4_colocated.yaml", "deepseek-v3_h800_pd-disagg.yaml"):
        got = _probe(example)
        assert got["finished"] == 300
        assert got["after"] == got["before"]
        garbage = got["garbage"]
        for kind in ("Op", "OpCost", "Server", "Simulation", "InstanceCost", "BlockMemo", "StepCostCache"):
            assert garbage.get(kind, 0) == 0, (example, kind, garbage)
