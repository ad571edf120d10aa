"""Cross-field rules of a deployment, checked against the model and hardware catalogs.

The divisibility and fit rules of a pool's parallelism are ``workloads.layout.Layout.problems``
(the one validator, which the planner and ``clustersim estimate`` run too, through
``serving_layout_problems``); the rest are the small ``*_problems`` functions here, each
returning ``(field, problem)`` pairs (``workloads.layout.Problem``). ``check_deployment`` runs
them in order and raises ``ConfigError`` for the first, located ``file:line:col: field:
problem (valid: ...)``. ``pool_memory`` / ``layout_memory`` is the per-device memory account
(weights, KV per token, KV capacity) shared by the memory rule, the deployment report, the
engine and the planner.

This module reads deployment objects by their attributes only (it never imports
``workloads.deployment``, which imports it to run the rules when it loads a file).
"""

from __future__ import annotations

from dataclasses import dataclass

from hardware.catalog import get_cluster
from hardware.types import Cluster, DeviceSpec
from workloads import accounting
from workloads.layout import Layout, Problem
from workloads.models import ModelConfig, get_model
from workloads.traces import workload_trace
from workloads.yamlloc import ConfigError, dotted, locate

__all__ = ["PoolMemory", "pool_memory", "layout_memory", "die_replicas", "max_tokens_of", "dtype_problems",
           "serving_layout_problems", "mtp_problems", "draft_problems", "memory_problems", "pool_problems",
           "check_deployment", "deployment_report"]


def _message(exc: Exception) -> str:
    """One-line text of a lookup error (KeyError's str() would add quotes)."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc).splitlines()[0]


class _Ctx:
    """Formats errors for one file."""

    def __init__(self, filename: str, locs: dict):
        self.filename, self.locs = filename, locs

    def fail(self, path: tuple, problem: str) -> None:
        where = locate(self.locs, path)
        prefix = f"{self.filename}:{where[0]}:{where[1]}" if where else self.filename
        raise ConfigError(f"{prefix}: {dotted(path)}: {problem}")


@dataclass(frozen=True, slots=True)
class PoolMemory:
    """Per-device memory account of one pool (bytes)."""

    weight_bytes: float
    kv_bytes_per_token: float  # on one device, for one token of one sequence
    usable_bytes: float  # HBM x kv_memory_fraction
    kv_capacity_tokens: float  # tokens of KV one device can hold after weights

    @property
    def fits(self) -> bool:
        return self.kv_capacity_tokens > 0


def max_tokens_of(length) -> int:
    """Largest value a length distribution (``workloads.deployment`` ``*Length``) can take."""
    return length.tokens if length.kind == "fixed" else length.max_tokens


def _kv_per_device(model: ModelConfig, kv_dtype: str, attn_tp: int) -> float:
    """KV bytes per token on one device: MLA's latent is replicated over attention TP, GQA's
    KV heads are split over it down to one head per rank."""
    kv = accounting.kv_cache_bytes_per_token(model, kv_dtype)
    return kv if model.is_mla else kv / min(attn_tp, model.attention.num_kv_heads)


def die_replicas(device: DeviceSpec, attn_tp: int, sp: int = 1) -> int:
    """Attention-DP ranks per device: a multi-die package (Ascend 910C) runs one rank per die
    when attention is neither tensor- nor sequence-parallel (CloudMatrix-Infer: DP320 on 160
    NPUs), so every die holds and reads its own replica of the non-expert weights."""
    return device.dies if device.dies > 1 and attn_tp == 1 and sp == 1 else 1


def layout_memory(model: ModelConfig, layout: Layout, device: DeviceSpec, weight_dtype: str, kv_dtype: str, *,
                  mtp: bool = False, draft_model: str | None = None, kv_memory_fraction: float = 0.9) -> PoolMemory:
    """Weights and KV per device for a serving layout.

    Attention, dense FFNs, embeddings, norms and the LM head are split over attention TP
    (and PP); routed experts (plus redundant copies) over EP x MoE-TP; shared experts over
    MoE-TP; the router is replicated. On a multi-die package with one attention-DP rank per die
    (``die_replicas``) every non-expert weight is held once per die. KV: MLA's latent is shared
    by all heads, so attention TP replicates it; GQA splits KV heads over TP down to one head
    per rank. ``mtp``: the MTP module's weights too; ``draft_model``: a draft model on the same
    devices (its weights and KV).
    """
    wb = accounting.weight_bytes_breakdown(model, weight_dtype, include_mtp=mtp)
    attn_tp, pp, moe_tp = layout.tp, layout.pp, layout.moe_tp_eff
    routed = wb.get("moe_routed_experts", 0.0) + wb.get("mtp_moe_routed_experts", 0.0)
    shared = wb.get("moe_shared_experts", 0.0) + wb.get("mtp_moe_shared_experts", 0.0)
    router = wb.get("moe_router", 0.0) + wb.get("mtp_moe_router", 0.0)
    rest = sum(wb.values()) - routed - shared - router
    replicas = die_replicas(device, attn_tp, layout.sp)  # per-die copies of the replicated weights
    per_device = replicas * (rest / attn_tp / pp + router / pp + shared / moe_tp / pp)
    if model.moe is not None and routed:
        slots = model.moe.num_routed_experts + layout.redundant_experts
        per_device += routed * slots / model.moe.num_routed_experts / (layout.ep * moe_tp) / pp
    kv_token = _kv_per_device(model, kv_dtype, attn_tp) / pp
    if draft_model:  # the draft model runs on the same devices: its weights and KV too
        draft = get_model(draft_model)
        per_device += accounting.weight_bytes(draft, weight_dtype) / attn_tp
        kv_token += _kv_per_device(draft, kv_dtype, attn_tp)
    usable = device.hbm_bytes * kv_memory_fraction
    capacity = (usable - per_device) / kv_token if kv_token else float("inf")
    return PoolMemory(per_device, kv_token, usable, capacity)


def pool_memory(model: ModelConfig, pool, device: DeviceSpec, weight_dtype: str, kv_dtype: str) -> PoolMemory:
    """``layout_memory`` of a ``workloads.deployment.Pool`` (its layout, MTP, draft model, KV fraction)."""
    return layout_memory(model, pool.layout, device, weight_dtype, kv_dtype, mtp=pool.mtp_depth > 0,
                         draft_model=pool.draft_model, kv_memory_fraction=pool.kv_memory_fraction)


# ------------------------------------------------------------------ rules


def dtype_problems(device: DeviceSpec, **dtypes: str) -> list[Problem]:
    """Each ``field=dtype`` the device has no compute for (e.g. ``weight_dtype="fp8"`` on an Ascend 910C)."""
    peaks = device.peak_flops_per_s
    return [Problem(field, f"{device.name} has no {dtype} compute (valid: {', '.join(sorted(peaks))})")
            for field, dtype in dtypes.items() if dtype not in peaks]


def serving_layout_problems(model: ModelConfig, layout: Layout, cluster: Cluster, devices: int) -> list[Problem]:
    """The layout rules a serving instance of ``devices`` devices obeys: ``Layout.problems`` with
    the instance's devices, TP inside one scale-up domain, and equal pipeline stages (the
    serving cost model costs one stage and multiplies it by pp)."""
    return layout.problems(model, devices=devices, cluster=cluster, even_stages=True)


def mtp_problems(model: ModelConfig, mtp_depth: int, mtp_acceptance: float) -> list[Problem]:
    """MTP needs the model's MTP module and an acceptance rate."""
    if mtp_depth and not model.num_mtp_modules:
        return [Problem("mtp_depth", f"{model.name} has no MTP module (valid: 0)")]
    if mtp_depth and mtp_acceptance == 0:
        return [Problem("mtp_acceptance", "mtp_depth > 0 needs an acceptance rate in (0, 1]")]
    return []


