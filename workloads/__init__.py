"""clustersim workloads: model catalog, exact accounting and per-step operator lists.

* ``workloads.models``: ``get_model``/``list_models`` over the YAML catalog (frozen ModelConfig).
* ``workloads.accounting``: parameters, weight bytes, KV bytes and FLOPs per token, in closed form.
* ``workloads.layout``: ``Layout``, how a model replica is split over devices, and its one set of rules.
* ``workloads.ops``: ``step_ops(model, batch, layout)``, the ops one device runs per step.
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
from workloads.layout import Layout, ParallelismError
from workloads.ops import BatchShape, step_ops, summarize_ops

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
    "Layout",
    "ParallelismError",
    "BatchShape",
    "step_ops",
    "summarize_ops",
    "Op",
]
