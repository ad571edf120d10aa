"""Flow-level max-min fair bandwidth sharing (progressive filling / water-filling).

A *flow* is a path: a sequence of link ids. Links have capacities in bytes/s. The max-min fair
allocation raises every unfrozen flow's rate at the same pace until some link saturates; the flows
crossing that link are frozen at its fair share, and filling continues with the rest (Bertsekas &
Gallager, *Data Networks*, sec. 6.5.2). The result has the property the tests check: it is
feasible, and every flow has a *bottleneck* link on its path that is saturated and on which no flow
gets a higher rate.

``maxmin_rates`` is the pure function. ``MaxMinAllocator`` is the incremental helper for the
simulator: when a flow starts or ends only the flows that share links with it, transitively (one
connected component of the flow/link graph), can change rate, so only that component is refilled.
The simulator owns the allocator (no global state); ``add``/``remove`` return the rates that changed
so the caller can reschedule exactly those transfers.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

LinkId = Hashable

#: refills ``MaxMinAllocator`` remembers (by the component's paths) before it starts over
_MEMO_ENTRIES = 1 << 14

#: relative slack when deciding that a link is saturated (floating-point water-filling)
_SATURATION_RTOL = 1e-9


def maxmin_rates(
    flows: Sequence[Sequence[LinkId]],
    capacities: Mapping[LinkId, float],
    demands_bytes_per_s: Sequence[float] | None = None,
) -> list[float]:
    """Max-min fair rates (bytes/s) for ``flows`` over links with ``capacities`` (bytes/s).

    ``demands_bytes_per_s`` optionally caps each flow (a flow never gets more than it asks for);
    it is modelled as a private link of that capacity. A flow with an empty path and no demand
    is unconstrained and gets ``inf``. Raises ``KeyError`` naming an unknown link and
    ``ValueError`` for a negative capacity.
    """
    num_flows = len(flows)
    if num_flows == 0:
        return []
    link_index: dict[LinkId, int] = {}
    caps: list[float] = []
    rows: list[int] = []
    cols: list[int] = []
    for f, path in enumerate(flows):
        for link in dict.fromkeys(path):  # a flow crossing a link twice still uses it once
            j = link_index.get(link)
            if j is None:
                try:
                    cap = float(capacities[link])
                except KeyError:
                    raise KeyError(f"flow {f} uses link {link!r} that has no capacity") from None
                if cap < 0:
                    raise ValueError(f"link {link!r} has negative capacity {cap}")
                j = link_index[link] = len(caps)
                caps.append(cap)
            rows.append(f)
            cols.append(j)
    if demands_bytes_per_s is not None:
        if len(demands_bytes_per_s) != num_flows:
            raise ValueError("demands_bytes_per_s must have one entry per flow")
        for f, demand in enumerate(demands_bytes_per_s):
            if demand is not None and np.isfinite(demand):
                rows.append(f)
                cols.append(len(caps))
                caps.append(float(demand))
    return _fill(num_flows, np.asarray(caps, dtype=float), np.asarray(rows, dtype=np.int64),
                 np.asarray(cols, dtype=np.int64)).tolist()


def _fill(num_flows: int, caps: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Progressive filling on an incidence list (flow ``rows[i]`` uses link ``cols[i]``)."""
    rates = np.full(num_flows, np.inf)
    if rows.size == 0:
        return rates
    remaining = caps.copy()
    active_flow = np.zeros(num_flows, dtype=bool)
    active_flow[np.unique(rows)] = True
    level = 0.0  # common rate of all still-active flows
    while active_flow.any():
        live = active_flow[rows]
        n_active = np.bincount(cols[live], minlength=caps.size)
        used = n_active > 0
        # the increment that saturates each link still carrying active flows
        increments = np.full(caps.size, np.inf)
        increments[used] = remaining[used] / n_active[used]
        step = float(increments.min())
        level += step
        remaining[used] -= step * n_active[used]
        saturated = used & (increments <= step * (1.0 + _SATURATION_RTOL))
        frozen = np.unique(rows[live & saturated[cols]])
        rates[frozen] = level
        active_flow[frozen] = False
        remaining[saturated] = 0.0
    return rates


class MaxMinAllocator:
    """Incremental max-min allocation for a changing set of flows (one instance per simulation).

    ``add(flow_id, path)`` and ``remove(flow_id)`` refill only the connected component of flows
    sharing links (transitively) with the changed flow and return ``{flow_id: new_rate}`` for the
    flows whose rate changed (the added flow is always included).

    A refill's rates are ``maxmin_rates`` of the component's paths in order, a pure function of
    them (the capacities are fixed): they are memoised by that tuple of paths (a simulation's
    components repeat: the same few instance pairs, a few flows at a time), up to
    ``_MEMO_ENTRIES`` of them.
    """

    __slots__ = ("_capacities", "_paths", "_flows_on_link", "_rates", "_memo")

    def __init__(self, capacities: Mapping[LinkId, float]):
        self._capacities = dict(capacities)
        self._paths: dict[Hashable, tuple[LinkId, ...]] = {}
        self._flows_on_link: dict[LinkId, set[Hashable]] = {}
        self._rates: dict[Hashable, float] = {}
        self._memo: dict[tuple, list[float]] = {}

    @property
    def rates(self) -> Mapping[Hashable, float]:
        """Current rate (bytes/s) of every active flow (read-only view)."""
        return dict(self._rates)

    def rate(self, flow_id: Hashable) -> float:
        return self._rates[flow_id]

    def add(self, flow_id: Hashable, path: Sequence[LinkId]) -> dict[Hashable, float]:
        if flow_id in self._paths:
            raise ValueError(f"flow {flow_id!r} is already active")
        for link in path:
            if link not in self._capacities:
                raise KeyError(f"flow {flow_id!r} uses link {link!r} that has no capacity")
        self._paths[flow_id] = tuple(dict.fromkeys(path))
        for link in self._paths[flow_id]:
            self._flows_on_link.setdefault(link, set()).add(flow_id)
        changed = self._refill(self._component([flow_id]))
        changed[flow_id] = self._rates[flow_id]
        return changed

    def remove(self, flow_id: Hashable) -> dict[Hashable, float]:
        path = self._paths.pop(flow_id)  # KeyError for an unknown flow
        self._rates.pop(flow_id, None)
        neighbours: set[Hashable] = set()
        for link in path:
            on_link = self._flows_on_link[link]
            on_link.discard(flow_id)
            neighbours |= on_link
            if not on_link:
                del self._flows_on_link[link]
        return self._refill(self._component(neighbours)) if neighbours else {}

    def _component(self, seeds) -> list[Hashable]:
        seen = set(seeds)
        stack = list(seeds)
        seen_links: set[LinkId] = set()
        while stack:
            flow = stack.pop()
            for link in self._paths[flow]:
                if link in seen_links:
                    continue
                seen_links.add(link)
                for other in self._flows_on_link[link]:
                    if other not in seen:
                        seen.add(other)
                        stack.append(other)
        return list(seen)

    def _refill(self, flow_ids: list[Hashable]) -> dict[Hashable, float]:
        paths = tuple([self._paths[f] for f in flow_ids])
        new_rates = self._memo.get(paths)
        if new_rates is None:
            new_rates = maxmin_rates(paths, self._capacities)
            if len(self._memo) >= _MEMO_ENTRIES:
                self._memo.clear()
            self._memo[paths] = new_rates
        changed = {}
        for f, r in zip(flow_ids, new_rates):
            if self._rates.get(f) != r:
                changed[f] = r
            self._rates[f] = r
        return changed
