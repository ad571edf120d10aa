"""clustersim: simulator and planner for large LLM deployments.

This thin facade is the public Python API and the home of the ``clustersim`` CLI. It sits on
top of the layers (hardware, workloads, calibration, simulator, planner), which never import
it back. Functions here return data; only the CLI writes files or prints.
"""

from __future__ import annotations

from clustersim.api import calibrate, deployment_report, hardware_report, model_report, validate
from clustersim.estimate import (
    estimate_attention,
    estimate_collective,
    estimate_dispatch,
    estimate_moe_layer,
    estimate_serving,
    estimate_step,
)

__all__ = [
    "calibrate",
    "deployment_report",
    "estimate_attention",
    "estimate_collective",
    "estimate_dispatch",
    "estimate_moe_layer",
    "estimate_serving",
    "estimate_step",
    "hardware_report",
    "model_report",
    "validate",
]
__version__ = "0.1.0"
