"""Cross-field rules of a deployment, checked against the model and hardware catalogs.

Each rule is a small function that raises ``ConfigError`` with ``file:line:col: field:
problem (valid: ...)``; ``check_deployment`` runs them in order. ``pool_memory`` is the
per-device memory account (weights, KV per token, KV capacity) shared by the memory rule,
the deployment report and later the planner.
"""

from __future__ import annotations

from dataclasses import dataclass

from hardware.catalog import get_cluster
from hardware.types import Cluster, DeviceSpec
from workloads import accounting
from workloads.deployment import Deployment, LognormalLength, Pool, UniformLength
from workloads.models import ModelConfig, get_model
from workloads.yamlloc import ConfigError, dotted, locate


def _message(exc: Exception) -> str:
    """One-line text of a lookup error (KeyError's str() would add quotes)."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc).splitlines()[0]


def _divisors(n: int, limit: int | None = None) -> str:
    divs = [d for d in range(1, n + 1) if n % d == 0 and (limit is None or d <= limit)]
    return ", ".join(map(str, divs))


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
    """Largest value a length distribution can take."""
    if isinstance(length, (UniformLength, LognormalLength)):
        return length.max_tokens
    return length.tokens


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


def pool_memory(model: ModelConfig, pool: Pool, device: DeviceSpec, weight_dtype: str, kv_dtype: str) -> PoolMemory:
    """Weights and KV per device for a pool's parallelism.

    Attention, dense FFNs, embeddings, norms and the LM head are split over attention TP
    (and PP); routed experts (plus redundant copies) over EP x MoE-TP; shared experts over
    MoE-TP; the router is replicated. On a multi-die package with one attention-DP rank per die
    (``die_replicas``) every non-expert weight is held once per die. KV: MLA's latent is shared by all heads, so attention TP
    replicates it; GQA splits KV heads over TP down to one head per rank.
    """
    wb = accounting.weight_bytes_breakdown(model, weight_dtype, include_mtp=pool.mtp_depth > 0)
    attn_tp, pp = pool.attention.tp, pool.pp
    routed = wb.get("moe_routed_experts", 0.0) + wb.get("mtp_moe_routed_experts", 0.0)
    shared = wb.get("moe_shared_experts", 0.0) + wb.get("mtp_moe_shared_experts", 0.0)
    router = wb.get("moe_router", 0.0) + wb.get("mtp_moe_router", 0.0)
    rest = sum(wb.values()) - routed - shared - router
    replicas = die_replicas(device, attn_tp, pool.attention.sp)  # per-die copies of the replicated weights
    per_device = replicas * (rest / attn_tp / pp + router / pp + shared / pool.moe.tp / pp)
    if model.moe is not None and routed:
        slots = model.moe.num_routed_experts + pool.moe.redundant_experts
        per_device += routed * slots / model.moe.num_routed_experts / (pool.moe.ep * pool.moe.tp) / pp
    kv_token = _kv_per_device(model, kv_dtype, attn_tp) / pp
    if pool.draft_model:  # the draft model runs on the same devices: its weights and KV too
        draft = get_model(pool.draft_model)
        per_device += accounting.weight_bytes(draft, weight_dtype) / attn_tp
        kv_token += _kv_per_device(draft, kv_dtype, attn_tp)
    usable = device.hbm_bytes * pool.kv_memory_fraction
    capacity = (usable - per_device) / kv_token if kv_token else float("inf")
    return PoolMemory(per_device, kv_token, usable, capacity)


# ------------------------------------------------------------------ rules


def rule_model_known(dep: Deployment, ctx: _Ctx) -> ModelConfig:
    try:
        return get_model(dep.model)
    except LookupError as exc:
        ctx.fail(("model",), _message(exc))
    raise AssertionError  # unreachable


def rule_cluster_known(dep: Deployment, ctx: _Ctx) -> Cluster:
    try:
        return get_cluster(dep.cluster)
    except LookupError as exc:
        ctx.fail(("cluster",), _message(exc))
    raise AssertionError  # unreachable


def rule_dtype_supported(dep: Deployment, cluster: Cluster, ctx: _Ctx) -> None:
    peaks = cluster.device.peak_flops_per_s
    if dep.weight_dtype not in peaks:
        ctx.fail(("weight_dtype",), f"{cluster.device.name} has no {dep.weight_dtype} compute "
                                    f"(valid: {', '.join(sorted(peaks))})")


def rule_tp_divides_heads(model: ModelConfig, pool: Pool, path: tuple, ctx: _Ctx) -> None:
    heads = model.num_heads
    for deg, name in ((pool.attention.tp, "tp"), (pool.attention.sp, "sp")):
        if heads % deg:
            ctx.fail(path + ("attention", name), f"{deg} does not divide {heads} attention heads (valid: {_divisors(heads)})")
    tp_sp = pool.attention.tp * pool.attention.sp
    if heads % tp_sp:
        ctx.fail(path + ("attention", "sp"),
                 f"tp x sp = {tp_sp} does not divide {heads} attention heads (valid products: {_divisors(heads)})")
    if not model.is_mla:
        kv = model.attention.num_kv_heads
        tp = pool.attention.tp
        if kv % tp and tp % kv:
            ctx.fail(path + ("attention", "tp"),
                     f"{tp} neither divides nor is a multiple of {kv} KV heads (valid: {_divisors(heads)} with kv-head split or replication)")


def rule_ep_divides_experts(model: ModelConfig, pool: Pool, path: tuple, ctx: _Ctx) -> None:
    if model.moe is None:
        if pool.moe.ep != 1 or pool.moe.redundant_experts:
            ctx.fail(path + ("moe", "ep"), f"{model.name} is dense: moe.ep must be 1 and redundant_experts 0")
        return
    slots = model.moe.num_routed_experts + pool.moe.redundant_experts
    if slots % pool.moe.ep:
        ctx.fail(path + ("moe", "ep"),
                 f"{pool.moe.ep} does not divide {model.moe.num_routed_experts} routed + {pool.moe.redundant_experts} "
                 f"redundant experts (valid: {_divisors(slots, pool.devices_per_instance)})")
    inter = model.moe.intermediate_size
    if inter % pool.moe.tp:
        ctx.fail(path + ("moe", "tp"), f"{pool.moe.tp} does not divide expert width {inter} (valid: {_divisors(inter, 64)})")


def rule_parallelism_covers_instance(model: ModelConfig, pool: Pool, path: tuple, ctx: _Ctx) -> None:
    a = pool.attention
    attn = a.tp * a.dp * a.sp * pool.pp
    if attn != pool.devices_per_instance:
        ctx.fail(path + ("devices_per_instance",),
                 f"{pool.devices_per_instance} devices but attention tp x dp x sp x pp = {a.tp}x{a.dp}x{a.sp}x{pool.pp} = {attn}")
    if model.moe is not None:
        moe = pool.moe.ep * pool.moe.tp * pool.pp
        if moe != pool.devices_per_instance:
            ctx.fail(path + ("moe", "ep"),
                     f"moe ep x tp x pp = {pool.moe.ep}x{pool.moe.tp}x{pool.pp} = {moe} must equal devices_per_instance "
                     f"{pool.devices_per_instance}")
    if model.num_layers % pool.pp:
        ctx.fail(path + ("pp",), f"{pool.pp} does not divide {model.num_layers} layers (valid: {_divisors(model.num_layers)})")


def rule_tp_within_node(pool: Pool, cluster: Cluster, path: tuple, ctx: _Ctx) -> None:
    scale_up = cluster.tiers[0].span_devices
    if pool.attention.tp > scale_up:
        ctx.fail(path + ("attention", "tp"),
                 f"tp {pool.attention.tp} spans beyond one {cluster.tiers[0].name} domain of {scale_up} devices "
                 f"(valid: up to {scale_up})")


def rule_mtp_needs_module(model: ModelConfig, pool: Pool, path: tuple, ctx: _Ctx) -> None:
    if pool.mtp_depth and not model.num_mtp_modules:
        ctx.fail(path + ("mtp_depth",), f"{model.name} has no MTP module (valid: 0)")
    if pool.mtp_depth and pool.mtp_acceptance == 0:
        ctx.fail(path + ("mtp_acceptance",), "mtp_depth > 0 needs an acceptance rate in (0, 1]")


def rule_draft_model(model: ModelConfig, pool: Pool, path: tuple, ctx: _Ctx) -> None:
    """A draft model needs a known model, a length, an accepted length within it, and no MTP."""
    if pool.draft_model is None:
        if pool.draft_tokens or pool.draft_accepted_tokens:
            ctx.fail(path + ("draft_model",), "draft_tokens / draft_accepted_tokens need a draft_model")
        return
    try:
        draft = get_model(pool.draft_model)
    except LookupError as exc:
        ctx.fail(path + ("draft_model",), _message(exc))
    if pool.mtp_depth:
        ctx.fail(path + ("draft_model",), "use either MTP (mtp_depth) or a draft model, not both")
    if pool.draft_tokens < 1:
        ctx.fail(path + ("draft_tokens",), "a draft model needs draft_tokens >= 1")
    if not 0 < pool.draft_accepted_tokens <= pool.draft_tokens:
        ctx.fail(path + ("draft_accepted_tokens",),
                 f"{pool.draft_accepted_tokens} must be in (0, draft_tokens={pool.draft_tokens}]")
    if draft.attention.num_heads % pool.attention.tp:
        ctx.fail(path + ("draft_model",), f"attention tp {pool.attention.tp} does not divide the draft's "
                 f"{draft.attention.num_heads} heads")
    if draft.vocab_size != model.vocab_size:
        ctx.fail(path + ("draft_model",), f"draft vocabulary {draft.vocab_size} differs from the target's "
                 f"{model.vocab_size} (valid: a model of the same family)")


def rule_instances_fit_cluster(dep: Deployment, cluster: Cluster, ctx: _Ctx) -> None:
    total = sum(p.devices for p in dep.pools().values())
    if total > cluster.num_devices:
        parts = " + ".join(f"{role} {p.instances}x{p.devices_per_instance}" for role, p in dep.pools().items())
        ctx.fail(("serving",), f"{parts} = {total} devices exceed cluster {cluster.name}'s {cluster.num_devices}")


def rule_memory_fits(dep: Deployment, model: ModelConfig, cluster: Cluster, ctx: _Ctx) -> None:
    min_seq = max_tokens_of(dep.workload.prompt_tokens) + max_tokens_of(dep.workload.output_tokens)
    for role, pool in dep.pools().items():
        mem = pool_memory(model, pool, cluster.device, dep.weight_dtype, dep.kv_dtype)
        gib = 2**30
        if mem.weight_bytes > mem.usable_bytes:
            ctx.fail(dep.pool_path(role) + ("devices_per_instance",),
                     f"weights need {mem.weight_bytes / gib:.1f} GiB per device but {cluster.device.name} offers "
                     f"{mem.usable_bytes / gib:.1f} GiB (hbm x kv_memory_fraction); add devices or shard further")
        if mem.kv_capacity_tokens < min_seq:
            ctx.fail(dep.pool_path(role) + ("devices_per_instance",),
                     f"after {mem.weight_bytes / gib:.1f} GiB of weights a device holds KV for "
                     f"{int(mem.kv_capacity_tokens)} tokens, less than one longest request ({min_seq} tokens)")


def check_deployment(dep: Deployment, filename: str = "<deployment>", locs: dict | None = None) -> None:
    """Run every rule; the first violation raises ConfigError."""
    ctx = _Ctx(filename, locs or {})
    model = rule_model_known(dep, ctx)
    cluster = rule_cluster_known(dep, ctx)
    rule_dtype_supported(dep, cluster, ctx)
    for role, pool in dep.pools().items():
        path = dep.pool_path(role)
        rule_tp_divides_heads(model, pool, path, ctx)
        rule_ep_divides_experts(model, pool, path, ctx)
        rule_parallelism_covers_instance(model, pool, path, ctx)
        rule_tp_within_node(pool, cluster, path, ctx)
        rule_mtp_needs_module(model, pool, path, ctx)
        rule_draft_model(model, pool, path, ctx)
    rule_instances_fit_cluster(dep, cluster, ctx)
    rule_memory_fits(dep, model, cluster, ctx)
    rule_trace_replays(dep, ctx)


def rule_trace_replays(dep: Deployment, ctx: _Ctx) -> None:
    """A trace arrival's file reads and its slice holds requests (``workloads.traces``; the parse is
    memoised, so ``simulate`` does not read the file twice)."""
    if dep.workload.arrival.kind != "trace":
        return
    from workloads.traces import workload_trace

    try:
        workload_trace(dep.workload)
    except ValueError as exc:
        ctx.fail(("workload", "arrival", "path"), str(exc))


def deployment_report(dep: Deployment) -> dict:
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
