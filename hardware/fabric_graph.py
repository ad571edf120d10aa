"""A cluster's fabric as a networkx graph at node/switch granularity, with device-to-device paths.

Built from ``Cluster.tiers`` only, so it is O(nodes * planes) in size, never O(devices^2):

* tiers whose span fits inside a node (``span <= devices_per_node``, e.g. NVLink, UB inside a
  node) are not vertices: each device has its own ``("tx", dev, t)`` / ``("rx", dev, t)`` port
  links into them;
* every outer tier t becomes one aggregated switch vertex ``("sw", t, block, plane)`` per block
  of ``span_devices`` devices and per plane; nodes ``("node", n)`` attach to the first switch tier
  on every plane, blocks of tier t attach to the enclosing block of tier t+1 on the same plane.
  A device additionally has its own NIC port links ``("tx"/"rx", dev, t)`` into the first switch
  tier, so a GPU's traffic is bounded by its own NIC.

Link ids are hashable tuples: device ports as above and directed edges ``(u, v)`` between graph
vertices. ``capacities`` maps every link id to achievable bytes/s (``achievable_bytes_per_s`` of
its tier, times the number of devices aggregated behind the edge on that plane).

Multi-plane rule (DeepSeek MPFT): device with local index i sits on plane ``i % planes``; a
transfer to a device on another plane first crosses the node's scale-up fabric to the local GPU
on the destination plane (NVLink forwarding), then stays on that plane. Paths are computed by
walking the per-plane tree up to the lowest common block and down (equal to the networkx shortest
path; the tests check this), so a path costs O(tiers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import networkx as nx

from hardware.collectives import CommCalibration, achievable_bytes_per_s, load_comm_calibration
from hardware.flows import maxmin_rates
from hardware.types import Cluster

__all__ = ["FabricGraph", "build_fabric_graph", "transfer_rates"]

LinkId = Hashable


@dataclass(frozen=True, slots=True)
class FabricGraph:
    """The graph plus per-link capacities; build with :func:`build_fabric_graph`."""

    cluster: Cluster
    graph: nx.Graph
    capacities: Mapping[LinkId, float]
    node_tiers: tuple[int, ...]  # tier indices inside a node (device port links)
    switch_tiers: tuple[int, ...]  # tier indices that are switch vertices
    planes: int

    def node_of(self, device: int) -> int:
        return device // self.cluster.devices_per_node

    def plane_of(self, device: int) -> int:
        return (device % self.cluster.devices_per_node) % self.planes

    def _check(self, device: int) -> None:
        if not 0 <= device < self.cluster.num_devices:
            raise ValueError(f"device {device} not in 0..{self.cluster.num_devices - 1} of {self.cluster.name}")

    def _plane_at(self, tier: int, plane: int) -> int:
        return plane if self.cluster.tiers[tier].planes > 1 else 0

    def _common_tier(self, node_a: int, node_b: int) -> int:
        dpn = self.cluster.devices_per_node
        for t in self.switch_tiers:
            span = self.cluster.tiers[t].span_devices
            if node_a * dpn // span == node_b * dpn // span:
                return t
        raise ValueError(f"cluster {self.cluster.name}: no tier joins nodes {node_a} and {node_b}")

    def _switch_path(self, node_a: int, node_b: int, plane_up: int, plane_down: int) -> list[LinkId]:
        dpn = self.cluster.devices_per_node
        up = [("node", node_a)]
        down = [("node", node_b)]
        for t in self.switch_tiers:
            span = self.cluster.tiers[t].span_devices
            a, b = node_a * dpn // span, node_b * dpn // span
            up.append(("sw", t, a, self._plane_at(t, plane_up)))
            if a == b:
                break
            down.append(("sw", t, b, self._plane_at(t, plane_down)))
        vertices = up + down[::-1]
        return [(u, v) for u, v in zip(vertices, vertices[1:])]

    def path(self, src: int, dst: int) -> tuple[LinkId, ...]:
        """Link ids a transfer from device ``src`` to device ``dst`` crosses."""
        self._check(src)
        self._check(dst)
        if src == dst:
            return ()
        dpn = self.cluster.devices_per_node
        node_a, node_b = self.node_of(src), self.node_of(dst)
        inner = self.node_tiers[-1] if self.node_tiers else None
        if node_a == node_b and inner is not None:
            return (("tx", src, inner), ("rx", dst, inner))
        first = self.switch_tiers[0]
        links: list[LinkId] = []
        sender = src
        plane_src, plane_dst = self.plane_of(src), self.plane_of(dst)
        common = self._common_tier(node_a, node_b)
        if plane_src != plane_dst and self.cluster.tiers[common].planes > 1 and inner is not None:
            # the planes only meet inside the node: forward to the local GPU on the destination plane
            local = src % dpn
            sender = node_a * dpn + local - local % self.planes + plane_dst
            links += [("tx", src, inner), ("rx", sender, inner)]
            plane_src = plane_dst
        links.append(("tx", sender, first))
        links += self._switch_path(node_a, node_b, plane_src, plane_dst)
        links.append(("rx", dst, first))
        return tuple(links)


def build_fabric_graph(cluster: Cluster, calibration: CommCalibration | None = None) -> FabricGraph:
    """Build the aggregated node/switch graph of ``cluster`` (see module docstring)."""
    calib = calibration or load_comm_calibration()
    dpn = cluster.devices_per_node
    tiers = cluster.tiers
    node_tiers = tuple(t for t, tier in enumerate(tiers) if tier.span_devices <= dpn)
    switch_tiers = tuple(t for t, tier in enumerate(tiers) if tier.span_devices > dpn)
    planes = max((tiers[t].planes for t in switch_tiers), default=1)
    if dpn % planes and planes > 1:
        raise ValueError(f"cluster {cluster.name}: {planes} planes do not divide {dpn} devices per node")
    per_plane = max(dpn // planes, 1)
    bw = [achievable_bytes_per_s(t, calib) for t in tiers]

    graph = nx.Graph()
    capacities: dict[LinkId, float] = {}
    n_dev = cluster.num_devices
    for t in node_tiers:
        for dev in range(n_dev):
            capacities[("tx", dev, t)] = bw[t]
            capacities[("rx", dev, t)] = bw[t]

    def add(u, v, cap):
        graph.add_edge(u, v, capacity_bytes_per_s=cap)
        capacities[(u, v)] = cap
        capacities[(v, u)] = cap

    def planes_of(t: int) -> int:
        return planes if tiers[t].planes > 1 else 1

    graph.add_nodes_from(("node", n) for n in range(cluster.num_nodes))
    if switch_tiers:
        first = switch_tiers[0]
        for dev in range(n_dev):
            capacities[("tx", dev, first)] = bw[first]
            capacities[("rx", dev, first)] = bw[first]
        span_first = tiers[first].span_devices
        for node in range(cluster.num_nodes):
            for plane in range(planes):
                up = ("sw", first, node * dpn // span_first, plane % planes_of(first))
                cap = per_plane * bw[first] * (planes // planes_of(first))
                if not graph.has_edge(("node", node), up):
                    add(("node", node), up, cap)
    for lower, upper in zip(switch_tiers, switch_tiers[1:]):
        span_lo, span_up = tiers[lower].span_devices, tiers[upper].span_devices
        for block in range(-(-n_dev // span_lo)):
            devices_in_block = min(span_lo, n_dev - block * span_lo)
            cap = devices_in_block / planes_of(lower) * bw[upper]
            for plane in range(planes_of(lower)):
                add(("sw", lower, block, plane), ("sw", upper, block * span_lo // span_up, plane % planes_of(upper)), cap)
    return FabricGraph(cluster, graph, capacities, node_tiers, switch_tiers, planes)


def transfer_rates(fabric: FabricGraph, transfers: Sequence[tuple[int, int]]) -> list[float]:
    """Max-min fair rates (bytes/s) of concurrent device-to-device transfers on ``fabric``."""
    return maxmin_rates([fabric.path(a, b) for a, b in transfers], fabric.capacities)
