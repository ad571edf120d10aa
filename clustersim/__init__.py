"""clustersim: simulator and planner for large LLM deployments.

This thin facade is the public Python API and the home of the ``clustersim`` CLI. It sits on
top of the layers (hardware, workloads, calibration, simulator, planner), which never import
it back. Functions here return data; only the CLI writes files or prints.
"""

from __future__ import annotations

from clustersim.api import (
    deployment_report,
    estimate_collective,
    hardware_report,
    model_report,
    validate,
)

__all__ = [
    "deployment_report",
    "estimate_collective",
    "hardware_report",
    "model_report",
    "validate",
]
__version__ = "0.1.0"
