"""Operator and step cost model: how long one step of a batch takes on one instance.

Pure functions over ``workloads`` operator lists, ``hardware`` devices/fabrics and an
optional ``calibration`` profile; nothing here touches the event engine, so the planner's
analytic fast path and ``clustersim estimate`` call the same code as the simulator.

Where each number comes from (recorded in every ``OpCost.source``):

1. ``profile``: the op's shape is inside the measured grid of a profile taken on this very
   device -> the interpolated measurement.
2. ``transfer``: the profile was measured on another device (e.g. H200 -> H800, H20, B200,
   Ascend 910C) -> floor + (measured time - floor) x roofline(target) / roofline(measured
   device), i.e. the measured efficiency at that shape is kept and the catalog peaks (FLOP/s
   per dtype, HBM bytes/s) of both devices are swapped; the launch floor
   (``calibration.protocol.Profile.floor_seconds``) does not scale. See simulator/README.md for the validation of this
   transfer against the published H800 kernel figures (DeepGEMM, FlashMLA).
3. ``roofline``: outside every grid -> max(FLOPs / (peak x compute efficiency), bytes /
   (HBM x memory efficiency)) + launch overhead, with efficiencies fitted from the profile
   (or the named defaults in ``RooflineEfficiency`` when no profile exists).

Collectives are timed by ``hardware.collectives`` and MoE dispatch/combine by
``hardware.dispatch``, unless the profile measured that op on this device, this fabric (the
technology of the tier the group spans) and this group size (``collective_<op>.csv``,
``moe_dispatch.csv``); the source then names the table. A layered profile (a partial measured
profile over the shipped one, ``calibration.resolve``) times each compute op with the layer
that holds its table. A profile is anything that answers ``calibration.protocol.Profile``;
nothing here probes it for members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import chain
from typing import Any, Iterable, Sequence

from calibration.protocol import Profile
from hardware.types import Cluster, DeviceSpec
from workloads.op import COLLECTIVE, GEMM, MLA_DECODE, Op


@dataclass(frozen=True, slots=True)
class RooflineEfficiency:
    """Achievable fractions of the catalog peaks, used only outside measured grids.

    Defaults are conservative placeholders replaced by the profile's ``efficiency_fit()`` whenever
    a profile is loaded; ``source`` says which applied.
    """

    compute_fraction: float = 0.7
    memory_fraction: float = 0.8
    launch_s: float = 4e-6
    source: str = "default"


@dataclass(frozen=True, slots=True)
class OpCost:
    """Time of one occurrence of ``op`` (``total_s`` multiplies by its count)."""

    name: str
    kind: str
    stream: str
    layer: str
    count: int
    seconds: float
    source: str
    flops: float = 0.0
    bytes_moved: float = 0.0

    @property
    def total_s(self) -> float:
        return self.seconds * self.count


@dataclass(frozen=True, slots=True)
class StepCost:
    """Time of one step on one device, with its composition."""

    seconds: float
    compute_s: float
    comm_s: float
    exposed_comm_s: float
    micro_batches: int
    ops: tuple[OpCost, ...] = field(default=())

    def breakdown(self) -> list[dict]:
        return [
            {"name": o.name, "kind": o.kind, "stream": o.stream, "layer": o.layer, "count": o.count,
             "seconds_each": o.seconds, "seconds_total": o.total_s, "source": o.source}
            for o in self.ops
        ]

    def sources(self) -> dict[str, float]:
        """Seconds by source family (profile / transfer / roofline / model:...)."""
        out: dict[str, float] = {}
        for o in self.ops:
            key = o.source.split(":")[0] if not o.source.startswith("model") else o.source.split(":")[0]
            out[key] = out.get(key, 0.0) + o.total_s
        return out


@lru_cache(maxsize=1)
def published_kernels() -> dict:
    """Kernel efficiencies from published figures (simulator/data/published_kernels.yaml)."""
    from importlib import resources

    from hardware.yaml_io import safe_load

    text = resources.files("simulator").joinpath("data/published_kernels.yaml").read_text(encoding="utf-8")
    return safe_load(text)


def published_kernel_for(op: Op) -> dict | None:
    """The published figure that times ``op``: the entry named by its implementation
    (``meta["impl"]``, ``workloads.kernel_sets``) for its kind, or, for an op naming none, the
    kind's ``default_for_kind`` entry; None when the op runs a measured implementation."""
    impl = op.meta.get("impl")
    if impl is not None:
        entry = published_kernels().get(str(impl))
        return entry if entry is not None and entry.get("op_kind") == op.kind else None
    return _kind_default(op.kind)


