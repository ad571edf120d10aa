"""The pipeline schedules the training simulator runs, one module each, and their registry.

``REGISTRY`` maps every name of ``workloads.pipeline_schedules.PIPELINE_SCHEDULES`` (the YAML
``parallelism.pp_schedule`` choices) to its ``PipelineSchedule``; ``get_schedule(name)`` looks
one up (``ValueError`` listing the valid names otherwise). A new schedule: one module here (a
``PipelineSchedule``, usually a ``ScheduleBase`` subclass) + its line in ``REGISTRY`` + its
line in ``PIPELINE_SCHEDULES``; ``tests/test_pipeline_schedules.py`` checks that the two
registries hold the same names and runs every schedule through the event simulation and the
longest-path pass.
"""

from __future__ import annotations

from simulator.training.schedules.base import KINDS, Action, Part, PipelineSchedule, ScheduleBase
from simulator.training.schedules.dualpipe import DualPipe
from simulator.training.schedules.dualpipev import DualPipeV
from simulator.training.schedules.one_f_one_b import OneFOneB
from simulator.training.schedules.zb1p import ZB1P
from workloads.pipeline_schedules import PP_SCHEDULE_NAMES

__all__ = ["KINDS", "Action", "Part", "PipelineSchedule", "ScheduleBase", "REGISTRY", "get_schedule"]

#: name -> schedule; one line per schedule
REGISTRY: dict[str, PipelineSchedule] = {s.name: s for s in (
    OneFOneB(),
    ZB1P(),
    DualPipe(),
    DualPipeV(),
)}


def get_schedule(name: str) -> PipelineSchedule:
    """The schedule registered as ``name``."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown pipeline schedule {name!r} (valid: {', '.join(PP_SCHEDULE_NAMES)})") from None
