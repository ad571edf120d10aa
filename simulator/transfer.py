"""KV-cache transfers between prefill and decode instances as max-min fair flows.

Every transfer is a flow over the links of ``hardware.kv_transfer`` (the source instance's
port, the fabric between the pools, the destination instance's port; ``kv_links`` gives their
capacities for a deployment). That module holds the one model of a transfer's time
(``kv_transfer_seconds``: alone, at its bottleneck link); this one adds contention on top:
``hardware.flows.MaxMinAllocator`` divides the bandwidth, and when a flow starts or ends, the
flows whose rate changed get their remaining bytes brought up to date and a new completion
wake-up. A lone flow runs at ``kv_transfer_rate``, so it takes exactly ``kv_transfer_seconds``.
SimPy cannot cancel a scheduled timeout, so each flow carries a generation counter and a
wake-up whose generation is stale is ignored. One simpy event per rate change, none per byte.
"""

from __future__ import annotations

import itertools
from array import array
from functools import partial
from typing import Any, Callable

import numpy as np

from hardware.flows import MaxMinAllocator
from hardware.kv_transfer import kv_link_capacities, kv_path, kv_transfer_rate


def kv_links(cluster, prefill_pool, decode_pool, prefill_ids, decode_ids) -> dict:
    """Capacities (bytes/s) of the ports of every instance and of the shared fabric link
    (``hardware.kv_transfer.kv_link_capacities`` for the pools of a deployment)."""
    ports = {i: prefill_pool.devices_per_instance for i in prefill_ids}
    ports.update({i: decode_pool.devices_per_instance for i in decode_ids})
    return kv_link_capacities(cluster, ports, prefill_pool.devices, decode_pool.devices)


class _Flow:
    __slots__ = ("remaining_bytes", "rate_bytes_per_s", "t_last_s", "gen", "payload", "start_s", "nbytes", "path")

    def __init__(self, nbytes: float, now: float, payload: Any, path: tuple):
        self.path = path
        self.remaining_bytes = float(nbytes)
        self.nbytes = float(nbytes)
        self.rate_bytes_per_s = 0.0
        self.t_last_s = now
        self.start_s = now
        self.gen = 0
        self.payload = payload


class TransferManager:
    """Active KV transfers of one run; ``on_done(payload, start_s)`` fires at completion."""

    def __init__(self, env, capacities: dict, on_done: Callable[[Any, float], None]):
        self.env = env
        self.capacities = dict(capacities)
        self.alloc = MaxMinAllocator(capacities)
        self._lone: dict[tuple, tuple[tuple, float]] = {}  # (src, dst) -> its path and lone rate
        self._solo: int | None = None  # a lone flow kept outside the allocator (fast path)
        self.flows: dict[int, _Flow] = {}
        self._ids = itertools.count()
        self._on_done = on_done
        self.rate_changes = 0
        self.completed = 0
        self.bytes_moved = 0.0
        #: per completed transfer, as columns (a million-request run completes ~150k transfers: 40 bytes
        #: each here, ~150 as tuples): start_s, end_s, bytes (float), src, dst (instance indices)
        self._log = (array("d"), array("d"), array("d"), array("q"), array("q"))

    def log_columns(self, names: tuple[str, ...]) -> dict:
        """The completed transfers as numpy columns named ``names`` (start, end, bytes: float64;
        source and destination instance: int64), in completion order; empty: ``{}``."""
        if not self.completed:
            return {}
        return {name: np.array(col) for name, col in zip(names, self._log)}

    def start(self, src, dst, nbytes: float, payload: Any) -> int:
        """Start a transfer of ``nbytes`` from instance ``src`` to ``dst``; returns its id."""
        fid = next(self._ids)
        lone = self._lone.get((src, dst))
        if lone is None:  # the capacities are fixed: a pair's path and lone rate are too
            lone = self._lone[(src, dst)] = (kv_path(src, dst), kv_transfer_rate(self.capacities, src, dst))
        path = lone[0]
        if not self.flows:
            # idle network: max-min gives a lone flow its path's bottleneck, no water-filling needed
            self.flows[fid] = _Flow(nbytes, self.env.now, payload, path)
            self._solo = fid
            self._rerate({fid: lone[1]})
            return fid
        if self._solo is not None:  # hand the lone flow to the allocator (its rate is unchanged so far)
            self.alloc.add(self._solo, self.flows[self._solo].path)
            self._solo = None
        self.flows[fid] = _Flow(nbytes, self.env.now, payload, path)
        self._rerate(self.alloc.add(fid, path))
        return fid

    def _rerate(self, changed: dict) -> None:
        now = self.env.now
        for fid, rate in changed.items():
            f = self.flows[fid]
            f.remaining_bytes = max(f.remaining_bytes - f.rate_bytes_per_s * (now - f.t_last_s), 0.0)
            f.t_last_s, f.rate_bytes_per_s = now, rate
            f.gen += 1
            self.rate_changes += 1
            ev = self.env.timeout(f.remaining_bytes / rate if rate > 0 else float("inf"))
            ev.callbacks.append(partial(self._wake, fid, f.gen))

    def _wake(self, fid: int, gen: int, _event) -> None:
        f = self.flows.get(fid)
        if f is None or f.gen != gen:
            return  # stale wake-up: the rate changed after this timeout was scheduled
        del self.flows[fid]
        self.completed += 1
        self.bytes_moved += f.nbytes
        start, end, nbytes, src, dst = self._log
        start.append(f.start_s)
        end.append(self.env.now)
        nbytes.append(f.nbytes)
        src.append(f.path[0][1])
        dst.append(f.path[2][1])
        if fid == self._solo:
            self._solo = None
        else:
            self._rerate(self.alloc.remove(fid))
        self._on_done(f.payload, f.start_s)
