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

from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workloads.yamlloc import ConfigError, dotted, load_yaml_with_locations, locate, parse_yaml_with_locations, set_path

DTYPES = ("bf16", "fp8", "int8")


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
    max_batch_size: int = Field(256, ge=1)
    max_tokens_per_iteration: int = Field(8192, ge=1)
    chunked_prefill: bool = True
    mtp_depth: int = Field(0, ge=0)
    mtp_acceptance: float = Field(0.0, ge=0.0, le=1.0)
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

    def pools(self) -> dict[str, Pool]:
        if isinstance(self.serving, ColocatedServing):
            return {"pool": self.serving.pool}
        return {"prefill": self.serving.prefill, "decode": self.serving.decode}

    def pool_path(self, role: str) -> tuple[str, ...]:
        return ("serving", role)


def _format_pydantic(exc: ValidationError, filename: str, locs: dict) -> str:
    err = exc.errors(include_url=False)[0]
    loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x in _UNION_TAGS))
    where = locate(locs, loc)
    prefix = f"{filename}:{where[0]}:{where[1]}" if where else filename
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        fields = ", ".join(parent.model_fields) if parent else ""
        msg = f"unknown field{f' (valid: {fields})' if fields else ''}"
    elif err["type"] in ("literal_error", "union_tag_invalid"):
        expected = err.get("ctx", {}).get("expected") or err.get("ctx", {}).get("expected_tags")
        msg = f"{err.get('input')!r} is not allowed (valid: {expected})"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{prefix}: {dotted(loc)}: {msg}{extra}"


_UNION_TAGS = {"colocated", "disaggregated", "fixed", "uniform", "lognormal", "poisson", "gamma", "trace"}


def _model_at(path: tuple) -> type[BaseModel] | None:
    """The pydantic model class that owns the fields at ``path`` (for 'valid:' lists)."""
    model: Any = Deployment
    for key in path:
        if isinstance(key, int):
            continue
        field = model.model_fields.get(key)
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann] + list(getattr(ann, "__args__", ()))
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            args = getattr(ann, "__metadata__", None)
            inner = getattr(ann, "__origin__", None)
            nxt = None
            for c in getattr(inner, "__args__", ()) if inner else ():
                if isinstance(c, type) and issubclass(c, BaseModel):
                    nxt = c
            if nxt is None:
                return None
        model = nxt
    return model


def parse_deployment(data: Any, filename: str, locs: dict) -> Deployment:
    """Validate already-parsed YAML data into a Deployment (structure only)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}:1:1: <root>: expected a mapping of deployment fields")
    try:
        return Deployment.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_pydantic(exc, filename, locs)) from None


def load_deployment(path: str | Path, overrides: Iterable[str] = (), check: bool = True) -> Deployment:
    """Load, override (``a.b.c=value``), validate and rule-check a deployment file.

    Raises ConfigError (a ValueError) with a one-line ``file:line:col: field: problem`` message.
    """
    data, locs = load_yaml_with_locations(path)
    filename = str(path)
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