@lru_cache(maxsize=None)
def _kind_default(kind: str) -> dict | None:
    """The published entry marked ``default_for_kind`` for ops of ``kind`` (one scan per kind)."""
    return next((e for e in published_kernels().values() if e.get("op_kind") == kind and e.get("default_for_kind")),
                None)


@lru_cache(maxsize=8)
def _cached_fit(profile: Profile) -> Any:
    """A profile's fitted efficiency curves (fitting reads every table once per profile)."""
    return profile.efficiency_fit()


def profile_device(profile: Profile | None) -> DeviceSpec | None:
    """The catalog device a profile (or the layer of one that times an op) was measured on."""
    return None if profile is None else profile.device


def _layer(profile: Profile | None, op: Op) -> Profile | None:
    """The profile that times ``op``: a layered profile (``calibration.resolve``) picks the layer
    holding the op's table, so that layer's device, floors and fit apply; a plain one is itself."""
    return None if profile is None else profile.for_op(op)


def _measures_impl(profile: Profile | None, op: Op, device: DeviceSpec) -> bool:
    """Whether ``profile`` measured ``op``'s own implementation on a device of ``device``'s vendor
    (then its table times the op ahead of a published figure: FlashMLA measured on our H200 times
    FlashMLA on NVIDIA devices). Another vendor's device runs its own kernel, not the one measured:
    the published fractions of peak stand in for it there."""
    measures = getattr(profile, "measures_impl", None)
    ref = profile_device(profile)
    return bool(measures is not None and ref is not None and ref.vendor == device.vendor and measures(op))


#: what the sequences of a decode batch are (``CostModel.decode_lengths``): "mixed", a serving batch
#: of unequal lengths read at its mean context (the simulator's quantised batches); "equal", every
#: sequence at exactly that context (a benchmark batch, the tables' own rows)
DECODE_LENGTHS = ("mixed", "equal")

#: the largest in-step gap a profile may state (100 us: two orders above the ~1 us measured)
MAX_IN_STEP_GAP_S = 1e-4


def profile_in_step_gap_s(profile: Profile | None) -> float:
    """The profile's in-step gap per compute op (``metadata["in_step_gap"]["seconds"]``; 0 when it
    has none): in a composed step each kernel waits on its predecessor, which the per-op tables'
    repeated independent calls do not show (calibration/README.md, In-step gap)."""
    if profile is None:
        return 0.0
    # a measured profile states it from its metadata or its own ``in_step_gap`` table (memoised)
    stated = getattr(profile, "stated_in_step_gap_s", None)
    gap = stated if stated is not None else (profile.metadata.get("in_step_gap") or {}).get("seconds", 0.0)
    gap = float(gap) if isinstance(gap, (int, float)) else 0.0
    return gap if math.isfinite(gap) and 0.0 <= gap <= MAX_IN_STEP_GAP_S else 0.0


def _roofline_s(flops: float, nbytes: float, device: DeviceSpec, dtype: str) -> float:
    peak = device.peak_flops_per_s.get(dtype) or device.peak_flops_per_s.get("bf16", 0.0)
    return max(flops / peak if peak else 0.0, nbytes / device.hbm_bytes_per_s)


def _compute_dtype(op: Op, device: DeviceSpec) -> str:
    """Dtype whose peak bounds the op: its own if the device has it, else bf16."""
    return op.dtype if op.dtype in device.peak_flops_per_s else "bf16"


_chain = chain.from_iterable


