"""Reject infeasible pool choices with the reason the deployment rules give; the instance each one costs.

A choice must first be a pool a deployment file can hold (the schema's bounds). Divisibility
and fit are the one validator, ``workloads.layout.Layout.problems``, run as a
serving deployment runs it (``workloads.deployment_rules.serving_layout_problems``, with the
dtype and MTP rules beside it) against the *resolved* cluster (which may be a what-if variant
that is not in the catalog), so a planner reason reads exactly like a ``clustersim validate``
error, minus the file position (``decode.moe.ep: ...``). Then the instance the cost model will
run (``instance_spec``: redundant experts folded into an equivalent EP) must pass it too.
Memory is ``layout_memory`` (weights and KV per device) less an activation workspace estimate
(``activation_bytes``), which must leave KV room for at least one longest request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pydantic import ValidationError

from simulator.instance import InstanceSpec
from workloads.accounting import ACT_BYTES, dtype_bytes
from workloads.deployment import Pool
from workloads.deployment_rules import dtype_problems, layout_memory, mtp_problems, serving_layout_problems
from workloads.layout import ParallelismError
from workloads.yamlloc import dotted

__all__ = ["PoolFit", "check_rules", "instance_spec", "pool_fit", "activation_bytes", "ACTIVATION_BUFFERS"]

#: hidden-sized BF16 buffers alive per token during a layer (residual, normed input, q/kv
#: projections, attention output, FFN input): an estimate of the activation workspace, not a
#: measured figure. Routed-expert buffers (dispatch receive, combine) and FP32 logits are added
#: separately in ``activation_bytes``.
ACTIVATION_BUFFERS = 6


def instance_spec(ctx, choice, model, cluster) -> InstanceSpec:
    """The InstanceSpec the cost model runs for a pool choice. Redundant experts are folded into
    an equivalent EP (``planner.analytic`` module docstring): an instance with EP ``e`` over
    ``routed + redundant`` slots (s per rank) is costed as EP ``routed / s`` with the same
    per-rank batch, i.e. fewer attention-DP ranks; its layout carries no redundant experts."""
    lay = replace(choice.layout, redundant_experts=0)
    if model.is_moe and model.moe.num_routed_experts % lay.ep:
        routed = model.moe.num_routed_experts
        slots = (routed + choice.layout.redundant_experts) // lay.ep
        if slots == 0 or routed % slots:
            raise ParallelismError(f"ep={lay.ep} with {choice.layout.redundant_experts} redundant experts gives "
                                   f"{slots} slots per rank, which does not divide {routed} routed experts")
        ep_eq = routed // slots
        stage = ep_eq * lay.moe_tp_eff
        if stage % (lay.tp * lay.sp):
            raise ParallelismError(f"equivalent EP {ep_eq} x moe tp {lay.moe_tp_eff} is not a multiple of "
                                   f"attention tp x sp")
        lay = replace(lay, ep=ep_eq, dp=stage // (lay.tp * lay.sp))
    return InstanceSpec(model=model, cluster=cluster, layout=lay, weight_dtype=ctx.weight_dtype,
                        kv_dtype=ctx.kv_dtype, moe_imbalance=ctx.moe_imbalance, mtp_depth=choice.mtp_depth)


def check_rules(ctx, choice, model, cluster) -> str | None:
    """The first rule a pool choice breaks, as ``role.field: problem``; None if none. First the
    pool must be one a deployment file can hold (``PoolChoice.to_pool``: the schema's bounds,
    e.g. ``max_batch_size``), then the rules."""
    role = choice.role
    try:
        choice.to_pool(1, ctx)
    except ValidationError as exc:
        err = exc.errors()[0]
        return f"{role}.{dotted(err['loc'])}: {err['msg']} (got {err['input']})"
    found = dtype_problems(cluster.device, weight_dtype=ctx.weight_dtype)
    if found:
        return f"{found[0].field}: {found[0].problem}"
    found = serving_layout_problems(model, choice.layout, cluster, choice.devices_per_instance)
    found += mtp_problems(model, choice.mtp_depth, ctx.mtp_acceptance if choice.mtp_depth else 0.0)
    if found:
        return f"{role}.{dotted(Pool.layout_path(found[0].field))}: {found[0].problem}"
    if choice.devices_per_instance > ctx.budget_devices:
        return f"{role}.devices_per_instance: {choice.devices_per_instance} exceeds the budget of {ctx.budget_devices}"
    try:
        spec = instance_spec(ctx, choice, model, cluster)
        spec.layout.check(model)
    except ParallelismError as exc:
        return str(exc)
    return None


def activation_bytes(model, choice, tokens_per_rank: float, logits_rows: float) -> float:
    """Activation workspace per device for ``tokens_per_rank`` tokens in flight (estimate).

    ACTIVATION_BUFFERS hidden-sized BF16 buffers per token, the MoE dispatch receive and
    combine buffers (top_k copies per token, BF16), and FP32 logits for ``logits_rows`` rows
    over the vocabulary shard.
    """
    h = model.hidden_size
    t = tokens_per_rank / max(choice.layout.sp, 1)
    act = t * h * ACT_BYTES * ACTIVATION_BUFFERS
    if model.moe is not None:
        act += 2 * t * model.moe.top_k * h * ACT_BYTES
    act += logits_rows * model.vocab_size / max(choice.layout.tp, 1) * dtype_bytes("fp32")
    return act


def choice_memory(ctx, choice, model, cluster):
    """``workloads.deployment_rules.layout_memory`` of a choice's layout (a function of
    ``choice.layout`` and whether MTP is on, given the context)."""
    return layout_memory(model, choice.layout, cluster.device, ctx.weight_dtype, ctx.kv_dtype, mtp=choice.mtp_depth > 0,
                         kv_memory_fraction=ctx.kv_memory_fraction)


@dataclass(frozen=True)
class PoolFit:
    """Memory account of one pool choice (per device)."""

    weight_bytes: float
    activation_bytes: float
    kv_bytes_per_token: float
    kv_capacity_tokens: float
    reason: str | None
    shortfall: float = float("nan")  # when rejected: memory needed / memory there (>= 1)


def pool_fit(ctx, choice, model, cluster, mem=None) -> PoolFit:
    """Weights + activations + KV for one pool choice; reason set when a longest request does not fit.
    ``mem``: the choice's ``choice_memory`` when the caller has it (it depends on the layout and
    MTP only, which many choices share)."""
    if mem is None:
        mem = choice_memory(ctx, choice, model, cluster)
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
    elif cap * choice.layout.sp < longest:
        reason = (f"{choice.role}.devices_per_instance: after {mem.weight_bytes / gib:.1f} GiB of weights and "
                  f"{act / gib:.1f} GiB of activations a device holds KV for {int(cap)} tokens, less than one "
                  f"longest request ({longest} tokens)")
    need = mem.weight_bytes + act + longest * mem.kv_bytes_per_token / max(choice.layout.sp, 1)
    return PoolFit(mem.weight_bytes, act, mem.kv_bytes_per_token, max(cap, 0.0), reason,
                   need / mem.usable_bytes if reason else float("nan"))
