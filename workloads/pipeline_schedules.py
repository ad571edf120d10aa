"""The names of the training pipeline schedules: what ``parallelism.pp_schedule`` may say.

Names (and the facts the training-job schema needs of each: stages per device, the size of
the simulated step, the shape rules) live here, and the schedules themselves in
``simulator.training.schedules``, because the schema (``workloads.training``) may not import
upward. The names are a ``PolicyNames`` like the serving policies' (``workloads.policy_names``):
``PpScheduleName`` is the schema type, and ``simulator.training.schedules.REGISTRY`` (a
``simulator.registry.PolicyRegistry``) binds every name to exactly one ``PipelineSchedule``
class, refusing at import a name without one or one without a name.

A new schedule is one module in ``simulator/training/schedules/`` plus one line in each
registry: its ``ScheduleFacts`` in ``PIPELINE_SCHEDULES`` below (which puts it in the YAML
choices) and its class in ``simulator.training.schedules.REGISTRY``.
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads.policy_names import PolicyNames

__all__ = ["ScheduleFacts", "PIPELINE_SCHEDULES", "PP_SCHEDULES", "PP_SCHEDULE_NAMES", "PpScheduleName"]


@dataclass(frozen=True, slots=True)
class ScheduleFacts:
    """What the schema knows of a schedule without simulating it.

    ``label``: the schedule's name in messages. ``stages_per_device``: layer slices one device
    of the pipeline holds for ``pp`` devices (2 for DualPipeV's V shape: the model is cut into
    2 x pp stages). ``actions_per_micro_batch_stage``: pipeline actions (F, B, W, F&B chunks)
    one micro-batch costs per device, rounded up from the schedule's action lists; times
    micro-batches x pp it bounds the size of the simulated step
    (``workloads.limits.MAX_PIPELINE_ACTIONS``). The shape rules: ``pp`` a multiple of
    ``pp_multiple``; micro-batches a multiple of ``micro_batch_multiple`` and at least
    ``min_micro_batches_per_pp`` x pp.
    """

    label: str
    stages_per_device: int
    actions_per_micro_batch_stage: int
    pp_multiple: int = 1
    micro_batch_multiple: int = 1
    min_micro_batches_per_pp: int = 0

    def stages(self, pp: int) -> int:
        """Model stages (layer slices) the schedule cuts the model into for ``pp`` devices."""
        return self.stages_per_device * pp

    def problems(self, pp: int, micro_batches: int) -> list[tuple[str, str]]:
        """(``pp`` | ``micro_batches``, problem) for every shape rule ``pp`` devices and
        ``micro_batches`` per step break."""
        out = []
        if pp < 1 or pp % self.pp_multiple:
            even = "an even pp" if self.pp_multiple == 2 else f"pp >= 1 and a multiple of {self.pp_multiple}"
            out.append(("pp", f"{self.label} needs {even}, got {pp}"))
        low, k = self.min_micro_batches_per_pp * pp, self.micro_batch_multiple
        if micro_batches < max(1, low) or micro_batches % k:
            floor = f"{self.min_micro_batches_per_pp} x pp = {low}" if low else "1"
            if k == 1:
                msg = f"needs >= {floor} micro-batches"
            else:
                msg = f"needs {'an even number' if k == 2 else f'a multiple of {k}'} of micro-batches >= {floor}"
            out.append(("micro_batches", f"{self.label} {msg}, got {micro_batches}"))
        return out


#: every schedule ``parallelism.pp_schedule`` may name, in the order the YAML error lists them
PIPELINE_SCHEDULES: dict[str, ScheduleFacts] = {
    "1f1b": ScheduleFacts("1F1B", stages_per_device=1, actions_per_micro_batch_stage=2),
    "zb1p": ScheduleFacts("ZB1P", stages_per_device=1, actions_per_micro_batch_stage=3),
    "dualpipe": ScheduleFacts("DualPipe", stages_per_device=1, actions_per_micro_batch_stage=2, pp_multiple=2,
                              micro_batch_multiple=2, min_micro_batches_per_pp=2),
    "dualpipev": ScheduleFacts("DualPipeV", stages_per_device=2, actions_per_micro_batch_stage=6,
                               min_micro_batches_per_pp=2),
}

#: ``parallelism.pp_schedule``: the pipeline schedule (``simulator.training.schedules``)
PP_SCHEDULES = PolicyNames("pipeline schedule", PIPELINE_SCHEDULES)
PP_SCHEDULE_NAMES: tuple[str, ...] = PP_SCHEDULES.names
#: the schema type of ``parallelism.pp_schedule``
PpScheduleName = PP_SCHEDULES.field()
