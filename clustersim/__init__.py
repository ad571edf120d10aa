"""clustersim: simulator and planner for large LLM deployments.

This thin facade is the public Python API (``clustersim.api``: jobs and one dispatcher,
``run_job``) and the home of the ``clustersim`` CLI, which calls only that API. It sits on top
of the layers (hardware, workloads, calibration, simulator, planner), which never import it
back. Jobs return data; ``clustersim.outputs`` is the one writer of files. The names below are
``clustersim.api``'s, resolved lazily so that ``clustersim --help`` imports nothing heavy.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

#: the public names, all from ``clustersim.api`` (the one public surface)
_EXPORTS = {name: "clustersim.api" for name in (
    "run_job", "SimulateJob", "PlanJob", "WhatIfJob", "EstimateJob", "ValidateJob", "CheckJob", "CalibrateJob",
    "Outcome", "calibrate", "deployment_report", "hardware_report", "model_report", "validate", "simulate", "plan",
    "estimate_attention", "estimate_collective", "estimate_dispatch", "estimate_moe_layer", "estimate_serving",
    "estimate_step")}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'clustersim' has no attribute {name!r}")
