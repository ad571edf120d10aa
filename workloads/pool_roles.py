"""What a serving pool's instances do: the one home of the role names.

A pool has a *role* (``colocated``: prefill and decode on the same instances; ``prefill``;
``decode``) and a *name*, its key under ``serving:`` in a deployment YAML, which is also how
outputs label it (``steps.csv``'s ``pool`` column, ``summary.pools``, cost-model calls): the
colocated pool is written ``serving.pool``, so its name is ``pool``. The two spellings used
to be chosen inline in several places; ``PoolRole.pool_name`` and ``PoolRole.of_pool`` are
the translation.
"""

from __future__ import annotations

from enum import StrEnum


class PoolRole(StrEnum):
    """A pool's role; a ``str`` equal to its value (``"colocated"``, ``"prefill"``, ``"decode"``)."""

    COLOCATED = "colocated"
    PREFILL = "prefill"
    DECODE = "decode"

    @property
    def pool_name(self) -> str:
        """The pool's key under ``serving:`` and its label in outputs."""
        return "pool" if self is PoolRole.COLOCATED else self.value

    @property
    def prefills(self) -> bool:
        """Whether new requests start here (the front of the deployment)."""
        return self is not PoolRole.DECODE

    @property
    def decodes(self) -> bool:
        return self is not PoolRole.PREFILL

    @classmethod
    def of_pool(cls, name: str) -> "PoolRole":
        """The role of the pool keyed ``name`` under ``serving:``."""
        return cls.COLOCATED if name == "pool" else cls(name)
