"""The pipeline schedules the training simulator runs, one module each, and their registry.

``REGISTRY`` (a ``simulator.registry.PolicyRegistry``, as the serving policies have) binds
every name of ``workloads.pipeline_schedules.PP_SCHEDULES`` (the YAML ``parallelism.pp_schedule``
choices) to its ``PipelineSchedule`` class and refuses at import a name without a class or a
class without a name; ``get_schedule(name)`` gives one (``ValueError`` listing the valid names
otherwise). A new schedule: one module here (a ``PipelineSchedule``, usually a ``ScheduleBase``
subclass) + its line in ``REGISTRY`` + its ``ScheduleFacts`` line in ``PIPELINE_SCHEDULES``;
``tests/test_pipeline_schedules.py`` then runs it through the event simulation and the
longest-path pass.
"""

from __future__ import annotations

from simulator.training.schedules.base import KINDS, Action, Part, PipelineSchedule, ScheduleBase
from simulator.training.schedules.dualpipe import DualPipe
from simulator.training.schedules.dualpipev import DualPipeV
from simulator.training.schedules.one_f_one_b import OneFOneB
from simulator.training.schedules.zb1p import ZB1P
from simulator.registry import PolicyRegistry
from workloads.pipeline_schedules import PP_SCHEDULES

__all__ = ["KINDS", "Action", "Part", "PipelineSchedule", "ScheduleBase", "REGISTRY", "get_schedule"]

#: name -> schedule class; one line per schedule
REGISTRY = PolicyRegistry(PP_SCHEDULES, {
    "1f1b": OneFOneB,
    "zb1p": ZB1P,
    "dualpipe": DualPipe,
    "dualpipev": DualPipeV,
})


def get_schedule(name: str) -> PipelineSchedule:
    """The schedule registered as ``name`` (schedules hold no state; a new one each call)."""
    if not isinstance(name, str):
        raise ValueError(f"unknown pipeline schedule {name!r} (valid: {', '.join(REGISTRY.keys())})")
    return REGISTRY.make(name)
