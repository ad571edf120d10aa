"""PLAN.yaml: what ``clustersim plan`` reads (model, hardware budget, workload, SLOs, search space).

Frozen pydantic models with ``extra="forbid"``; ``load_plan(path, overrides)`` parses with
line/column tracking (``workloads.yamlloc``) and reports every problem as one line
``plan.yaml:12:5: search.attention_tp: ... (valid: ...)``. The workload, SLO and scheduler
sections are the deployment schema's own classes, so a plan's workload is exactly what the
best deployment will carry.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workloads import limits as L
from workloads.config_file import ConfigFile, apply_overrides, open_config, require_kind
from workloads.deployment import Scheduler, Slo, Workload
from workloads.yamlloc import ConfigError, dotted, format_validation_error, locate, parse_yaml_with_locations

__all__ = ["HardwareSpec", "SearchSpace", "VerifySpec", "PlanConfig", "load_plan", "load_plan_text", "parse_plan",
           "ConfigError"]

#: requests simulated per verification run when the workload names neither a count nor a duration
DEFAULT_VERIFY_REQUESTS = 400


class _Frozen(BaseModel):
    """Frozen, no unknown keys, and no infinite or NaN number anywhere (``allow_inf_nan=False``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class HardwareSpec(_Frozen):
    """A catalog cluster, or a device type; ``devices`` caps the devices a layout may use."""

    cluster: str | None = None
    device: str | None = None
    devices: int | None = Field(None, ge=1, le=L.MAX_DEVICES, description="device budget (default: the whole cluster)")

    @model_validator(mode="after")
    def _named(self) -> "HardwareSpec":
        if self.cluster is None and self.device is None:
            raise ValueError("give hardware.cluster (a catalog cluster) or hardware.device with hardware.devices")
        if self.cluster is None and self.devices is None:
            raise ValueError("hardware.device needs a device budget hardware.devices")
        return self


def _positive(name: str, values: list[int], limit: int, low: int = 1) -> None:
    if not values:
        raise ValueError(f"{name}: give at least one value")
    bad = [v for v in values if not low <= v <= limit]
    if bad:
        raise ValueError(f"{name}: values must be {low}..{limit:,} (got {bad[:4]})")


#: The largest value of each integer search list (``workloads.limits``).
_LIST_LIMITS = {"devices_per_instance": L.MAX_DEVICES, "attention_tp": L.MAX_DEVICES, "attention_sp": L.MAX_DEVICES,
                "pp": L.MAX_PIPELINE_STAGES, "moe_tp": L.MAX_DEVICES, "decode_batch_per_rank": L.MAX_BATCH_SIZE,
                "prefill_tokens_per_rank": L.MAX_SEQUENCE_TOKENS, "micro_batches": 2}


class SearchSpace(_Frozen):
    """Choices enumerated per pool; a layout picks one value of each (see planner/README.md)."""

    modes: list[Literal["colocated", "disaggregated"]] = Field(["colocated", "disaggregated"],
                                                                 max_length=L.MAX_SEARCH_VALUES)
    devices_per_instance: list[int] | None = Field(
        None, max_length=L.MAX_SEARCH_VALUES,
        description="instance sizes; default: powers of two times the node size up to the budget")
    attention_tp: list[int] = Field([1, 2, 4, 8], max_length=L.MAX_SEARCH_VALUES)
    attention_sp: list[int] = Field([1], max_length=L.MAX_SEARCH_VALUES)
    pp: list[int] = Field([1], max_length=L.MAX_SEARCH_VALUES)
    moe_tp: list[int] = Field([1], max_length=L.MAX_SEARCH_VALUES)
    redundant_experts: list[int] = Field([0], max_length=L.MAX_SEARCH_VALUES)
    micro_batches: list[Literal[1, 2]] = Field([1, 2], max_length=L.MAX_SEARCH_VALUES)
    mtp: list[bool] = Field([False, True], max_length=L.MAX_SEARCH_VALUES)
    mtp_acceptance: float = Field(0.85, ge=0.0, le=1.0)
    decode_batch_per_rank: list[int] = Field([8, 16, 32, 64, 128, 256], max_length=L.MAX_SEARCH_VALUES)
    prefill_tokens_per_rank: list[int] = Field([4096, 16384], max_length=L.MAX_SEARCH_VALUES)
    max_instances: int = Field(64, ge=1, le=L.MAX_INSTANCES, description="most instances of one pool in a layout")
    moe_imbalance: float = Field(1.0, ge=1.0, le=L.MAX_MOE_IMBALANCE)
    kv_memory_fraction: float = Field(0.9, gt=0.0, le=1.0)
    method: Literal["auto", "grid", "optuna"] = "auto"
    max_grid_layouts: int = Field(300_000, ge=1, le=L.MAX_GRID_LAYOUTS, description="auto: optuna above this many layouts")
    optuna_trials: int = Field(3000, ge=1, le=L.MAX_OPTUNA_TRIALS)

    @model_validator(mode="after")
    def _lists(self) -> "SearchSpace":
        if not self.modes:
            raise ValueError("modes: give at least one of colocated, disaggregated")
        for name, limit in _LIST_LIMITS.items():
            values = getattr(self, name)
            if values is not None:
                _positive(name, list(values), limit)
        _positive("redundant_experts", list(self.redundant_experts), L.MAX_REDUNDANT_EXPERTS, low=0)
        if not self.mtp:
            raise ValueError("mtp: give [false], [true] or both")
        per_pool = self.pool_choices_bound()
        if per_pool > L.MAX_POOL_CHOICES:
            raise ValueError(f"the search lists multiply to about {per_pool:,} choices per pool, more than the "
                             f"planner enumerates (at most {L.MAX_POOL_CHOICES:,}; shorten some lists)")
        return self

    def pool_choices_bound(self) -> int:
        """An upper bound on the pool choices one role enumerates (the product of the list lengths;
        the default instance sizes are at most 21: powers of two up to MAX_DEVICES)."""
        sizes = len(set(self.devices_per_instance)) if self.devices_per_instance is not None else 21
        lists = ("attention_tp", "attention_sp", "pp", "moe_tp", "redundant_experts", "micro_batches", "mtp")
        limits = max(len(set(self.decode_batch_per_rank)), len(set(self.prefill_tokens_per_rank)))
        return sizes * limits * math.prod(len(set(getattr(self, n))) for n in lists)


class VerifySpec(_Frozen):
    """Simulator verification of the top analytic candidates (``planner.verify``): ``top``
    distinct estimates are checked (0: none, and then no layout is recommended); each run
    simulates at least ``num_requests`` requests (more at high rates, for a steady state)."""

    top: int = Field(3, ge=0, le=L.MAX_VERIFY_TOP)
    num_requests: int = Field(DEFAULT_VERIFY_REQUESTS, ge=1, le=L.MAX_REQUESTS)


class PlanConfig(_Frozen):
    """A whole PLAN.yaml, validated."""

    name: str = "plan"
    model: str
    hardware: HardwareSpec
    weight_dtype: Literal["bf16", "fp8", "int8"] = "bf16"
    kv_dtype: Literal["bf16", "fp8", "int8"] = "bf16"
    workload: Workload
    slo: Slo = Slo()
    scheduler: Scheduler = Scheduler()
    search: SearchSpace = SearchSpace()
    verify: VerifySpec = VerifySpec()
    objective: Literal["tokens_per_device", "tokens_per_dollar"] = "tokens_per_device"
    profile: str | None = Field("default", description="calibration profile: 'default', a shipped name, a directory "
                                "written by clustersim calibrate (relative to this file), or null (roofline)")
    seed: int = Field(0, ge=0, le=L.MAX_SEED)


def _semantic_checks(plan: PlanConfig, filename: str, locs: dict) -> None:
    """Catalog lookups with located errors: model, cluster/device, budget."""
    from hardware.catalog import get_cluster, get_device
    from workloads.models import get_model

    def fail(path: tuple, problem: str) -> None:
        where = locate(locs, path)
        prefix = f"{filename}:{where[0]}:{where[1]}" if where else filename
        raise ConfigError(f"{prefix}: {dotted(path)}: {problem}")

    try:
        model = get_model(plan.model)
    except LookupError as exc:
        fail(("model",), str(exc.args[0]) if exc.args else str(exc))
    hw = plan.hardware
    if hw.cluster is not None:
        try:
            cluster = get_cluster(hw.cluster)
        except LookupError as exc:
            fail(("hardware", "cluster"), str(exc.args[0]) if exc.args else str(exc))
        if hw.device is not None:
            try:
                dev = get_device(hw.device)
            except LookupError as exc:
                fail(("hardware", "device"), str(exc.args[0]) if exc.args else str(exc))
            if dev.name != cluster.device.name:
                fail(("hardware", "device"), f"{dev.name} is not the device of cluster {cluster.name} "
                                             f"(valid: {cluster.device.name})")
        if hw.devices is not None and hw.devices > cluster.num_devices:
            fail(("hardware", "devices"), f"budget {hw.devices} exceeds cluster {cluster.name}'s "
                                          f"{cluster.num_devices} devices (valid: 1..{cluster.num_devices})")
    else:
        try:
            get_device(hw.device)
        except LookupError as exc:
            fail(("hardware", "device"), str(exc.args[0]) if exc.args else str(exc))
    for i, tp in enumerate(plan.search.attention_tp):
        if model.num_heads % tp:
            fail(("search", "attention_tp", i), f"{tp} does not divide {model.num_heads} attention heads")
    if True in plan.search.mtp and not model.num_mtp_modules and plan.search.mtp == [True]:
        fail(("search", "mtp"), f"{model.name} has no MTP module (valid: [false])")
    if plan.profile is not None:
        from calibration.resolve import resolve_profile

        try:
            resolve_profile(plan.profile, "")
        except LookupError as exc:
            fail(("profile",), str(exc.args[0]) if exc.args else str(exc))
    if plan.workload.arrival.kind == "trace":
        from workloads.traces import workload_trace

        try:
            workload_trace(plan.workload)
        except ValueError as exc:
            fail(("workload", "arrival", "path"), str(exc))


def parse_plan(data: Any, filename: str = "<plan>", locs: dict | None = None, check: bool = True) -> PlanConfig:
    """Validate parsed YAML into a PlanConfig (plus catalog checks when ``check``)."""
    locs = locs or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}:1:1: <root>: expected a mapping of plan fields")
    wl = data.get("workload")
    if isinstance(wl, dict) and "num_requests" not in wl and "duration_s" not in wl:
        verify = data.get("verify") if isinstance(data.get("verify"), dict) else {}
        data = {**data, "workload": {**wl, "num_requests": verify.get("num_requests", DEFAULT_VERIFY_REQUESTS)}}
    try:
        plan = PlanConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, filename, locs, PlanConfig)) from None
    if check:
        _semantic_checks(plan, filename, locs)
    return plan


def load_plan(path: str | Path | ConfigFile, overrides: Iterable[str] = ()) -> PlanConfig:
    """Load (a path, or a ``ConfigFile`` already read), override (``a.b.c=value``) and validate a
    PLAN.yaml; ConfigError names file:line:col."""
    doc = open_config(path)
    require_kind(doc, "plan")
    data = apply_overrides(doc.copy_data(), overrides, "slo.tpot_ms=30")
    return parse_plan(data, doc.filename, doc.locs)


def load_plan_text(text: str, filename: str = "<string>", check: bool = True) -> PlanConfig:
    """Like load_plan, from a string (tests, API users)."""
    data, locs = parse_yaml_with_locations(text, filename)
    return parse_plan(data, filename, locs, check)

