"""KV-cache transfer from a prefill instance to a decode instance: the one model of its time.

A transfer crosses three links (``kv_path``), each with a capacity in bytes/s
(``kv_link_capacities``):

* the source instance's port: the device's scale-out bandwidth (NIC / RDMA plane) x the
  instance's devices;
* the fabric between the two pools, shared by every transfer: the bisection between them,
  min(prefill devices, decode devices) x scale-out bandwidth / the top tier's
  oversubscription;
* the destination instance's port.

``kv_transfer_seconds`` is the time of one transfer alone on the fabric: its bytes at the
slowest of its links (``kv_transfer_rate``). The planner's analytic model uses it as is; the
serving simulator runs concurrent transfers as max-min fair flows over the same links
(``hardware.flows``, ``simulator.transfer``), so a transfer that runs alone there takes exactly
this time, and contention only ever slows it down.

``kv_port_bytes_per_s`` is an instance's port alone: the rate at which the prefix cache's shared
pool (``simulator.prefix_cache``: CloudMatrix-Infer's EMS, Mooncake's store, beside the
instances on the same fabric) delivers cached KV into an instance.
"""

from __future__ import annotations

import math
from typing import Hashable, Mapping

from hardware.types import Cluster

__all__ = ["FABRIC", "LinkId", "kv_path", "kv_port_bytes_per_s", "kv_link_capacities", "kv_transfer_rate", "kv_transfer_seconds"]

LinkId = Hashable
#: the link every transfer between the two pools shares
FABRIC: LinkId = "fabric"


def _port(instance: Hashable) -> LinkId:
    return ("port", instance)


def kv_path(src: Hashable, dst: Hashable) -> tuple[LinkId, LinkId, LinkId]:
    """Links a transfer from instance ``src`` to instance ``dst`` crosses, in order."""
    return (_port(src), FABRIC, _port(dst))


def kv_port_bytes_per_s(cluster: Cluster, devices: int) -> float:
    """Bytes/s of the port of an instance of ``devices`` devices: their scale-out bandwidth
    (NIC / RDMA plane) together."""
    return cluster.device.scale_out_bytes_per_s * devices


def kv_link_capacities(cluster: Cluster, instance_devices: Mapping[Hashable, int], prefill_devices: int,
                       decode_devices: int) -> dict[LinkId, float]:
    """Capacities (bytes/s) of every instance's port (``instance_devices``: devices per
    instance id) and of the shared fabric between pools of ``prefill_devices`` and
    ``decode_devices`` devices in all."""
    caps: dict[LinkId, float] = {_port(i): kv_port_bytes_per_s(cluster, n) for i, n in instance_devices.items()}
    bw = cluster.device.scale_out_bytes_per_s
    oversub = cluster.tiers[-1].oversubscription if cluster.tiers else 1.0
    caps[FABRIC] = bw * min(prefill_devices, decode_devices) / oversub
    return caps


def kv_transfer_rate(capacities: Mapping[LinkId, float], src: Hashable, dst: Hashable) -> float:
    """Bytes/s of a transfer from ``src`` to ``dst`` alone on the links: its bottleneck."""
    return min(capacities[link] for link in kv_path(src, dst))


def kv_transfer_seconds(nbytes: float, cluster: Cluster, src_devices: int, dst_devices: int,
                        prefill_devices: int, decode_devices: int) -> float:
    """Seconds to move ``nbytes`` of KV cache from a prefill instance of ``src_devices``
    devices to a decode instance of ``dst_devices`` devices, alone on the fabric between
    pools of ``prefill_devices`` and ``decode_devices`` devices (see the module docstring)."""
    caps = kv_link_capacities(cluster, {"src": src_devices, "dst": dst_devices}, prefill_devices, decode_devices)
    rate = kv_transfer_rate(caps, "src", "dst")
    return nbytes / rate if rate > 0 else math.inf
