"""``--report``: one self-contained HTML page per command (plotly, the ``report`` extra).

Each builder takes what its command computed and returns the page's text; nothing here
writes files (``clustersim.outputs`` does, atomically):

* ``simulate_report(kind, config, result, summary)``: serving or training;
* ``plan_report(result)`` / ``training_plan_report(table)``;
* ``whatif_report(kind, df)``;
* ``check_report(run)``: ``clustersim check``.
"""

from __future__ import annotations

from typing import Any

from clustersim.report.page import PLOTLY_MISSING, require_plotly

__all__ = ["simulate_report", "plan_report", "training_plan_report", "whatif_report", "check_report",
           "require_plotly", "PLOTLY_MISSING"]


def simulate_report(kind: str, config: Any, result: Any, summary: dict) -> str:
    require_plotly()
    if kind == "serving":
        from clustersim.report.serving import serving_report

        return serving_report(config, result, summary)
    from clustersim.report.training import training_report

    return training_report(config, result, summary)


def plan_report(result: Any) -> str:
    require_plotly()
    from clustersim.report.plan import plan_report as build

    return build(result)


def training_plan_report(table: Any, name: str) -> str:
    require_plotly()
    from clustersim.report.plan import training_plan_report as build

    return build(table, name)


def whatif_report(kind: str, df: Any, plan: Any) -> str:
    require_plotly()
    from clustersim.report.whatif import whatif_report as build

    return build(kind, df, plan)


def check_report(run: Any) -> str:
    require_plotly()
    from clustersim.report.check import check_report as build

    return build(run)
