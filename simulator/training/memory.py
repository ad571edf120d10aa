"""Memory per device of a training layout: parameters, gradients, optimizer states, activations.

Conventions (mixed-precision AdamW, as in ZeRO, Rajbhandari et al. arXiv 1910.02054 §3.1):

* parameters are held in BF16 for compute (2 bytes; FP8 training quantises them on the fly);
* gradients are accumulated in ``job.grad_dtype`` (FP32 by default: DeepSeek-V3 §3.3 keeps
  weight gradients in FP32);
* optimizer states: an FP32 master copy (4 bytes) plus two moments in
  ``job.optimizer_moment_dtype`` (FP32 = 12 bytes per parameter, ZeRO's K = 12; BF16 moments
  as DeepSeek-V3 = 8 bytes);
* ZeRO stage >= 1 shards optimizer states over the parameter's data-parallel group, >= 2 also
  gradients, 3 also parameters. Dense (non-expert) parameters are replicated over dp (x 2 for
  DualPipe's two copies); routed experts over the expert-DP group
  ``stage devices / max(ep, tp x sp x cp)`` (x 2 for DualPipe).
* activations: the per-micro-batch bytes of each stage (``step.activation_bytes``) times the
  in-flight micro-batches, taken from the pipeline simulation's peak (1F1B: PP on the first
  stage, DualPipe: PP + 1 chunks).

A layout whose busiest device exceeds the usable memory is rejected with a reason naming the
device, the total and its largest part.
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads.accounting import dtype_bytes, layer_params, mtp_params
from workloads.models import ModelConfig
from workloads.ops import stage_layers
from workloads.training import TrainingJob

from simulator.training.schedules import get_schedule

__all__ = ["StageParams", "stage_params", "data_parallel_groups", "DeviceMemory", "device_memory", "OutOfMemory"]

GB = 1e9


class OutOfMemory(ValueError):
    """A training layout that does not fit in device memory (message gives the reason)."""


@dataclass(frozen=True, slots=True)
class StageParams:
    """Parameters one device holds for one pipeline stage: ``dense`` (replicated over DP) and
    ``expert`` (routed experts, replicated over expert DP)."""

    dense: float
    expert: float

    @property
    def total(self) -> float:
        return self.dense + self.expert


def stage_params(job: TrainingJob, model: ModelConfig, stage: int, stages: int,
                 layers: tuple[int, int] | None = None) -> StageParams:
    """Parameters of pipeline ``stage`` (of ``stages``) on one device, after TP/EP sharding;
    ``layers``: its (dense, MoE) layer counts (default: ``workloads.ops.stage_layers``)."""
    p = job.parallelism
    dense_n, moe_n = layers if layers is not None else stage_layers(model, stages, stage)
    tp = p.tp
    dense = expert = 0.0
    if dense_n:
        lp = layer_params(model, "dense")
        dense += dense_n * sum(lp.values()) / tp
    if moe_n:
        lp = layer_params(model, "moe")
        routed = lp.pop("moe.routed_experts")
        expert += moe_n * routed / max(p.ep, p.tp * p.sp * p.cp)  # EP x expert-TP shards
        dense += moe_n * sum(lp.values()) / tp
    emb = model.vocab_size * model.hidden_size / tp
    if stage == 0:
        dense += emb
    if stage == stages - 1:
        dense += (0 if model.tie_word_embeddings else emb) + model.hidden_size
        if job.include_mtp and model.num_mtp_modules:
            mp = mtp_params(model)
            blk = mp["block"]
            if model.moe is not None:
                r = layer_params(model, "moe")["moe.routed_experts"] * model.num_mtp_modules
                expert += r / max(p.ep, p.tp * p.sp * p.cp)
                blk -= r
            dense += (blk + mp["eh_proj"] + mp["norms"]) / tp
    return StageParams(dense, expert)


def data_parallel_groups(job: TrainingJob) -> tuple[int, int]:
    """(dense DP group, expert DP group) sizes that gradients are reduced over."""
    p = job.parallelism
    copies = get_schedule(p.pp_schedule).stage_replicas()
    inner = p.tp * p.sp * p.cp
    expert_dp = p.stage_devices // max(p.ep, inner)
    return p.dp * p.sp * p.cp * copies, max(1, expert_dp) * copies


@dataclass(frozen=True)
class DeviceMemory:
    """Bytes on one device (the ``device`` index of the pipeline)."""

    device: int
    params_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    reserved_bytes: float
    limit_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.params_bytes + self.grads_bytes + self.optimizer_bytes + self.activations_bytes + self.reserved_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.limit_bytes

    def as_dict(self) -> dict[str, float]:
        return {"device": self.device, "params_gb": self.params_bytes / GB, "grads_gb": self.grads_bytes / GB,
                "optimizer_gb": self.optimizer_bytes / GB, "activations_gb": self.activations_bytes / GB,
                "reserved_gb": self.reserved_bytes / GB, "total_gb": self.total_bytes / GB,
                "limit_gb": self.limit_bytes / GB}

    def reason(self) -> str:
        parts = {"parameters": self.params_bytes, "gradients": self.grads_bytes,
                 "optimizer states": self.optimizer_bytes, "activations": self.activations_bytes}
        big = max(parts, key=parts.get)
        return (f"out of memory on pipeline device {self.device}: {self.total_bytes / GB:.1f} GB > "
                f"{self.limit_bytes / GB:.1f} GB usable (largest part: {big} {parts[big] / GB:.1f} GB)")


def device_memory(job: TrainingJob, model: ModelConfig, hbm_bytes: float, held_stages: list[tuple[int, ...]],
                  peak_act_bytes: list[float], split: tuple[tuple[int, int], ...] = ()) -> list[DeviceMemory]:
    """Memory of every pipeline device. ``held_stages[d]``: the stages device d holds;
    ``peak_act_bytes[d]``: its peak in-flight activation bytes from the pipeline simulation;
    ``split``: (dense, MoE) layers per stage (default: ``workloads.ops.stage_layers``)."""
    p = job.parallelism
    stages = p.pipeline_stages
    g_dense, g_expert = data_parallel_groups(job)
    grad_b = dtype_bytes(job.grad_dtype)
    opt_b = dtype_bytes("fp32") + 2 * dtype_bytes(job.optimizer_moment_dtype)  # FP32 master + two moments
    z = p.zero_stage
    reserved = job.memory_reserved_gb * GB
    limit = job.memory_limit_gb * GB if job.memory_limit_gb is not None else hbm_bytes - reserved
    if job.memory_limit_gb is not None:
        reserved = 0.0  # an explicit limit is what the job may use
    out = []
    for d, held in enumerate(held_stages):
        sp = [stage_params(job, model, s, stages, split[s] if split else None) for s in held]
        dense = sum(x.dense for x in sp)
        expert = sum(x.expert for x in sp)

        def shard(n_dense: float, n_expert: float, on: bool) -> float:
            return (n_dense / g_dense + n_expert / g_expert) if on else (n_dense + n_expert)

        params = dtype_bytes("bf16") * shard(dense, expert, z >= 3)
        grads = grad_b * shard(dense, expert, z >= 2)
        opt = opt_b * shard(dense, expert, z >= 1)
        out.append(DeviceMemory(d, params, grads, opt, peak_act_bytes[d], reserved, limit))
    return out
