"""Reject infeasible pool choices with the reason the deployment rules give.

Divisibility and fit are the rule functions of ``workloads.deployment_rules`` (so a planner
reason reads exactly like a ``clustersim validate`` error, minus the file position), run on a
one-pool deployment against the *resolved* cluster (which may be a what-if variant that is not
in the catalog). Then ``workloads.ops.Parallelism.validate_for`` on the instance the cost model
will run (``planner.analytic.instance_spec``). Memory is ``pool_memory`` (weights and KV per
device) less an activation workspace estimate (``activation_bytes``), which must leave KV room
for at least one longest request.
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads.accounting import ACT_BYTES, dtype_bytes
from workloads.deployment import ColocatedServing, Deployment, FixedLength, PoissonArrival, Workload
from workloads.deployment_rules import (
    _Ctx,
    pool_memory,
    rule_dtype_supported,
    rule_ep_divides_experts,
    rule_mtp_needs_module,
    rule_parallelism_covers_instance,
    rule_tp_divides_heads,
    rule_tp_within_node,
)
from workloads.yamlloc import ConfigError

__all__ = ["PoolFit", "check_rules", "pool_fit", "activation_bytes", "ACTIVATION_BUFFERS"]

#: hidden-sized BF16 buffers alive per token during a layer (residual, normed input, q/kv
#: projections, attention output, FFN input): an estimate of the activation workspace, not a
#: measured figure. Routed-expert buffers (dispatch receive, combine) and FP32 logits are added
#: separately in ``activation_bytes``.
ACTIVATION_BUFFERS = 6


def _one_pool_deployment(ctx, choice) -> Deployment:
    return Deployment(
        name="plan-check", cluster=ctx.cluster.name, model=ctx.model, weight_dtype=ctx.weight_dtype,
        kv_dtype=ctx.kv_dtype,
        serving=ColocatedServing(mode="colocated", pool=choice.to_pool(1, ctx)),
        workload=Workload(arrival=PoissonArrival(kind="poisson", rate_per_s=1.0),
                          prompt_tokens=FixedLength(kind="fixed", tokens=ctx.max_prompt_tokens),
                          output_tokens=FixedLength(kind="fixed", tokens=ctx.max_output_tokens), num_requests=1),
    )


def check_rules(ctx, choice, model, cluster) -> str | None:
    """The first divisibility/fit rule a pool choice breaks, as ``role.field: problem``; None if none."""
    from planner.analytic import instance_spec

    role = choice.role
    try:
        dep = _one_pool_deployment(ctx, choice)
        pool = dep.serving.pool
        rctx = _Ctx("<plan>", {})
        path = ("serving", "pool")
        rule_dtype_supported(dep, cluster, rctx)
        rule_tp_divides_heads(model, pool, path, rctx)
        rule_ep_divides_experts(model, pool, path, rctx)
        rule_parallelism_covers_instance(model, pool, path, rctx)
        rule_tp_within_node(pool, cluster, path, rctx)
        rule_mtp_needs_module(model, pool, path, rctx)
        if choice.devices_per_instance > ctx.budget_devices:
            return f"{role}.devices_per_instance: {choice.devices_per_instance} exceeds the budget of {ctx.budget_devices}"
        instance_spec(ctx, choice, model, cluster).parallelism().validate_for(model)
    except (ConfigError, ValueError) as exc:
        msg = str(exc)
        if msg.startswith("<plan>: "):
            msg = msg[len("<plan>: "):]
        return msg.replace("serving.pool.", f"{role}.")
    return None


def activation_bytes(model, choice, tokens_per_rank: float, logits_rows: float) -> float:
    """Activation workspace per device for ``tokens_per_rank`` tokens in flight (estimate).

    ACTIVATION_BUFFERS hidden-sized BF16 buffers per token, the MoE dispatch receive and
    combine buffers (top_k copies per token, BF16), and FP32 logits for ``logits_rows`` rows
    over the vocabulary shard.
    """
    h = model.hidden_size
    t = tokens_per_rank / max(choice.attn_sp, 1)
    act = t * h * ACT_BYTES * ACTIVATION_BUFFERS
    if model.moe is not None:
        act += 2 * t * model.moe.top_k * h * ACT_BYTES
    act += logits_rows * model.vocab_size / max(choice.attn_tp, 1) * dtype_bytes("fp32")
    return act


@dataclass(frozen=True)
class PoolFit:
    """Memory account of one pool choice (per device)."""

    weight_bytes: float
    activation_bytes: float
    kv_bytes_per_token: float
    kv_capacity_tokens: float
    reason: str | None
    shortfall: float = float("nan")  # when rejected: memory needed / memory there (>= 1)


def pool_fit(ctx, choice, model, cluster) -> PoolFit:
    """Weights + activations + KV for one pool choice; reason set when a longest request does not fit."""
    pool = choice.to_pool(1, ctx)
    mem = pool_memory(model, pool, cluster.device, ctx.weight_dtype, ctx.kv_dtype)
    new = 1 + choice.mtp_depth
    if choice.role == "prefill":
        tokens, rows = choice.tokens_per_rank, max(1.0, choice.tokens_per_rank / max(ctx.prefill_tokens, 1.0))
    elif choice.role == "decode":
        tokens, rows = choice.batch_per_rank * new, choice.batch_per_rank * new
    else:
        tokens, rows = choice.batch_per_rank * new + choice.tokens_per_rank, choice.batch_per_rank * new
    act = activation_bytes(model, choice, tokens, rows)
    free = mem.usable_bytes - mem.weight_bytes - act
    cap = free / mem.kv_bytes_per_token if mem.kv_bytes_per_token else float("inf")
    longest = ctx.max_prompt_tokens + ctx.max_output_tokens
    gib = 2**30
    reason = None
    if mem.weight_bytes + act > mem.usable_bytes:
        reason = (f"{choice.role}.devices_per_instance: weights {mem.weight_bytes / gib:.1f} GiB + activations "
                  f"{act / gib:.1f} GiB per device exceed {cluster.device.name}'s {mem.usable_bytes / gib:.1f} GiB "
                  f"(hbm x kv_memory_fraction)")
    elif cap * choice.attn_sp < longest:
        reason = (f"{choice.role}.devices_per_instance: after {mem.weight_bytes / gib:.1f} GiB of weights and "
                  f"{act / gib:.1f} GiB of activations a device holds KV for {int(cap)} tokens, less than one "
                  f"longest request ({longest} tokens)")
    need = mem.weight_bytes + act + longest * mem.kv_bytes_per_token / max(choice.attn_sp, 1)
    return PoolFit(mem.weight_bytes, act, mem.kv_bytes_per_token, max(cap, 0.0), reason,
                   need / mem.usable_bytes if reason else float("nan"))
