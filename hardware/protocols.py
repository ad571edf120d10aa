"""NCCL's protocols (LL, LL128, Simple) as latency and bandwidth terms of a collective.

NCCL moves every collective with one of three protocols (NCCL documentation and
``src/graph/tuning.cc``, whose tuner cost model this follows):

* **LL** (low latency): 8-byte stores of 4 bytes of data and a 4-byte flag. The receiver polls
  the flag inside the data, so a pipeline step costs little latency, but only half of what
  crosses the link is payload (``bw_fraction`` 0.5).
* **LL128**: 128-byte lines of 120 bytes of payload and an 8-byte flag, relying on NVLink's
  128-byte store ordering: near-full bandwidth (NCCL's tuner uses 0.92) at moderate latency.
* **Simple**: bulk copies through staging buffers, with a separate flag and memory fence per
  pipeline step: full bandwidth, the highest per-step latency.

A collective is a list of :class:`Phase` (one per NCCL kernel it runs); each phase has the
seconds its bytes take at the tier's achievable bandwidth (``beta_s``) and the sequential
pipeline steps it takes on each tier (``hops``). With protocol ``X`` a phase costs::

    base(X) + sum_t hops[t] * hop(X, technology of tier t) + beta_s / bw_fraction(X)

and, as NCCL's tuner does, the cheapest protocol runs. ``hop`` comes from NCCL's hardware
latency tables: NVLINK for ``nvlink`` tiers, NET for ``ib``/``roce`` tiers. A phase may instead
carry a fixed latency (NVLS: the NVSwitch multicast pipeline), and may be restricted to Simple.

Fabrics that NCCL does not drive (the Ascend unified bus, ``ub``) have one ``native`` protocol:
the tier's catalog latency per step, full bandwidth, no base latency.

Constants live in ``hardware/data/comm_calibration.yaml`` (``nccl.*``), each with its source; the
ones that NCCL's tuner gets wrong at medium sizes are fitted there on published tables, with
their fit rows named (``hardware/comm_fit.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from hardware.types import Tier

__all__ = ["PROTOCOLS", "NCCL_FABRICS", "Phase", "protocols_for", "bw_fraction", "phase_seconds", "cheapest"]

#: NCCL protocols, in NCCL's order
PROTOCOLS = ("ll", "ll128", "simple")
#: tier technology -> NCCL hardware-latency table
NCCL_FABRICS = {"nvlink": "nvlink", "ib": "net", "roce": "net"}
NATIVE = "native"


@dataclass(frozen=True, slots=True)
class Phase:
    """One kernel of a collective: ``beta_s`` seconds of bytes at full payload bandwidth,
    ``hops[t]`` sequential pipeline steps on tier ``t``. ``fixed_latency_s`` replaces the
    base + hop latency when set; ``simple_only`` restricts the phase to the Simple protocol.
    ``detail``: (name, seconds) parts of ``beta_s`` worth reporting (e.g. each tier's bytes of
    an all-to-all, whose slowest tier is ``beta_s``), at full payload bandwidth."""

    name: str
    beta_s: float
    hops: tuple[int, ...] = ()
    fixed_latency_s: float | None = None
    simple_only: bool = False
    detail: tuple[tuple[str, float], ...] = ()


def protocols_for(tiers: Sequence[Tier]) -> tuple[str, ...]:
    """Protocols available over ``tiers``: NCCL's three when NCCL drives every tier, else native."""
    if tiers and all(t.technology in NCCL_FABRICS for t in tiers):
        return PROTOCOLS
    return (NATIVE,)


def _hop_s(tier: Tier, protocol: str, calib: Any) -> float:
    if protocol == NATIVE:
        return tier.latency_s
    return calib.get(f"nccl.hop_latency_s.{NCCL_FABRICS[tier.technology]}.{protocol}")


def bw_fraction(protocol: str, calib: Any) -> float:
    """Payload fraction of the link bandwidth that ``protocol`` moves."""
    return 1.0 if protocol == NATIVE else calib.get(f"nccl.protocol_bw_fraction.{protocol}")


def phase_seconds(phase: Phase, tiers: Sequence[Tier], protocol: str, calib: Any) -> tuple[float, float]:
    """(bandwidth seconds, latency seconds) of ``phase`` with ``protocol``."""
    fraction = bw_fraction(protocol, calib)
    base = 0.0 if protocol == NATIVE else calib.get(f"nccl.base_latency_s.{protocol}")
    if phase.fixed_latency_s is not None:
        latency = phase.fixed_latency_s
    else:
        latency = base + sum(n * _hop_s(tiers[t], protocol, calib) for t, n in enumerate(phase.hops) if n)
    return phase.beta_s / fraction, latency


def cheapest(phases: Sequence[Phase], tiers: Sequence[Tier], calib: Any,
             allowed: Sequence[str] | None = None) -> tuple[float, str, tuple[tuple[str, float, float], ...]]:
    """Cheapest protocol for ``phases`` (one protocol for the whole collective, as NCCL runs it).

    Returns (seconds, protocol, per-phase (name, bandwidth seconds, latency seconds)).
    ``allowed`` restricts the protocols (e.g. ``("simple",)``); phases that are ``simple_only``
    restrict them too. Raises ``ValueError`` when nothing is left.
    """
    avail = protocols_for(tiers)
    if avail != (NATIVE,):
        if allowed is not None:
            avail = tuple(p for p in avail if p in allowed)
        if any(ph.simple_only for ph in phases):
            avail = tuple(p for p in avail if p == "simple")
    if not avail:
        raise ValueError(f"no protocol left (allowed: {', '.join(allowed or ())}; valid: {', '.join(PROTOCOLS)})")
    best = None
    for proto in avail:
        parts = tuple((ph.name, *phase_seconds(ph, tiers, proto, calib)) for ph in phases)
        total = sum(b + a for _, b, a in parts)
        if best is None or total < best[0]:
            best = (total, proto, parts)
    return best
