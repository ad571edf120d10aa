"""clustersim hardware layer: accelerator and fabric catalogs, topology accounting.

Re-exports the catalog API and the shared types. The collective/dispatch/flow models live in
``hardware.collectives``, ``hardware.dispatch`` and ``hardware.flows`` and are imported from
there directly (not here, to keep ``import hardware`` light).
"""

from hardware.catalog import (
    UnknownNameError,
    cluster_report,
    get_cluster,
    get_device,
    get_network_prices,
    list_clusters,
    list_devices,
)
from hardware.types import Cluster, DeviceSpec, Tier, Topology

__all__ = [
    "Cluster",
    "DeviceSpec",
    "Tier",
    "Topology",
    "UnknownNameError",
    "cluster_report",
    "get_cluster",
    "get_device",
    "get_network_prices",
    "list_clusters",
    "list_devices",
]
