"""The engine's policy registries: each name in ``workloads.policy_names`` bound to exactly one
implementation class (routers, batch policies, preemption policies).

The names are declared in ``workloads/`` (the schema validates YAML against them and may not
import ``simulator/``); this module binds them, and refuses at import a name without an
implementation or an implementation without a name. A plug-in (a test, a user's own policy)
declares its name and registers its class in one call::

    BATCH_POLICIES.register("shortest_prompt_first", ShortestPromptFirst)
    # ... scheduler: {batching: shortest_prompt_first} now validates and runs
    BATCH_POLICIES.unregister("shortest_prompt_first")

A built-in policy is a file plus its name in ``workloads/policy_names.py`` and its entry below.
"""

from __future__ import annotations

from typing import Any, Callable

from simulator.batching import DecodeFirst, PrefillFirst, SplitFuse
from simulator.policies import KvAware, LeastOutstanding, RoundRobin
from simulator.preemption import Recompute, Swap
from workloads import policy_names
from workloads.policy_names import PolicyNames


class PolicyRegistry:
    """Implementation classes of one kind of policy, keyed by the names in ``names``."""

    __slots__ = ("names", "_impl")

    def __init__(self, names: PolicyNames, impl: dict[str, Callable[[], Any]]):
        missing, unnamed = [n for n in names if n not in impl], [n for n in impl if n not in names]
        if missing or unnamed:
            raise ValueError(f"{names.kind}: names without an implementation {missing}, "
                             f"implementations without a name in workloads.policy_names {unnamed}")
        self.names = names
        self._impl = dict(impl)

    def __contains__(self, name: object) -> bool:
        return name in self._impl

    def keys(self) -> tuple[str, ...]:
        return tuple(self._impl)

    def make(self, name: str) -> Any:
        """A new instance of the policy ``name``."""
        try:
            return self._impl[name]()
        except KeyError:
            raise ValueError(f"unknown {self.names.kind} {name!r} (valid: {', '.join(self._impl)})") from None

    def register(self, name: str, cls: Callable[[], Any]) -> Callable[[], Any]:
        """Declare ``name`` (a YAML choice from now on) and bind it to ``cls``; returns ``cls``."""
        if name in self._impl:
            raise ValueError(f"{self.names.kind} {name!r} already has an implementation ({self._impl[name]!r})")
        self.names.declare(name)
        self._impl[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Undo ``register``."""
        del self._impl[name]
        self.names.retract(name)


ROUTERS = PolicyRegistry(policy_names.ROUTERS, {
    "round_robin": RoundRobin,
    "least_outstanding": LeastOutstanding,
    "kv_aware": KvAware,
})
BATCH_POLICIES = PolicyRegistry(policy_names.BATCH_POLICIES, {
    "splitfuse": SplitFuse,
    "prefill_first": PrefillFirst,
    "decode_first": DecodeFirst,
})
PREEMPTION_POLICIES = PolicyRegistry(policy_names.PREEMPTION_POLICIES, {
    "recompute": Recompute,
    "swap": Swap,
})
