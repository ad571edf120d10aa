"""The deployment schema: what a user writes in ``deploy.yaml``.

A deployment names a cluster (hardware catalog) and a model (workloads catalog), lays out
serving pools (colocated, or prefill + decode) with attention and MoE parallelism set apart
(DeepSeek's attention-DP + MoE-EP), and gives the scheduler, workload, SLOs and seed.

Structure is checked by pydantic (frozen, ``extra="forbid"``); cross-field rules that need
the catalogs (divisibility against the model, fit in the cluster and in device memory) live
in ``workloads.deployment_rules``. Every error is reported as ``file:line:col: field: problem
(valid: ...)`` through ``load_deployment``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workloads.yamlloc import (
    ConfigError,
    anchor_directory,
    format_validation_error,
    load_yaml_with_locations,
    parse_yaml_with_locations,
    set_path,
)

DTYPES = ("bf16", "fp8", "int8")
PROFILE_FIELD_HELP = ("calibration profile: 'default' (the device's shipped one, else the H200 one transferred), "
                      "a shipped name, a directory written by clustersim calibrate (relative to this file), "
                      "or null (roofline only)")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AttentionParallel(_Frozen):
    """Attention-side parallelism of one instance: tp x dp x sp devices (pp stages apart)."""

    tp: int = Field(1, ge=1)
    dp: int = Field(1, ge=1)
    sp: int = Field(1, ge=1)
    sp_kind: Literal["ulysses", "ring"] = "ulysses"


class MoeParallel(_Frozen):
    """MoE-side parallelism: experts sharded over ep devices, each expert split tp ways."""

    ep: int = Field(1, ge=1)
    tp: int = Field(1, ge=1)
    redundant_experts: int = Field(0, ge=0)
    imbalance: float = Field(1.0, ge=1.0, description="busiest-rank load / mean load")


class Pool(_Frozen):
    """A pool of identical instances (prefill, decode, or colocated)."""

    instances: int = Field(1, ge=1)
    devices_per_instance: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    attention: AttentionParallel = AttentionParallel()
    moe: MoeParallel = MoeParallel()
    micro_batches: Literal[1, 2] = 1
    kernels: Literal["fused", "eager"] = Field(
        "fused", description="glue kernels: a serving engine's fused ones, or plain torch ops (workloads.ops_blocks)")
    max_batch_size: int = Field(256, ge=1)
    max_tokens_per_iteration: int = Field(8192, ge=1)
    chunked_prefill: bool = True
    mtp_depth: int = Field(0, ge=0)
    mtp_acceptance: float = Field(0.0, ge=0.0, le=1.0)
    draft_model: str | None = None  # speculative decoding with a separate draft model
    draft_tokens: int = Field(0, ge=0, description="tokens the draft proposes per step")
    draft_accepted_tokens: float = Field(0.0, ge=0.0, description="expected accepted draft tokens per step")

    @property
    def speculative_depth(self) -> int:
        """Draft tokens verified per decode step (MTP depth or draft length)."""
        return self.mtp_depth or self.draft_tokens
    kv_memory_fraction: float = Field(0.9, gt=0.0, le=1.0)

    @property
    def devices(self) -> int:
        return self.instances * self.devices_per_instance


class ColocatedServing(_Frozen):
    mode: Literal["colocated"]
    pool: Pool


class DisaggregatedServing(_Frozen):
    mode: Literal["disaggregated"]
    prefill: Pool
    decode: Pool


Serving = Annotated[Union[ColocatedServing, DisaggregatedServing], Field(discriminator="mode")]


class Scheduler(_Frozen):
    router: Literal["round_robin", "least_outstanding", "kv_aware"] = "least_outstanding"
    preemption: Literal["recompute", "swap"] = "recompute"


class FixedLength(_Frozen):
    kind: Literal["fixed"]
    tokens: int = Field(ge=1)


class UniformLength(_Frozen):
    kind: Literal["uniform"]
    min_tokens: int = Field(ge=1)
    max_tokens: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "UniformLength":
        if self.max_tokens < self.min_tokens:
            raise ValueError(f"max_tokens {self.max_tokens} < min_tokens {self.min_tokens}")
        return self


class LognormalLength(_Frozen):
    kind: Literal["lognormal"]
    mean_tokens: float = Field(gt=0)
    cv: float = Field(gt=0)
    max_tokens: int = Field(131072, ge=1)


Length = Annotated[Union[FixedLength, UniformLength, LognormalLength], Field(discriminator="kind")]


class PoissonArrival(_Frozen):
    kind: Literal["poisson"]
    rate_per_s: float = Field(gt=0)


class GammaArrival(_Frozen):
    kind: Literal["gamma"]
    rate_per_s: float = Field(gt=0)
    cv: float = Field(gt=0, description="coefficient of variation of inter-arrival times")


class TraceArrival(_Frozen):
    """Arrivals and lengths replayed from a CSV / JSON-lines file. A relative ``path`` in a YAML
    file is relative to that file's folder (``resolve_trace_path``); one given with ``--set``
    or in a YAML string, to the working directory."""

    kind: Literal["trace"]
    path: str


Arrival = Annotated[Union[PoissonArrival, GammaArrival, TraceArrival], Field(discriminator="kind")]


class Workload(_Frozen):
    arrival: Arrival
    prompt_tokens: Length = FixedLength(kind="fixed", tokens=1024)
    output_tokens: Length = FixedLength(kind="fixed", tokens=256)
    prefix_cache_hit_rate: float = Field(0.0, ge=0.0, lt=1.0)
    num_requests: int | None = Field(None, ge=1)
    duration_s: float | None = Field(None, gt=0)
    samples_per_request: int = Field(1, ge=1)
    sample_policy: Literal["all", "first_finish", "majority_vote", "beam"] = "all"

    @model_validator(mode="after")
    def _bounded(self) -> "Workload":
        if self.num_requests is None and self.duration_s is None and self.arrival.kind != "trace":
            raise ValueError("give num_requests or duration_s (the run must end)")
        return self


class Slo(_Frozen):
    ttft_ms: float = Field(2000.0, gt=0)
    tpot_ms: float = Field(50.0, gt=0)
    percentile: float = Field(90.0, gt=0, le=100)


class Deployment(_Frozen):
    """A whole deployment file, validated."""

    name: str = "deployment"
    cluster: str
    model: str
    weight_dtype: Literal["bf16", "fp8", "int8"] = "bf16"
    kv_dtype: Literal["bf16", "fp8", "int8"] = "bf16"
    activation_dtype: Literal["bf16", "fp8", "int8"] = "bf16"
    serving: Serving
    scheduler: Scheduler = Scheduler()
    workload: Workload
    slo: Slo = Slo()
    seed: int = 0
    profile: str | None = Field("default", description=PROFILE_FIELD_HELP)

    def pools(self) -> dict[str, Pool]:
        if isinstance(self.serving, ColocatedServing):
            return {"pool": self.serving.pool}
        return {"prefill": self.serving.prefill, "decode": self.serving.decode}

    def pool_path(self, role: str) -> tuple[str, ...]:
        return ("serving", role)


def parse_deployment(data: Any, filename: str, locs: dict) -> Deployment:
    """Validate already-parsed YAML data into a Deployment (structure only)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}:1:1: <root>: expected a mapping of deployment fields")
    try:
        return Deployment.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, filename, locs, Deployment)) from None


