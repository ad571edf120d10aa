"""clustersim workloads: model catalog, exact accounting and per-step operator lists.

* ``workloads.models``: ``get_model``/``list_models`` over the YAML catalog (frozen ModelConfig).
* ``workloads.accounting``: parameters, weight bytes, KV bytes and FLOPs per token, in closed form.
* ``workloads.ops``: ``step_ops(model, batch, parallelism)``, the ops one device runs per step.
* ``workloads.op``: the ``Op`` record shared with the simulator.
"""

from workloads.accounting import (
    accounting_table,
    activated_params,
    checkpoint_params,
    kv_cache_bytes_per_token,
    total_params,
    training_flops_per_token,
    weight_bytes,
)
from workloads.models import ModelConfig, UnknownModelError, get_model, list_models
from workloads.op import Op
from workloads.ops import BatchShape, Parallelism, ParallelismError, step_ops, summarize_ops

__all__ = [
    "get_model",
    "list_models",
    "ModelConfig",
    "UnknownModelError",
    "total_params",
    "activated_params",
    "checkpoint_params",
    "kv_cache_bytes_per_token",
    "training_flops_per_token",
    "weight_bytes",
    "accounting_table",
    "Parallelism",
    "ParallelismError",
    "BatchShape",
    "step_ops",
    "summarize_ops",
    "Op",
]