def _op_key(op: Op) -> tuple:
    """What an op's time depends on: everything but its name, layer, stream and count (hashing
    it raises TypeError when a shape or meta value is unhashable; such an op is timed afresh).
    The role is kept: a lookup may time an op by what it is for. One flat tuple (the shape's
    item count, then its keys and values, then the meta's): equal exactly when the fields, the
    shape's items and the meta's items are, in a third of the memory of nested item tuples
    (a run keeps tens of thousands of keys)."""
    shape = op.shape
    return (op.kind, op.role, op.dtype, op.flops, op.bytes_read, op.bytes_written, op.collective, op.group_size,
            op.bytes_per_rank, len(shape), *_chain(shape.items()), *_chain(op.meta.items()))


@dataclass(frozen=True)
class CostModel:
    """Times ops and composes steps for one cluster (its device) and an optional profile.

    ``comm_sm_fraction``: share of the compute units that communication kernels hold while
    they overlap compute; compute that overlaps communication runs on the rest. None: the
    device's catalog ``comm_compute_units / compute_units`` (Ascend 910C: 0, its fused dispatch
    runs on the vector cores), else DeepSeek's 20 of 132 H800 SMs (ISCA'25 §4).
    ``dispatch_kernel``: DeepEP-style "normal" (prefill) or "low_latency" (decode) kernels;
    ``dispatch_release``: which published release's calibration times them (None: the newest).
    """

    cluster: Cluster
    profile: Profile | None = None
    roofline: RooflineEfficiency = RooflineEfficiency()
    comm_sm_fraction: float | None = None
    dispatch_kernel: str = "normal"
    use_published_kernels: bool = True
    dispatch_release: str | None = None
    #: seconds added to each measured compute op in a step (None: the profile's ``in_step_gap``)
    in_step_gap_s: float | None = None
    #: ``DECODE_LENGTHS``: "equal" costs a decode batch's attention as one of sequences all at its
    #: (mean) context, where a kernel's time depends on the spread (FlashMLA's split requests)
    decode_lengths: str = "mixed"
    #: (seconds, source) per op content (``_op_key``): a step's ops repeat across batch shapes
    #: (the linear layers of a decode batch do not depend on its context), so a new shape times
    #: only its new ops. Not part of the model's identity (not compared, not hashed).
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)
    #: ``_measured_route`` per profile layer (its device, gap and whether it is this device)
    _routes: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @property
    def device(self) -> DeviceSpec:
        return self.cluster.device

    @property
    def sm_fraction(self) -> float:
        """Share of the compute units communication holds while it overlaps compute."""
        if self.comm_sm_fraction is not None:
            return self.comm_sm_fraction
        d = self.device
        if d.comm_compute_units is not None:
            return d.comm_compute_units / d.compute_units
        return 20 / 132

    # ------------------------------------------------------------------ compute ops
    @staticmethod
    def _measured(prof: Profile | None, op: Op) -> tuple[float, str] | None:
        """Profile lookup for one occurrence of ``op`` on the profile's own device, or None."""
        if prof is None:
            return None
        if op.kind == GEMM and int(op.shape.get("batch", 1)) != 1:
            return None  # batched GEMMs (MLA absorb) are not in the GEMM tables: roofline fit
        try:
            return prof.op_seconds(op)
        except (LookupError, ValueError, TypeError):
            return None

    def compute_seconds(self, op: Op) -> tuple[float, str]:
        """(seconds, source) of one occurrence of a compute op on this cluster's device."""
        if self.decode_lengths == "equal" and op.kind == MLA_DECODE and op.meta.get("lengths") != "equal":
            op = replace(op, meta={**op.meta, "lengths": "equal"})
        dtype = _compute_dtype(op, self.device)
        published = published_kernel_for(op) if self.use_published_kernels else None
        prof = _layer(self.profile, op)
        if published is not None and not _measures_impl(prof, op, self.device):
            peak = self.device.peak_flops_per_s.get(dtype) or self.device.peak_flops_per_s["bf16"]
            t = max(op.flops / (peak * published["compute_fraction"]),
                    op.bytes_moved / (self.device.hbm_bytes_per_s * published["hbm_fraction"]))
            return t + self.roofline.launch_s, f"published:{published['kernel']}"
        measured = self._measured(prof, op)
        route = None if measured is None else self._measured_route(prof)
        if route is not None:
            ref, gap, same_device = route
            seconds, src = measured
            if same_device:
                return seconds + gap, src if src.startswith("profile:") else f"profile:{src}"
            ratio = _roofline_s(op.flops, op.bytes_moved, self.device, dtype) / max(
                _roofline_s(op.flops, op.bytes_moved, ref, _compute_dtype(op, ref)), 1e-15)
            # the launch/latency floor stays; only the time above it scales with the roofline
            floor = min(seconds, self._floor(prof, op))
            return floor + (seconds - floor) * ratio + gap, f"transfer:{ref.name}->{self.device.name}:{src}"
        fit = self._efficiency_fit(prof)
        peak = self.device.peak_flops_per_s.get(dtype, 0.0)
        if fit is not None and peak:
            seconds, how = fit.seconds(op.kind, op.flops, max(op.bytes_moved, 1.0), peak, self.device.hbm_bytes_per_s)
            name = str(prof.name) if prof is not None else ""
            return seconds, f"roofline:{how}" + ("" if not name or name in how else f" (fit to profile {name})")
        eff = self.roofline
        t = max(op.flops / (peak * eff.compute_fraction) if peak else 0.0,
                op.bytes_moved / (self.device.hbm_bytes_per_s * eff.memory_fraction))
        return t + eff.launch_s, f"roofline:{eff.source}"

    def _measured_route(self, prof: Profile | None) -> tuple[DeviceSpec, float, bool] | None:
        """(device ``prof`` measured on, in-step gap its measurements get here, whether that device is
        this cluster's), or None without a device; read once per profile layer (every measured op asks)."""
        hit = self._routes.get(id(prof))
        if hit is not None and hit[0] is prof:
            return hit[1]
        ref = profile_device(prof)
        if ref is None:
            route = None
        else:
            # the gap is the measured runtime's (graph replay of dependent kernels): another vendor's
            # device and runtime do not inherit it; the whole profile states it (a layered one's
            # primary, else its fallback), whichever layer times the op
            gap = ((profile_in_step_gap_s(self.profile) if self.in_step_gap_s is None else self.in_step_gap_s)
                   if ref.vendor == self.device.vendor else 0.0)
            route = (ref, gap, ref.name == self.device.name)
        self._routes[id(prof)] = (prof, route)  # the profile kept with its id (no other object takes it)
        return route

    @staticmethod
    def _floor(prof: Profile, op: Op) -> float:
        try:
            return float(prof.floor_seconds(op))
        except (LookupError, ValueError, TypeError):
            return 0.0

    @staticmethod
    def _efficiency_fit(prof: Profile | None) -> Any:
        return None if prof is None else _cached_fit(prof)

    # ------------------------------------------------------------------ collectives
    def comm_seconds(self, op: Op) -> tuple[float, str]:
        from hardware import collectives

        if op.collective in ("dispatch", "combine"):
            from hardware import dispatch  # here: a dense model's run does not import it

            meta = op.meta
            dtype = str(meta.get("dtype", "bf16"))  # the op's own direction; the other is not read
            measured = self.measured_dispatch(op.collective, int(meta["tokens"]), int(meta["hidden"]),
                                              int(meta["top_k"]), op.group_size, int(meta["num_experts"]), dtype)
            if measured is not None:
                return measured
            cost = dispatch.dispatch_combine_time(
                int(meta["tokens"]), int(meta["hidden"]), int(meta["top_k"]), op.group_size, self.cluster,
                num_experts=int(meta["num_experts"]), groups=meta.get("expert_groups"),
                max_groups_per_token=meta.get("max_groups_per_token"),
                dispatch_dtype=dtype if op.collective == "dispatch" else "fp8",
                combine_dtype=dtype if op.collective == "combine" else "bf16",
                kernel=self.dispatch_kernel, release=self.dispatch_release,
            )
            seconds = cost.dispatch_s if op.collective == "dispatch" else cost.combine_s
            return seconds, f"{cost.source}:{op.collective}"
        cost = collectives.collective_time(op.collective, op.bytes_per_rank, op.group_size, self.cluster,
                                           profile=self.profile)
        return cost.seconds, cost.source

    def measured_dispatch(self, direction: str, tokens_per_rank: int, hidden: int, top_k: int, ep: int,
                          num_experts: int, dtype: str) -> tuple[float, str] | None:
        """The profile's measured dispatch/combine (``moe_dispatch.csv``) for this EP group's fabric
        and this device, or None (then ``hardware.dispatch`` models it)."""
        if self.profile is None or ep <= 1:
            return None
        tier = self.cluster.tier_for_group(ep)
        try:
            return self.profile.dispatch_seconds(direction, ep, tokens_per_rank, hidden, top_k, num_experts, dtype,
                                                 fabric=tier.technology or tier.name, device=self.device.name)
        except (LookupError, ValueError):
            return None

    def op_cost(self, op: Op) -> OpCost:
        """The op's cost; kept on the op (``Op.derived``): the op lists a
        ``workloads.ops_blocks.BlockMemo`` hands out again are the same objects."""
        done = op.derived
        if done is not None and done[0] is self:
            return done[1]
        cost = self._op_cost(op)
        object.__setattr__(op, "derived", (self, cost))
        return cost

    def _op_cost(self, op: Op) -> OpCost:
        key = _op_key(op)
        try:
            hit = self._memo.get(key)
        except TypeError:  # an unhashable shape or meta value
            key = hit = None
        if hit is None:
            hit = self.comm_seconds(op) if op.kind == COLLECTIVE else self.compute_seconds(op)
            if key is not None:
                self._memo[key] = hit
        seconds, src = hit
        return OpCost(op.name, op.kind, op.stream, op.layer, op.count, seconds, src, op.flops, op.bytes_moved)

    # ------------------------------------------------------------------ steps
    def step_cost(self, micro_batch_ops: Sequence[Sequence[Op]], overlap: bool | None = None) -> StepCost:
        """Compose the ops of one step, given as one op list per micro-batch.

        One micro-batch (or ``overlap=False``): compute and communication serialise.
        Two micro-batches (DeepSeek's dual micro-batch overlap): one micro-batch's
        communication runs under the other's compute, so the step takes the longer stream
        plus the part that cannot hide (the first micro-batch's leading compute and the last
        one's trailing communication: the shorter stream of one layer); compute that
        overlaps communication is slowed by the SMs communication holds.
        """
        return self.compose([[self.op_cost(op) for op in ops] for ops in micro_batch_ops], overlap)

    def compose(self, costs: Sequence[Sequence[OpCost]], overlap: bool | None = None) -> StepCost:
        """``step_cost`` of op costs already computed (one list per micro-batch)."""
        # one pass: the two streams' totals summed in op order, as ``sum`` over each stream's ops
        flat: list[OpCost] = []
        compute_terms: list[float] = []
        comm_terms: list[float] = []
        layers = 0
        for mb in costs:
            flat += mb
            for c in mb:
                if c.stream == "comm":
                    comm_terms.append(c.seconds * c.count)  # OpCost.total_s
                    if c.count > layers:
                        layers = c.count
                else:
                    compute_terms.append(c.seconds * c.count)
        flat = tuple(flat)
        compute = sum(compute_terms)
        comm = sum(comm_terms)
        n_mb = len(costs)
        if overlap is None:
            overlap = n_mb > 1
        if not overlap or comm == 0.0:
            return StepCost(compute + comm, compute, comm, comm, n_mb, flat)
        slowed = compute / (1.0 - self.sm_fraction)
        fill = min(slowed, comm) / max(layers, 1) / n_mb
        total = max(slowed, comm) + fill
        return StepCost(total, compute, comm, max(total - compute, 0.0), n_mb, flat)


def step_cost_of(ops_per_micro_batch: Iterable[Sequence[Op]], model: CostModel, overlap: bool | None = None) -> StepCost:
    """Functional alias of ``CostModel.step_cost``."""
    return model.step_cost(list(ops_per_micro_batch), overlap)
