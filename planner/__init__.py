"""clustersim planner: search serving layouts under SLOs, rank them analytically, verify them.

Public API (names resolve lazily so ``import planner`` stays light):

* ``load_plan(path, overrides=()) -> PlanConfig`` (ConfigError with file:line:col)
* ``plan(plan_config, *, executor=None, seed=None, verify_top=None) -> PlanResult``
* ``evaluate(point, seed) -> dict``: the pure per-layout function sweeps run
* ``deployment_to_yaml(dep) -> str``
* ``training_search(model, cluster, devices, ...) -> DataFrame``: training layouts by tokens/day
* ``planner.whatif``: capacity planning, one-parameter sweeps, hardware comparison
* ``planner.executors``: ``LocalExecutor`` (default), ``RayExecutor``, ``default_executor``
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "PlanConfig": "planner.schema",
    "load_plan": "planner.schema",
    "load_plan_text": "planner.schema",
    "plan": "planner.search",
    "evaluate": "planner.search",
    "evaluate_chunk": "planner.search",
    "point_seed": "planner.search",
    "PlanResult": "planner.result",
    "deployment_to_yaml": "planner.result",
    "default_executor": "planner.executors",
    "LocalExecutor": "planner.executors",
    "SerialExecutor": "planner.executors",
    "RayExecutor": "planner.executors",
    "training_search": "planner.training_search",
}
__all__ = sorted(_EXPORTS) + ["whatif"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    if name == "whatif":
        return import_module("planner.whatif")
    raise AttributeError(f"module 'planner' has no attribute {name!r}")