def resolve_trace_path(data: Any, yaml_path: str | Path) -> None:
    """Make a relative ``workload.arrival.path`` in parsed YAML ``data`` absolute against the
    folder of ``yaml_path``, in place (absolute paths stay). Call before applying ``--set``
    overrides, whose values are relative to the working directory."""
    workload = data.get("workload") if isinstance(data, dict) else None
    arrival = workload.get("arrival") if isinstance(workload, dict) else None
    if not isinstance(arrival, dict) or arrival.get("kind") != "trace" or not isinstance(arrival.get("path"), str):
        return
    trace = Path(arrival["path"]).expanduser()
    if not trace.is_absolute():
        arrival["path"] = os.path.normpath(os.path.abspath(Path(yaml_path).parent / trace))


def load_deployment(path: str | Path, overrides: Iterable[str] = (), check: bool = True) -> Deployment:
    """Load, override (``a.b.c=value``), validate and rule-check a deployment file.

    Raises ConfigError (a ValueError) with a one-line ``file:line:col: field: problem`` message.
    """
    data, locs = load_yaml_with_locations(path)
    filename = str(path)
    resolve_trace_path(data, path)
    anchor_directory(data, "profile", Path(path).parent)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. serving.pool.instances=2")
        key, value = item.split("=", 1)
        if not isinstance(data, dict):
            data = {}
        set_path(data, key.strip(), value.strip())
    dep = parse_deployment(data, filename, locs)
    if check:
        from workloads.deployment_rules import check_deployment

        check_deployment(dep, filename, locs)
    return dep


def load_deployment_text(text: str, filename: str = "<string>", check: bool = True) -> Deployment:
    """Like load_deployment, from a string (tests, API users)."""
    data, locs = parse_yaml_with_locations(text, filename)
    dep = parse_deployment(data, filename, locs)
    if check:
        from workloads.deployment_rules import check_deployment

        check_deployment(dep, filename, locs)
    return dep
