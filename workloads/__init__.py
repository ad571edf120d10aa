"""clustersim workloads: model catalog, exact accounting and per-step operator lists.

* ``workloads.models``: ``get_model``/``list_models`` over the YAML catalog (frozen ModelConfig).
* ``workloads.accounting``: parameters, weight bytes, KV bytes and FLOPs per token, in closed form.
* ``workloads.layout``: ``Layout``, how a model replica is split over devices, and its one set of rules.
* ``workloads.ops``: ``step_ops(model, batch, layout)``, the ops one device runs per step.
* ``workloads.op``: the ``Op`` record shared with the simulator.
"""

#: each public name -> the module that is its home; resolved on first use (PEP 562), so importing
#: one submodule (``workloads.limits``, ``workloads.models``) does not import them all
_HOME = {
    "accounting_table": "accounting", "activated_params": "accounting", "checkpoint_params": "accounting",
    "kv_cache_bytes_per_token": "accounting", "total_params": "accounting",
    "training_flops_per_token": "accounting", "weight_bytes": "accounting",
    "ModelConfig": "models", "UnknownModelError": "models", "get_model": "models", "list_models": "models",
    "Op": "op", "Layout": "layout", "ParallelismError": "layout",
    "BatchShape": "ops", "step_ops": "ops", "summarize_ops": "ops",
}

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


def __getattr__(name: str):
    if name in _HOME:
        from importlib import import_module

        return getattr(import_module(f"workloads.{_HOME[name]}"), name)
    raise AttributeError(f"module 'workloads' has no attribute {name!r}")
