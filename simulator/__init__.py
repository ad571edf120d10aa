"""Serving simulator: the step cost model and the discrete-event engine.

``simulate(deployment) -> SimResult`` runs a deployment (see simulator/README.md);
``to_chrome_trace(result)`` turns a result into a Chrome/Perfetto trace dict. The cost
model lives in ``simulator.costmodel`` and ``simulator.instance``.
"""

from __future__ import annotations

__all__ = ["simulate", "SimResult", "to_chrome_trace"]


def __getattr__(name: str):  # lazy: importing the package does not pull simpy/pandas
    if name == "simulate":
        from simulator.engine import simulate

        return simulate
    if name in ("SimResult", "to_chrome_trace"):
        from simulator import result

        return getattr(result, name)
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")
