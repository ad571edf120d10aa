"""What the cost model may ask of a calibration profile: the ``Profile`` protocol.

Two classes answer it: ``calibration.profile.MeasuredProfile`` (the tables of one profile
directory) and ``calibration.resolve.LayeredProfile`` (a partial measured profile read over
the target's shipped one, table by table). ``simulator.costmodel`` and ``calibration.resolve``
call these members directly; they never probe a profile with ``getattr``. A test or a plug-in
may pass its own class: the protocol is structural, so it needs no base class, only these
members. ``hardware.collectives`` asks for ``collective_seconds`` alone (it sits below this
layer and types its argument as any object with that method).

Lookups return ``(seconds, source)`` or None when the profile does not cover the case (the
cost model then falls back to its next source); they may also raise ``LookupError`` or
``ValueError`` for a shape they refuse, which the cost model treats the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol

if TYPE_CHECKING:
    from calibration.interp import EfficiencyFit
    from hardware.types import DeviceSpec
    from workloads.op import Op

__all__ = ["Profile"]


class Profile(Protocol):
    """A calibration profile as the cost model reads it (see the module docstring)."""

    @property
    def name(self) -> str:
        """The profile's name (a shipped name or its directory's)."""

    @property
    def path(self) -> Path:
        """Its directory."""

    @property
    def shipped(self) -> bool:
        """Whether it ships inside the package (reports then print no path)."""

    @property
    def metadata(self) -> Mapping[str, Any]:
        """``metadata.json``: GPU, driver and library versions, date, reference peaks."""

    @property
    def device(self) -> DeviceSpec | None:
        """The catalog device it was measured on (None: not a catalog device)."""

    @property
    def fallback(self) -> Profile | None:
        """The profile its missing tables are read from (None: it has no fallback)."""

    @property
    def fallback_tables(self) -> tuple[str, ...]:
        """The tables read from ``fallback``."""

    def for_op(self, op: Op) -> Profile:
        """The profile that times compute op ``op``: its device decides the transfer, its
        floors and efficiency fit apply (a plain profile answers itself)."""

    def op_seconds(self, op: Op) -> tuple[float, str] | None:
        """One occurrence of compute op ``op`` from the measured tables."""

    def floor_seconds(self, op: Op) -> float:
        """The launch/latency floor of ``op``'s implementation (0 when none was measured)."""

    def efficiency_fit(self) -> EfficiencyFit:
        """Achieved fractions of the roofline per op kind, for shapes outside the tables."""

    def collective_seconds(self, op: str, group: int, bytes_per_rank: float, fabric: str | None = None,
                           device: str | None = None) -> tuple[float, str] | None:
        """A measured collective on ``group`` ranks of ``fabric`` between ``device`` devices."""

    def dispatch_seconds(self, direction: str, ep: int, tokens_per_rank: float, hidden: int, top_k: int,
                         experts: int, dtype: str, fabric: str | None = None,
                         device: str | None = None) -> tuple[float, str] | None:
        """A measured MoE dispatch or combine on ``ep`` ranks of ``fabric``."""
