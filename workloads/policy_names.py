"""The names of the serving engine's policies: what ``scheduler.router``, ``scheduler.batching``
and ``scheduler.preemption`` may say in a deployment YAML.

Names live here and implementations in ``simulator/`` (``simulator.registry``) because the
schema (``workloads.deployment.Scheduler``) may not import upward. ``simulator.registry``
binds every name to exactly one implementation class and refuses a name declared here without
one (or an implementation without a name), so the two lists cannot drift.

A schema field is ``PolicyNames.field()``: its type is the ``Literal`` of the names declared
here (for readers and type checkers), and it validates against the names declared when the
YAML is validated, so a plug-in registered at run time (``simulator.registry``'s
``register``, as the tests do) is selectable from YAML too. An unknown name reads like any
other ``Literal`` error: ``scheduler.batching: 'x' is not allowed (valid: 'splitfuse', ...)``.
"""

from __future__ import annotations

from typing import Annotated, Any, Iterable, Iterator, Literal

from pydantic import PlainValidator
from pydantic_core import PydanticCustomError


class PolicyNames:
    """The ordered names of one kind of policy (the YAML choices of one scheduler field)."""

    __slots__ = ("kind", "_names")

    def __init__(self, kind: str, names: Iterable[str]):
        self.kind = kind
        self._names: list[str] = list(names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._names))

    def __len__(self) -> int:
        return len(self._names)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._names)

    def literal(self) -> Any:
        """``Literal[...]`` of the names declared now."""
        return Literal[self.names]  # type: ignore[valid-type]

    def declare(self, name: str) -> None:
        """Add a plug-in's name (``simulator.registry.PolicyRegistry.register`` calls this)."""
        if not isinstance(name, str) or not name or name in self._names:
            raise ValueError(f"{self.kind} name {name!r} is empty or already declared")
        self._names.append(name)

    def retract(self, name: str) -> None:
        """Remove a plug-in's name again (``PolicyRegistry.unregister``)."""
        self._names.remove(name)

    def expected(self) -> str:
        """The choices as pydantic spells a Literal's: ``'a', 'b' or 'c'``."""
        quoted = [repr(n) for n in self._names]
        return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]

    def validate(self, value: Any) -> str:
        if value in self:
            return value
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": self.expected()})

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict:
        return {"enum": list(self._names), "type": "string"}

    def field(self) -> Any:
        """The schema type of a field naming one of these policies."""
        return Annotated[self.literal(), PlainValidator(self.validate), self]


#: ``scheduler.router``: which instance of a pool takes a request (``simulator.policies``)
ROUTERS = PolicyNames("router", ("round_robin", "least_outstanding", "kv_aware"))
#: ``scheduler.batching``: how an instance forms each step's batch (``simulator.batching``)
BATCH_POLICIES = PolicyNames("batch policy", ("splitfuse", "prefill_first", "decode_first"))
#: ``scheduler.preemption``: what happens to a request evicted for KV (``simulator.preemption``)
PREEMPTION_POLICIES = PolicyNames("preemption policy", ("recompute", "swap"))

#: the schema types of those fields
RouterName = ROUTERS.field()
BatchPolicyName = BATCH_POLICIES.field()
PreemptionPolicyName = PREEMPTION_POLICIES.field()