def draft_problems(model: ModelConfig, pool) -> list[Problem]:
    """A draft model needs a known model, a length, an accepted length within it, no MTP, the
    target's vocabulary, and to fit the pool's attention layout (``Layout.without_experts``)."""
    if pool.draft_model is None:
        if pool.draft_tokens or pool.draft_accepted_tokens:
            return [Problem("draft_model", "draft_tokens / draft_accepted_tokens need a draft_model")]
        return []
    try:
        draft = get_model(pool.draft_model)
    except LookupError as exc:
        return [Problem("draft_model", _message(exc))]
    if pool.mtp_depth:
        return [Problem("draft_model", "use either MTP (mtp_depth) or a draft model, not both")]
    if pool.draft_tokens < 1:
        return [Problem("draft_tokens", "a draft model needs draft_tokens >= 1")]
    if not 0 < pool.draft_accepted_tokens <= pool.draft_tokens:
        return [Problem("draft_accepted_tokens",
                        f"{pool.draft_accepted_tokens} must be in (0, draft_tokens={pool.draft_tokens}]")]
    found = pool.layout.without_experts().problems(draft)
    if found:
        return [Problem("draft_model", f"the draft {draft.name} on this layout: {found[0].field} {found[0].problem}")]
    if draft.vocab_size != model.vocab_size:
        return [Problem("draft_model", f"draft vocabulary {draft.vocab_size} differs from the target's "
                                       f"{model.vocab_size} (valid: a model of the same family)")]
    return []


