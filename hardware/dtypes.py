"""Bytes per element of every dtype name clustersim knows: the one table.

Everything that turns a dtype name into bytes reads it from here: weights, KV cache and
activations (``workloads.accounting``, ``workloads.ops``), MoE dispatch payloads
(``hardware.dispatch``), training activations (``simulator.training``) and the profile's
roofline fit (``calibration.profile``). It lives in the bottom layer so that ``hardware/`` can
use it too. Names are case-insensitive.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

__all__ = ["DTYPE_BYTES", "dtype_bytes"]

#: Bytes per element of each supported dtype name (read-only).
DTYPE_BYTES: Mapping[str, float] = MappingProxyType({
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp4": 0.5,
    "int4": 0.5,
})


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of ``dtype`` (e.g. 'bf16' -> 2.0); ValueError listing the valid names."""
    try:
        return DTYPE_BYTES[dtype.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown dtype {dtype!r} (valid: {', '.join(DTYPE_BYTES)})") from None
