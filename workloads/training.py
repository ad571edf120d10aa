"""Training-job schema: what to train, on which cluster, with which parallel layout.

A :class:`TrainingJob` is a frozen pydantic model (``extra="forbid"``) validated at load, with
located errors (``job.yaml:7:5: parallelism.ep: 48 does not divide 256 routed experts ...``).
``load_training_job(path, overrides)`` reads YAML with ``--set a.b=c`` overrides; the
simulator (``simulator.training``) turns a job into a step time, tokens/day, MFU and memory.

Layout (devices = dp x pp x tp x sp x cp):

* ``dp``: data-parallel replicas of every pipeline stage; ``zero_stage`` 0-3 shards optimizer
  states (1), + gradients (2), + parameters (3) over them.
* ``tp``: tensor parallelism (attention heads, dense FFNs, shared experts, LM head).
* ``pp`` + ``pp_schedule``: pipeline stages and schedule. For ``dualpipev`` ``pp`` counts the
  devices of one pipeline (the model is cut into 2 x pp stages, two per device).
* ``ep``: expert parallelism; the EP group is carved out of a stage's dp x tp x sp x cp
  devices, so ``ep`` must divide them; experts are replicated over the rest (expert DP).
* ``sp`` + ``sp_kind``: sequence parallelism of attention, Ulysses (all-to-all of QKV and
  output; sp must divide the heads per TP rank) or ring attention (K/V passed round a ring).
* ``cp``: context parallelism (sequence split, K/V all-gathered per layer).

Batch: ``global_batch`` sequences of ``seq_len`` tokens per optimizer step;
``micro_batch_size`` sequences per micro-batch per data-parallel rank, so a pipeline runs
``global_batch / (dp x micro_batch_size)`` micro-batches per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hardware.catalog import get_cluster
from workloads import limits as L
from workloads.config_file import ConfigFile, apply_overrides, open_config, require_kind
from workloads.deployment import PROFILE_FIELD_HELP
from workloads.layout import Layout
from workloads.models import get_model
from workloads.yamlloc import ConfigError, dotted, format_validation_error, parse_yaml_with_locations
from workloads.pipeline_schedules import PIPELINE_SCHEDULES, PP_SCHEDULE_NAMES, PpScheduleName

__all__ = ["TrainingParallelism", "TrainingJob", "load_training_job", "parse_training_job", "pipeline_stages",
           "ConfigError"]

PP_SCHEDULES = PP_SCHEDULE_NAMES  # the registry's names (workloads.pipeline_schedules)
#: Pipeline actions (F, B, W, FB chunks) per micro-batch per device: the size of the simulated
#: step, bounded by MAX_PIPELINE_ACTIONS (``ScheduleFacts.actions_per_micro_batch_stage``).
_ACTIONS_PER_MICRO_BATCH_STAGE = {k: f.actions_per_micro_batch_stage for k, f in PIPELINE_SCHEDULES.items()}


class _Frozen(BaseModel):
    """Frozen, no unknown keys, and no infinite or NaN number anywhere (``allow_inf_nan=False``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def pipeline_stages(schedule: str, pp: int) -> int:
    """Model stages (layer slices) ``schedule`` cuts the model into for ``pp`` devices: two per
    device for DualPipeV (its V shape), one otherwise (``ScheduleFacts.stages``)."""
    return PIPELINE_SCHEDULES[schedule].stages(pp)


class TrainingParallelism(_Frozen):
    """Parallel degrees of a training job (see module docstring)."""

    dp: int = Field(default=1, ge=1, le=L.MAX_DEVICES)
    zero_stage: int = Field(default=1, ge=0, le=3)
    tp: int = Field(default=1, ge=1, le=L.MAX_DEVICES)
    pp: int = Field(default=1, ge=1, le=L.MAX_PIPELINE_STAGES)
    pp_schedule: PpScheduleName = "1f1b"
    ep: int = Field(default=1, ge=1, le=L.MAX_DEVICES)
    sp: int = Field(default=1, ge=1, le=L.MAX_DEVICES)
    sp_kind: Literal["ulysses", "ring"] = "ulysses"
    cp: int = Field(default=1, ge=1, le=L.MAX_DEVICES)

    # sizes are the layout's (one definition): devices of a stage, of the job, sequence split
    stage_devices = property(lambda self: self.layout.stage_devices)
    devices = property(lambda self: self.layout.devices)
    seq_split = property(lambda self: self.layout.seq_split)

    @property
    def pipeline_stages(self) -> int:
        """Layer slices the model is cut into (``pipeline_stages``: 2 x pp for DualPipeV)."""
        return pipeline_stages(self.pp_schedule, self.pp)

    @property
    def layout(self) -> Layout:
        """The job's ``Layout``: the EP group is carved out of a stage's dp x tp x sp x cp devices
        and experts are replicated over the rest (expert DP); each expert is split over the
        tp x sp x cp ranks an EP rank spans when ``ep`` is smaller than them."""
        inner = self.tp * self.sp * self.cp
        return Layout(tp=self.tp, dp=self.dp, sp=self.sp, sp_kind=self.sp_kind, cp=self.cp, ep=self.ep,
                      moe_tp=max(1, inner // self.ep), expert_dp=None, pp=self.pp)


class TrainingJob(_Frozen):
    """One training job. Optional knobs beyond the issue's list have defaults and say why.

    ``comm_sms``: SMs reserved for communication kernels while they overlap compute (None:
    the cost model's default). ``recompute``: activation recomputation (``selective``:
    norms, activations and MLA up-projections recomputed, GEMM inputs cached in the GEMM dtype,
    as DeepSeek-V3 §3.2.3 describes; ``full``: only layer inputs kept). ``optimizer_moment_dtype``
    and ``grad_dtype``: AdamW moments and gradient accumulation/communication precision
    (master weights are FP32). ``memory_limit_gb``: usable memory per device (default: HBM
    minus ``memory_reserved_gb`` for the CUDA context, NCCL/DeepEP buffers and fragmentation).
    ``layer_split``: layers per pipeline stage, ``even`` (contiguous, extra layers first) or
    ``balanced`` (the end stages, which carry the embedding, LM head and MTP module, take the
    decoder-layer counts that make the busiest device least busy; simulator/training/layers.py).
    ``ep_kernel_release``: the DeepEP release whose published throughput times the EP
    dispatch/combine (None: the newest; a job trained before a release runs the older kernels).
    """

    model: str
    cluster: str
    global_batch: int = Field(gt=0, le=L.MAX_GLOBAL_BATCH)
    seq_len: int = Field(gt=0, le=L.MAX_SEQUENCE_TOKENS)
    parallelism: TrainingParallelism = TrainingParallelism()
    precision: Literal["bf16", "fp8"] = "bf16"
    micro_batch_size: int = Field(default=1, gt=0, le=L.MAX_MICRO_BATCH_SIZE)
    comm_sms: int | None = Field(default=None, ge=0, le=L.MAX_COMM_SMS)
    recompute: Literal["none", "selective", "full"] = "selective"
    optimizer_moment_dtype: Literal["fp32", "bf16"] = "fp32"
    grad_dtype: Literal["fp32", "bf16"] = "fp32"
    moe_imbalance: float = Field(default=1.0, ge=1.0, le=L.MAX_MOE_IMBALANCE)
    include_mtp: bool = False
    layer_split: Literal["even", "balanced"] = "even"
    ep_kernel_release: Literal["2025-02", "2025-04"] | None = None
    memory_limit_gb: float | None = Field(default=None, gt=0, le=L.MAX_MEMORY_GB)
    memory_reserved_gb: float = Field(default=4.0, ge=0, le=L.MAX_MEMORY_GB)
    profile: str | None = Field(default="default", description=PROFILE_FIELD_HELP)

    @property
    def micro_batches(self) -> int:
        """Micro-batches one pipeline runs per optimizer step."""
        return self.global_batch // (self.parallelism.dp * self.micro_batch_size)

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len

    @model_validator(mode="after")
    def _check(self) -> "TrainingJob":
        errors = list(job_errors(self))
        if errors:
            path, msg = errors[0]
            raise _LocatedError(path, msg)
        return self


class _LocatedError(ValueError):
    def __init__(self, path: tuple, msg: str):
        super().__init__(f"{dotted(path)}: {msg}")
        self.path, self.msg = path, msg


#: where each ``Layout`` field stands in a training job's YAML (the expert split is derived from ep)
_LAYOUT_PATHS = {"moe_tp": ("parallelism", "ep"), "expert_dp": ("parallelism", "ep")}


def job_errors(job: TrainingJob) -> list[tuple[tuple, str]]:
    """(path, message) for every rule the job breaks, in a fixed order (first is raised): the
    layout's rules (``Layout.problems``), then the schedule's, the batch's and the cluster's."""
    out: list[tuple[tuple, str]] = []
    p = job.parallelism
    try:
        m = get_model(job.model)
    except LookupError as exc:
        return [(("model",), str(exc))]
    try:
        cluster = get_cluster(job.cluster)
    except LookupError as exc:
        return [(("cluster",), str(exc))]
    for field, problem in p.layout.problems(m, stages=p.pipeline_stages):
        out.append((_LAYOUT_PATHS.get(field, ("parallelism", field)), problem))
    facts = PIPELINE_SCHEDULES[p.pp_schedule]  # the schedule's shape rules (one home: ScheduleFacts.problems)
    out += [(("parallelism", "pp"), problem) for field, problem in facts.problems(p.pp, 1) if field == "pp"]
    if job.seq_len % p.seq_split:
        out.append((("seq_len",), f"{job.seq_len} is not divisible by sp x cp = {p.seq_split}"))
    out += _batch_errors(job)
    if p.devices > cluster.num_devices:
        out.append((("parallelism",), f"dp x pp x tp x sp x cp = {p.devices} devices exceed the "
                    f"{cluster.num_devices} of cluster {cluster.name}"))
    if job.precision not in cluster.device.peak_flops_per_s:
        out.append((("precision",), f"device {cluster.device.name} has no {job.precision} peak"))
    if job.comm_sms is not None and job.comm_sms >= cluster.device.compute_units:
        out.append((("comm_sms",), f"{job.comm_sms} leaves no SMs of the {cluster.device.compute_units} for compute"))
    return out


def _batch_errors(job: TrainingJob) -> list[tuple[tuple, str]]:
    """The global batch splits into micro-batches the schedule can run, within the simulation's bound."""
    p = job.parallelism
    if job.global_batch % (p.dp * job.micro_batch_size):
        return [(("global_batch",), f"{job.global_batch} sequences do not split into dp x micro_batch_size = "
                 f"{p.dp} x {job.micro_batch_size} (need a multiple of {p.dp * job.micro_batch_size})")]
    out: list[tuple[tuple, str]] = []
    mb = job.global_batch // (p.dp * job.micro_batch_size)
    out += [(("global_batch",), f"{problem} (global_batch / (dp x micro_batch_size))")
            for field, problem in PIPELINE_SCHEDULES[p.pp_schedule].problems(p.pp, mb) if field == "micro_batches"]
    actions = mb * p.pp * _ACTIONS_PER_MICRO_BATCH_STAGE[p.pp_schedule]
    if actions > L.MAX_PIPELINE_ACTIONS:
        out.append((("global_batch",), f"{mb:,} micro-batches x pp {p.pp} are about {actions:,} pipeline actions "
                    f"per step, more than one simulation may run (at most {L.MAX_PIPELINE_ACTIONS:,}; "
                    f"raise dp or micro_batch_size, or lower global_batch)"))
    return out


def parse_training_job(text: str, filename: str = "<string>", overrides: Sequence[str] = ()) -> TrainingJob:
    """Validate YAML text into a TrainingJob (``training:`` wrapper optional); ConfigError on bad input."""
    data, locs = parse_yaml_with_locations(text, filename)
    return _from_data(data, locs, filename, overrides)


def load_training_job(path: str | Path | ConfigFile, overrides: Sequence[str] = ()) -> TrainingJob:
    """Read a training-job YAML file (or a ``ConfigFile`` already read); ``overrides`` are
    ``a.b.c=value`` strings (``--set``)."""
    doc = open_config(path)
    require_kind(doc, "training")
    return _from_data(doc.copy_data(), doc.locs, doc.filename, overrides)


def _from_data(data, locs, filename: str, overrides: Sequence[str]) -> TrainingJob:
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}:1:1: <root>: a training job must be a mapping")
    prefix: tuple = ()
    if "training" in data and isinstance(data["training"], dict):
        data, prefix = data["training"], ("training",)
    data = apply_overrides(data, overrides, "training.global_batch=4096", strip_prefix="training.")
    try:
        return TrainingJob.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, filename, locs, TrainingJob, prefix)) from None