def memory_problems(mem: PoolMemory, device: DeviceSpec, longest_tokens: int) -> list[Problem]:
    """The weights fit beside the KV of one longest request (field ``devices``: add devices)."""
    gib = 2**30
    if mem.weight_bytes > mem.usable_bytes:
        return [Problem("devices", f"weights need {mem.weight_bytes / gib:.1f} GiB per device but {device.name} "
                                   f"offers {mem.usable_bytes / gib:.1f} GiB (hbm x kv_memory_fraction); add devices "
                                   f"or shard further")]
    if mem.kv_capacity_tokens < longest_tokens:
        return [Problem("devices", f"after {mem.weight_bytes / gib:.1f} GiB of weights a device holds KV for "
                                   f"{int(mem.kv_capacity_tokens)} tokens, less than one longest request "
                                   f"({longest_tokens} tokens)")]
    return []


def pool_problems(model: ModelConfig, pool, cluster: Cluster) -> list[Problem]:
    """Every rule one pool breaks (its layout, MTP, draft model), fields as ``Pool.layout_path`` reads them."""
    return (serving_layout_problems(model, pool.layout, cluster, pool.devices_per_instance)
            + mtp_problems(model, pool.mtp_depth, pool.mtp_acceptance) + draft_problems(model, pool))


def _known(dep, ctx: _Ctx) -> tuple[ModelConfig, Cluster]:
    try:
        model = get_model(dep.model)
    except LookupError as exc:
        ctx.fail(("model",), _message(exc))
    try:
        cluster = get_cluster(dep.cluster)
    except LookupError as exc:
        ctx.fail(("cluster",), _message(exc))
    return model, cluster


def check_deployment(dep, filename: str = "<deployment>", locs: dict | None = None) -> None:
    """Run every rule on a ``workloads.deployment.Deployment``; the first violation raises ConfigError."""
    ctx = _Ctx(filename, locs or {})
    model, cluster = _known(dep, ctx)
    for field, problem in dtype_problems(cluster.device, weight_dtype=dep.weight_dtype):
        ctx.fail((field,), problem)
    pools = dep.pools()
    for role, pool in pools.items():
        for field, problem in pool_problems(model, pool, cluster):
            ctx.fail(dep.pool_path(role) + pool.layout_path(field), problem)
    total = sum(p.devices for p in pools.values())
    if total > cluster.num_devices:
        parts = " + ".join(f"{role} {p.instances}x{p.devices_per_instance}" for role, p in pools.items())
        ctx.fail(("serving",), f"{parts} = {total} devices exceed cluster {cluster.name}'s {cluster.num_devices}")
    longest = max_tokens_of(dep.workload.prompt_tokens) + max_tokens_of(dep.workload.output_tokens)
    for role, pool in pools.items():
        mem = pool_memory(model, pool, cluster.device, dep.weight_dtype, dep.kv_dtype)
        for field, problem in memory_problems(mem, cluster.device, longest):
            ctx.fail(dep.pool_path(role) + pool.layout_path(field), problem)
    rule_trace_replays(dep, ctx)


def rule_trace_replays(dep, ctx: _Ctx) -> None:
    """A trace arrival's file reads and its slice holds requests (``workloads.traces``; the parse is
    memoised, so ``simulate`` does not read the file twice)."""
    if dep.workload.arrival.kind != "trace":
        return
    try:
        workload_trace(dep.workload)
    except ValueError as exc:
        ctx.fail(("workload", "arrival", "path"), str(exc))


def deployment_report(dep) -> dict:
    """Per-pool accounting for a validated deployment (used by ``clustersim validate``)."""
    model = get_model(dep.model)
    cluster = get_cluster(dep.cluster)
    out: dict = {
        "name": dep.name,
        "cluster": cluster.name,
        "device": cluster.device.name,
        "model": model.name,
        "weight_dtype": dep.weight_dtype,
        "kv_dtype": dep.kv_dtype,
        "devices_used": sum(p.devices for p in dep.pools().values()),
        "cluster_devices": cluster.num_devices,
        "total_params": accounting.total_params(model),
        "activated_params": accounting.activated_params(model),
        "kv_cache_bytes_per_token": accounting.kv_cache_bytes_per_token(model, dep.kv_dtype),
        "pools": {},
    }
    for role, pool in dep.pools().items():
        mem = pool_memory(model, pool, cluster.device, dep.weight_dtype, dep.kv_dtype)
        out["pools"][role] = {
            "instances": pool.instances,
            "devices_per_instance": pool.devices_per_instance,
            "attention": f"tp{pool.attention.tp} dp{pool.attention.dp} sp{pool.attention.sp} pp{pool.pp}",
            "moe": f"ep{pool.moe.ep} tp{pool.moe.tp} +{pool.moe.redundant_experts} redundant" if model.moe else "-",
            "weight_gib_per_device": mem.weight_bytes / 2**30,
            "kv_bytes_per_token_per_device": mem.kv_bytes_per_token,
            "kv_capacity_tokens_per_device": int(mem.kv_capacity_tokens),
            "hbm_gib_per_device": cluster.device.hbm_bytes / 2**30,
        }
    return out
