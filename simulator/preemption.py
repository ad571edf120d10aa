"""Preemption policies: what happens to a request evicted because a decode step's KV growth
does not fit, and how it comes back.

The engine picks the victim (the most recently admitted request, LIFO, as vLLM does), frees
its KV and batch slots, counts the preemption and then calls ``evict``; the batch policy calls
``resume`` (through ``Server.resume_preempted``) when it forms a step.

* ``recompute``: the KV is dropped; the request goes back to the head of the queue to
  re-prefill its prompt and the tokens generated so far (prefix-cache hits still apply).
* ``swap``: the KV is copied to host memory over ``HOST_LINK_BYTES_PER_S`` per device and
  copied back when it fits again (swapped requests return before new ones are admitted);
  both copies are charged to the step that does them.

A new policy is a class with ``evict`` and ``resume`` in its own file, its name in
``workloads/policy_names.py`` and one entry in ``simulator/registry.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from simulator.batching import Server, StepPlan

#: host link per device for KV swap, bytes/s: PCIe 5.0 x16 is 64 GB/s per direction nominal;
#: 50e9 assumes ~80% achievable (assumed, not measured here)
HOST_LINK_BYTES_PER_S = 50e9


class PreemptionPolicy(Protocol):
    def evict(self, server: "Server", r: int, gen_tokens: int) -> float:
        """Request r (KV and slots already freed, ``gen_tokens`` generated over its live streams)
        leaves the batch; returns the seconds to charge to the current step."""

    def resume(self, server: "Server", plan: "StepPlan") -> None:
        """Bring evicted requests back into ``plan`` (``plan.swapins``, ``plan.extra_s``)."""


class Recompute:
    """Drop the KV; re-prefill prompt + generated tokens from the head of the queue."""

    __slots__ = ()

    def evict(self, server: "Server", r: int, gen_tokens: int) -> float:
        st = server.st
        st.prefill_target[r] = st.prompt[r] - st.cached[r] + gen_tokens
        st.prefilled[r] = 0
        server.waiting.appendleft(r)
        server.queued_blocks += server.request_blocks(r)
        return 0.0

    def resume(self, server: "Server", plan: "StepPlan") -> None:
        return None  # recomputed requests come back through the queue (admit_waiting)


class Swap:
    """Copy the KV to host and back, FCFS, when the request fits again."""

    __slots__ = ()

    def evict(self, server: "Server", r: int, gen_tokens: int) -> float:
        server.swapped.append(r)
        return server.swap_s_per_token * int(server.st.prompt[r] + gen_tokens)

    def resume(self, server: "Server", plan: "StepPlan") -> None:
        st = server.st
        while server.swapped:
            r = server.swapped[0]
            live = st.live_count(r)
            if server.committed + live > server.max_batch or not server.kv.fits(server.request_blocks(r)):
                break
            server.swapped.popleft()
            server.reserve(r)
            server.committed += live
            plan.extra_s += server.swap_s_per_token * int(st.prompt[r] + st.s_gen[st.live_streams(r)].sum())
            plan.swapins.append(r)
