"""The deployment schema: what a user writes in ``deploy.yaml``.

A deployment names a cluster (hardware catalog) and a model (workloads catalog), lays out
serving pools (colocated, or prefill + decode) with attention and MoE parallelism set apart
(DeepSeek's attention-DP + MoE-EP), and gives the scheduler, workload, SLOs and seed.

A pool's parallelism is written in YAML as its ``attention`` and ``moe`` blocks plus ``pp``
and ``micro_batches``; ``Pool.layout`` is the same as one ``workloads.layout.Layout`` (the value
the cost model and the planner hold), ``Pool.from_layout`` writes a Layout back in this shape,
and ``LAYOUT_PATHS`` says where each Layout field stands.

Structure is checked by pydantic (frozen, ``extra="forbid"``); cross-field rules that need
the catalogs (divisibility against the model, fit in the cluster and in device memory) live
in ``workloads.deployment_rules``. Every error is reported as ``file:line:col: field: problem
(valid: ...)`` through ``load_deployment``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from workloads import limits as L
from workloads.config_file import ConfigFile, apply_overrides, open_config, require_kind
from workloads.deployment_rules import check_deployment
from workloads.kernel_sets import KernelSetName
from workloads.layout import Layout
from workloads.policy_names import BatchPolicyName, PreemptionPolicyName, RouterName
from workloads.prefix import PrefixCache, PrefixSpec, prefix_cache_errors, workload_prefix_errors
from workloads.pool_roles import PoolRole
from workloads.yamlloc import ConfigError, format_validation_error, parse_yaml_with_locations

DTYPES = ("bf16", "fp8", "int8")
PROFILE_FIELD_HELP = ("calibration profile: 'default' (the device's shipped one, else the H200 one transferred), "
                      "a shipped name, a directory written by clustersim calibrate (relative to this file), "
                      "or null (roofline only)")


class _Frozen(BaseModel):
    """Frozen, no unknown keys, and no infinite or NaN number anywhere (``allow_inf_nan=False``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _without_none(data: Any, key: str) -> Any:
    """A dump without ``key`` when it is None: an optional section added later leaves the resolved
    config (and its hash in summary.json) of files without it as it was."""
    if isinstance(data, dict) and data.get(key, 0) is None:
        del data[key]
    return data


class AttentionParallel(_Frozen):
    """Attention-side parallelism of one instance: tp x dp x sp devices (pp stages apart)."""

    tp: int = Field(1, ge=1, le=L.MAX_DEVICES)
    dp: int = Field(1, ge=1, le=L.MAX_DEVICES)
    sp: int = Field(1, ge=1, le=L.MAX_DEVICES)
    sp_kind: Literal["ulysses", "ring"] = "ulysses"


class MoeParallel(_Frozen):
    """MoE-side parallelism: experts sharded over ep devices, each expert split tp ways."""

    ep: int = Field(1, ge=1, le=L.MAX_DEVICES)
    tp: int = Field(1, ge=1, le=L.MAX_DEVICES)
    redundant_experts: int = Field(0, ge=0, le=L.MAX_REDUNDANT_EXPERTS)
    imbalance: float = Field(1.0, ge=1.0, le=L.MAX_MOE_IMBALANCE, description="busiest-rank load / mean load")


#: where each ``Layout`` field stands in a pool's YAML (``devices``: the instance size). A
#: pool holds one copy of the experts (``expert_dp`` 1) and no context parallelism (``cp`` 1).
LAYOUT_PATHS: dict[str, tuple[str, ...]] = {
    "tp": ("attention", "tp"), "dp": ("attention", "dp"), "sp": ("attention", "sp"),
    "sp_kind": ("attention", "sp_kind"), "ep": ("moe", "ep"), "moe_tp": ("moe", "tp"),
    "redundant_experts": ("moe", "redundant_experts"), "pp": ("pp",), "micro_batches": ("micro_batches",),
    "devices": ("devices_per_instance",),
}


class Pool(_Frozen):
    """A pool of identical instances (prefill, decode, or colocated)."""

    instances: int = Field(1, ge=1, le=L.MAX_DEVICES)
    devices_per_instance: int = Field(1, ge=1, le=L.MAX_DEVICES)
    pp: int = Field(1, ge=1, le=L.MAX_PIPELINE_STAGES)
    attention: AttentionParallel = AttentionParallel()
    moe: MoeParallel = MoeParallel()
    micro_batches: Literal[1, 2] = 1
    kernels: KernelSetName = Field(
        "fused", description="the kernel set (workloads.kernel_sets): a serving engine's fused kernels, or plain torch ops")
    max_batch_size: int = Field(256, ge=1, le=L.MAX_BATCH_SIZE)
    max_tokens_per_iteration: int = Field(8192, ge=1, le=L.MAX_TOKENS_PER_ITERATION)
    chunked_prefill: bool = True
    mtp_depth: int = Field(0, ge=0, le=L.MAX_SPECULATIVE_TOKENS)
    mtp_acceptance: float = Field(0.0, ge=0.0, le=1.0)
    draft_model: str | None = None  # speculative decoding with a separate draft model
    draft_tokens: int = Field(0, ge=0, le=L.MAX_SPECULATIVE_TOKENS, description="tokens the draft proposes per step")
    draft_accepted_tokens: float = Field(0.0, ge=0.0, le=L.MAX_SPECULATIVE_TOKENS,
                                         description="expected accepted draft tokens per step")

    @property
    def speculative_depth(self) -> int:
        """Draft tokens verified per decode step (MTP depth or draft length)."""
        return self.mtp_depth or self.draft_tokens
    kv_memory_fraction: float = Field(0.9, gt=0.0, le=1.0)

    @property
    def devices(self) -> int:
        return self.instances * self.devices_per_instance

    @property
    def layout(self) -> Layout:
        """The pool's parallelism as the ``Layout`` every other part holds (``LAYOUT_PATHS``)."""
        values = {f: self._at(path) for f, path in LAYOUT_PATHS.items() if f != "devices"}
        return Layout(**values, expert_dp=1)

    def _at(self, path: tuple[str, ...]) -> Any:
        node: Any = self
        for key in path:
            node = getattr(node, key)
        return node

    @staticmethod
    def layout_path(field: str) -> tuple[str, ...]:
        """Where a ``Layout`` field (or any pool field) stands in the pool's YAML."""
        return LAYOUT_PATHS.get(field, (field,))

    @classmethod
    def from_layout(cls, layout: Layout, **fields: Any) -> "Pool":
        """The pool of ``layout`` in YAML shape; ``fields`` are the other pool fields, with
        ``moe_imbalance`` going to ``moe.imbalance``."""
        data: dict[str, Any] = {"devices_per_instance": layout.devices,
                                "moe": {"imbalance": fields.pop("moe_imbalance", 1.0)}}
        values = {**{f: getattr(layout, f) for f in LAYOUT_PATHS if f != "devices"}, "moe_tp": layout.moe_tp_eff}
        for f, path in LAYOUT_PATHS.items():
            if f != "devices":
                node = data
                for key in path[:-1]:
                    node = node.setdefault(key, {})
                node[path[-1]] = values[f]
        return cls(**data, **fields)


class ColocatedServing(_Frozen):
    mode: Literal["colocated"]
    pool: Pool


class DisaggregatedServing(_Frozen):
    mode: Literal["disaggregated"]
    prefill: Pool
    decode: Pool


Serving = Annotated[Union[ColocatedServing, DisaggregatedServing], Field(discriminator="mode")]


class Scheduler(_Frozen):
    """The serving engine's policies, by name (``workloads.policy_names``; implementations in
    ``simulator.registry``)."""

    router: RouterName = "least_outstanding"
    batching: BatchPolicyName = Field(
        "splitfuse", description="splitfuse: decode streams first, prefill chunks fill the token budget; "
        "prefill_first: a prefill-only step whenever a prompt can run; decode_first: new prompts only when no "
        "decode stream runs")
    preemption: PreemptionPolicyName = "recompute"


class FixedLength(_Frozen):
    kind: Literal["fixed"]
    tokens: int = Field(ge=1, le=L.MAX_SEQUENCE_TOKENS)


class UniformLength(_Frozen):
    kind: Literal["uniform"]
    min_tokens: int = Field(ge=1, le=L.MAX_SEQUENCE_TOKENS)
    max_tokens: int = Field(ge=1, le=L.MAX_SEQUENCE_TOKENS)

    @model_validator(mode="after")
    def _ordered(self) -> "UniformLength":
        if self.max_tokens < self.min_tokens:
            raise ValueError(f"max_tokens {self.max_tokens} < min_tokens {self.min_tokens}")
        return self


class LognormalLength(_Frozen):
    kind: Literal["lognormal"]
    mean_tokens: float = Field(gt=0, le=L.MAX_SEQUENCE_TOKENS)
    cv: float = Field(gt=0, le=L.MAX_CV)
    max_tokens: int = Field(131072, ge=1, le=L.MAX_SEQUENCE_TOKENS)


Length = Annotated[Union[FixedLength, UniformLength, LognormalLength], Field(discriminator="kind")]


class PoissonArrival(_Frozen):
    kind: Literal["poisson"]
    rate_per_s: float = Field(gt=0, le=L.MAX_RATE_PER_S)


class GammaArrival(_Frozen):
    kind: Literal["gamma"]
    rate_per_s: float = Field(gt=0, le=L.MAX_RATE_PER_S)
    cv: float = Field(gt=0, le=L.MAX_CV, description="coefficient of variation of inter-arrival times")


class TraceArrival(_Frozen):
    """Arrivals and lengths replayed from a request trace (``workloads.traces``: the formats, their
    columns and units). A relative ``path`` in a YAML file is relative to that file's folder
    (``workloads.config_file.anchor_relative_paths``); one given with ``--set`` or in a YAML
    string, to the working directory. ``start_s`` and ``duration_s`` cut a window of the trace's
    own clock; the window is replayed ``speedup`` times faster (``workload.duration_s`` then
    bounds simulated seconds)."""

    kind: Literal["trace"]
    path: str
    format: Literal["csv", "azure", "burstgpt", "mooncake"] = Field(
        "csv", description="csv (arrival_s, prompt_tokens, output_tokens[, cached_tokens]; CSV or JSON lines), "
                           "azure (AzurePublicDataset LLM inference traces), burstgpt, mooncake (JSON lines with hash_ids)")
    speedup: float = Field(1.0, ge=L.MIN_TRACE_SPEEDUP, le=L.MAX_TRACE_SPEEDUP,
                           description="replay time = trace time / speedup")
    start_s: float = Field(0.0, ge=0, le=L.MAX_DURATION_S, description="first trace second replayed")
    duration_s: float | None = Field(None, gt=0, le=L.MAX_DURATION_S, description="trace seconds replayed (None: to the end)")
    block_tokens: int = Field(512, ge=1, le=L.MAX_SEQUENCE_TOKENS,
                              description="prompt tokens per hash_ids block (mooncake traces; Mooncake's own are 512)")

    @model_validator(mode="after")
    def _block_tokens_for_mooncake(self) -> "TraceArrival":
        if "block_tokens" in self.model_fields_set and self.format != "mooncake":
            raise ValueError(f"block_tokens applies to mooncake traces (hash_ids), not format {self.format}")
        return self


Arrival = Annotated[Union[PoissonArrival, GammaArrival, TraceArrival], Field(discriminator="kind")]


class Workload(_Frozen):
    arrival: Arrival
    prompt_tokens: Length = FixedLength(kind="fixed", tokens=1024)
    output_tokens: Length = FixedLength(kind="fixed", tokens=256)
    prefix_cache_hit_rate: float = Field(0.0, ge=0.0, lt=1.0)
    num_requests: int | None = Field(None, ge=1, le=L.MAX_REQUESTS)
    duration_s: float | None = Field(None, gt=0, le=L.MAX_DURATION_S)
    samples_per_request: int = Field(1, ge=1, le=L.MAX_SAMPLES_PER_REQUEST)
    sample_policy: Literal["all", "first_finish", "majority_vote", "beam"] = "all"
    prefix: PrefixSpec | None = Field(None, description="which prompts share prefixes (workloads.prefix)")

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        return _without_none(handler(self), "prefix")

    @model_validator(mode="after")
    def _bounded(self) -> "Workload":
        workload_prefix_errors(self)
        if self.num_requests is None and self.duration_s is None and self.arrival.kind != "trace":
            raise ValueError("give num_requests or duration_s (the run must end)")
        if self.arrival.kind != "trace" and self.num_requests is not None and self.duration_s is None:
            horizon_s = self.num_requests / self.arrival.rate_per_s
            if horizon_s > L.MAX_DURATION_S:
                raise ValueError(f"{self.num_requests:,} requests at {self.arrival.rate_per_s:g} req/s arrive over about "
                                 f"{horizon_s:.3g} s, longer than a simulation keeps time precisely (at most "
                                 f"{L.MAX_DURATION_S:,.0f} s; raise arrival.rate_per_s)")
        requests = self.expected_requests
        if requests is not None and requests > L.MAX_REQUESTS:
            raise ValueError(f"about {requests:,.0f} requests (rate_per_s x duration_s), more than one simulation "
                             f"may generate (at most {L.MAX_REQUESTS:,}; lower duration_s or give num_requests)")
        if requests is not None and requests * self.samples_per_request > L.MAX_SIMULATED_SEQUENCES:
            raise ValueError(f"about {requests * self.samples_per_request:,.0f} sequences (requests x "
                             f"samples_per_request {self.samples_per_request}), more than one simulation may decode "
                             f"(at most {L.MAX_SIMULATED_SEQUENCES:,})")
        return self

    @property
    def expected_requests(self) -> float | None:
        """Requests the run generates (num_requests, or the mean of rate x duration; None for a trace)."""
        if self.arrival.kind == "trace":
            return self.num_requests
        by_time = self.arrival.rate_per_s * self.duration_s if self.duration_s is not None else None
        if self.num_requests is None:
            return by_time
        return self.num_requests if by_time is None else min(self.num_requests, by_time)


class Slo(_Frozen):
    ttft_ms: float = Field(2000.0, gt=0, le=L.MAX_SLO_MS)
    tpot_ms: float = Field(50.0, gt=0, le=L.MAX_SLO_MS)
    percentile: float = Field(90.0, gt=0, le=100)


class Deployment(_Frozen):
    """A whole deployment file, validated."""

    name: str = "deployment"
    cluster: str
    model: str
    weight_dtype: Literal["bf16", "fp8", "int8"] = "bf16"
    kv_dtype: Literal["bf16", "fp8", "int8"] = "bf16"
    serving: Serving
    scheduler: Scheduler = Scheduler()
    workload: Workload
    slo: Slo = Slo()
    seed: int = Field(0, ge=0, le=L.MAX_SEED)
    profile: str | None = Field("default", description=PROFILE_FIELD_HELP)
    prefix_cache: PrefixCache | None = Field(None, description="per-instance prefix cache in KV memory (workloads.prefix)")

    @model_validator(mode="after")
    def _one_hit_model(self) -> "Deployment":
        prefix_cache_errors(self)
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        return _without_none(handler(self), "prefix_cache")

    def pools(self) -> dict[str, Pool]:
        """Pools by name (their key under ``serving:``; ``PoolRole.of_pool`` gives the role)."""
        if isinstance(self.serving, ColocatedServing):
            return {PoolRole.COLOCATED.pool_name: self.serving.pool}
        return {PoolRole.PREFILL.pool_name: self.serving.prefill, PoolRole.DECODE.pool_name: self.serving.decode}

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


def load_deployment(path: str | Path | ConfigFile, overrides: Iterable[str] = (), check: bool = True) -> Deployment:
    """Load (a path, or a ``ConfigFile`` already read), override (``a.b.c=value``), validate and
    rule-check a deployment file.

    Raises ConfigError (a ValueError) with a one-line ``file:line:col: field: problem`` message.
    """
    doc = open_config(path)
    require_kind(doc, "deployment")
    data = apply_overrides(doc.copy_data(), overrides, "serving.pool.instances=2")
    dep = parse_deployment(data, doc.filename, doc.locs)
    if check:
        check_deployment(dep, doc.filename, doc.locs)
    return dep


def load_deployment_text(text: str, filename: str = "<string>", check: bool = True) -> Deployment:
    """Like load_deployment, from a string (tests, API users)."""
    data, locs = parse_yaml_with_locations(text, filename)
    dep = parse_deployment(data, filename, locs)
    if check:
        check_deployment(dep, filename, locs)
    return dep
