"""clustersim: simulator and planner for large LLM deployments.

This thin facade is the public Python API and the home of the ``clustersim`` CLI. It sits on
top of the layers (hardware, workloads, calibration, simulator, planner), which never import
it back. Functions here return data; only the CLI writes files or prints. Names are resolved
lazily so that ``clustersim --help`` imports nothing heavy.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "calibrate": "clustersim.api",
    "deployment_report": "clustersim.api",
    "hardware_report": "clustersim.api",
    "model_report": "clustersim.api",
    "validate": "clustersim.api",
    "simulate": "clustersim.api",
    "plan": "clustersim.api",
    "estimate_attention": "clustersim.estimate",
    "estimate_collective": "clustersim.estimate",
    "estimate_dispatch": "clustersim.estimate",
    "estimate_moe_layer": "clustersim.estimate",
    "estimate_serving": "clustersim.estimate",
    "estimate_step": "clustersim.estimate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'clustersim' has no attribute {name!r}")
