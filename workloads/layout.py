"""``Layout``: how one model replica is split over devices, and the one set of rules it must obey.

Every part of clustersim that speaks of parallelism holds a ``Layout``: a serving pool
(``workloads.deployment.Pool.layout``, built from its YAML ``attention``/``moe`` blocks), a
planner choice (``planner.space.PoolChoice.layout``), a training job
(``workloads.training.TrainingParallelism.layout``), the operator lists
(``workloads.ops.step_ops``) and the cost model (``simulator.instance.InstanceSpec.layout``).

Devices of one pipeline stage = ``tp x dp x sp x cp``; the layout spans ``pp`` such stages.

* ``tp``: tensor parallelism of attention heads, dense FFNs, shared experts and the LM head.
* ``dp``: data-parallel ranks of a stage, each with its own sequences (serving: DeepSeek-style
  attention DP inside one instance; training: data-parallel replicas).
* ``sp`` + ``sp_kind``: sequence parallelism, Ulysses (heads exchanged by all-to-all) or ring
  attention (K/V passed round a ring); ``cp``: context parallelism (sequence split, K/V
  all-gathered). The operator lists split a sequence ``sp x cp`` ways.
* ``ep`` x ``moe_tp`` x ``expert_dp``: routed experts (plus ``redundant_experts`` copies)
  split ``ep`` ways, each expert's width ``moe_tp`` ways, the whole expert group replicated
  ``expert_dp`` times over the stage (training's expert data parallelism; serving holds one
  copy, ``expert_dp`` 1). ``None`` for ``moe_tp`` or ``expert_dp`` means "what is left of the
  stage".
* ``pp``: pipeline stages (contiguous layer slices).
* ``micro_batches``: micro-batches one serving step is split into so that one's compute
  overlaps the other's communication (two-batch overlap).

``Layout.problems(model, ...)`` returns every rule the layout breaks as ``(field, problem)``
pairs; the field is a ``Layout`` field (or ``devices``) and each caller words it its own way:
a YAML path with ``file:line:col`` (``workloads.deployment_rules``, ``workloads.training``), a
planner reason (``planner.feasibility``), a CLI flag (``clustersim.estimate``), or
``ParallelismError`` (``Layout.check``, what ``step_ops`` raises).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from hardware.types import Cluster
from workloads.models import ModelConfig
from workloads.sequence_parallel import SP_KINDS

__all__ = ["Layout", "Problem", "ParallelismError", "divisors_text"]


class ParallelismError(ValueError):
    """A parallel degree that does not fit the model (the message names the factor)."""


class Problem(NamedTuple):
    """One broken rule: the ``Layout`` field it is about (or ``devices``) and what is wrong."""

    field: str
    problem: str


def divisors_text(n: int, limit: int = 24, upto: int | None = None) -> str:
    """The divisors of ``n`` (those up to ``upto``) as text, the first ``limit`` of them (then ``...``)."""
    ds = [d for d in range(1, n + 1) if n % d == 0 and (upto is None or d <= upto)]
    return ", ".join(map(str, ds[:limit])) + (", ..." if len(ds) > limit else "")


_INT_FIELDS = ("tp", "dp", "sp", "cp", "ep", "moe_tp", "expert_dp", "pp", "micro_batches")


@dataclass(frozen=True, slots=True)
class Layout:
    """Parallel degrees of one model replica (see the module docstring). Frozen, hashable,
    picklable; construction checks only that degrees are positive integers, ``problems``
    checks them against a model."""

    tp: int = 1
    dp: int = 1
    sp: int = 1
    sp_kind: str = "ulysses"
    cp: int = 1
    ep: int = 1
    moe_tp: int | None = None
    expert_dp: int | None = 1
    redundant_experts: int = 0
    pp: int = 1
    micro_batches: int = 1

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            v = getattr(self, name)
            if v is None and name in ("moe_tp", "expert_dp"):
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ParallelismError(f"{name} must be a positive integer, got {v!r}")
        if self.moe_tp is None and self.expert_dp is None:
            raise ParallelismError("moe_tp and expert_dp cannot both be left to the rest of the stage")
        r = self.redundant_experts
        if not isinstance(r, int) or isinstance(r, bool) or r < 0:
            raise ParallelismError(f"redundant_experts must be a non-negative integer, got {r!r}")
        if self.sp_kind not in SP_KINDS:
            raise ParallelismError(f"sp_kind {self.sp_kind!r} unknown (valid: {', '.join(SP_KINDS)})")

    # ------------------------------------------------------------------ derived sizes
    @property
    def stage_devices(self) -> int:
        """Devices of one pipeline stage: tp x dp x sp x cp."""
        return self.tp * self.dp * self.sp * self.cp

    @property
    def devices(self) -> int:
        """Devices of the whole layout: stage devices x pp."""
        return self.stage_devices * self.pp

    @property
    def seq_split(self) -> int:
        """Ways one sequence's tokens are split (sp x cp)."""
        return self.sp * self.cp

    @property
    def moe_tp_eff(self) -> int:
        """Expert tensor parallelism (``moe_tp``, or the stage left over by ep x expert_dp)."""
        if self.moe_tp is not None:
            return self.moe_tp
        return max(1, self.stage_devices // (self.ep * self.expert_dp))

    @property
    def expert_dp_eff(self) -> int:
        """Copies of the expert group in a stage (``expert_dp``, or the stage left over by ep x moe_tp)."""
        if self.expert_dp is not None:
            return self.expert_dp
        return max(1, self.stage_devices // (self.ep * self.moe_tp))

    def expert_group(self) -> "Layout":
        """The devices that hold one copy of the experts, with the data-parallel ranks whose tokens
        they serve: ``dp / expert_dp`` ranks, ``expert_dp`` 1 (what ``step_ops`` costs)."""
        return replace(self, dp=max(1, self.dp // self.expert_dp_eff), moe_tp=self.moe_tp_eff, expert_dp=1)

    def without_experts(self) -> "Layout":
        """The same attention layout with no expert parallelism or micro-batching (a dense draft
        model run on these devices)."""
        return replace(self, ep=1, moe_tp=None, expert_dp=1, redundant_experts=0, micro_batches=1)

    def label(self) -> str:
        """Short text, e.g. ``tp1 dp8 ep8`` (degrees of 1 beyond tp and dp left out)."""
        parts = [f"tp{self.tp}", f"dp{self.dp}"]
        parts += [f"sp{self.sp}" + (" ring" if self.sp_kind == "ring" else "")] * (self.sp > 1)
        parts += [f"cp{self.cp}"] * (self.cp > 1) + [f"pp{self.pp}"] * (self.pp > 1)
        parts += [f"ep{self.ep}"] * (self.ep > 1) + [f"etp{self.moe_tp}"] * ((self.moe_tp or 1) > 1)
        parts += [f"+{self.redundant_experts}e"] * (self.redundant_experts > 0)
        return " ".join(parts + [f"mb{self.micro_batches}"] * (self.micro_batches > 1))

    # ------------------------------------------------------------------ the rules
    def problems(self, model: ModelConfig, *, stages: int | None = None, devices: int | None = None,
                 cluster: Cluster | None = None, even_stages: bool = False) -> list[Problem]:
        """Every divisibility and fit rule this layout breaks on ``model``, in a fixed order.

        ``stages``: layer slices the model is cut into (default ``pp``; DualPipeV cuts 2 x pp).
        ``devices``: devices the layout must cover exactly (a serving instance's
        ``devices_per_instance``). ``cluster``: tensor parallelism must stay inside its
        first (scale-up) tier. ``even_stages``: every stage must hold as many layers (serving
        costs one stage and multiplies it by pp).
        """
        out = _attention_problems(self, model)
        out += _expert_problems(self, model)
        if devices is not None and devices != self.devices:
            cp = " x cp" if self.cp > 1 else ""
            cps = f"x{self.cp}" if self.cp > 1 else ""
            out.append(Problem("devices", f"{devices} devices but attention tp x dp x sp{cp} x pp = "
                                          f"{self.tp}x{self.dp}x{self.sp}{cps}x{self.pp} = {self.devices}"))
        if model.moe is not None:
            out += _cover_problems(self)
        out += _stage_problems(self, model, stages or self.pp, even_stages)
        if cluster is not None and self.tp > cluster.tiers[0].span_devices:
            tier = cluster.tiers[0]
            out.append(Problem("tp", f"tp {self.tp} spans beyond one {tier.name} domain of {tier.span_devices} "
                                     f"devices (valid: up to {tier.span_devices})"))
        return out

    def check(self, model: ModelConfig, **kwargs) -> None:
        """Raise ``ParallelismError`` (``field: problem``) for the first rule ``problems`` finds."""
        found = self.problems(model, **kwargs)
        if found:
            raise ParallelismError(f"{found[0].field}: {found[0].problem}")


def _attention_problems(lay: Layout, m: ModelConfig) -> list[Problem]:
    """Heads over tensor (and Ulysses) parallelism, KV heads, dense FFN width."""
    out: list[Problem] = []
    a, tp = m.attention, lay.tp
    heads = a.num_heads
    if heads % tp:
        out.append(Problem("tp", f"{tp} does not divide {heads} attention heads (valid: {divisors_text(heads)})"))
    elif lay.sp > 1 and lay.sp_kind == "ulysses" and (heads // tp) % lay.sp:
        out.append(Problem("sp", f"ulysses degree {lay.sp} does not divide the {heads // tp} heads per TP rank (the "
                                 f"head count limits the degree; valid: {divisors_text(heads // tp)})"))
    if not m.is_mla:
        kv = a.num_kv_heads
        if tp <= kv and kv % tp:
            out.append(Problem("tp", f"{tp} does not divide {kv} KV heads (valid: {divisors_text(kv)})"))
        elif tp > kv and tp % kv:
            out.append(Problem("tp", f"{tp} exceeds {kv} KV heads and is not a multiple of them (KV heads are "
                                     f"replicated when tp > KV heads)"))
    if m.num_dense_layers and m.dense_intermediate_size % tp:
        w = m.dense_intermediate_size
        out.append(Problem("tp", f"{tp} does not divide dense FFN width {w} (valid: {divisors_text(w)})"))
    return out


def _expert_problems(lay: Layout, m: ModelConfig) -> list[Problem]:
    """Routed (+ redundant) experts over ep, expert width over moe_tp, shared experts over tp."""
    e = m.moe
    if e is None:
        if lay.ep != 1 or lay.redundant_experts:
            return [Problem("ep" if lay.ep != 1 else "redundant_experts",
                            f"{m.name} is dense and has no experts (valid: ep 1, no redundant experts)")]
        return []
    out: list[Problem] = []
    slots = e.num_routed_experts + lay.redundant_experts
    if slots % lay.ep:
        extra = f" + {lay.redundant_experts} redundant" if lay.redundant_experts else ""
        out.append(Problem("ep", f"{lay.ep} does not divide {e.num_routed_experts} routed{extra} experts "
                                 f"(valid: {divisors_text(slots, upto=lay.stage_devices)})"))
    moe_tp = lay.moe_tp_eff
    if e.intermediate_size % moe_tp:
        w = e.intermediate_size
        out.append(Problem("moe_tp", f"{moe_tp} does not divide expert width {w} (valid: {divisors_text(w)})"))
    shared = e.num_shared_experts * e.intermediate_size
    if shared and shared % lay.tp:
        out.append(Problem("tp", f"{lay.tp} does not divide shared-expert width {shared} "
                                 f"(valid: {divisors_text(shared)})"))
    return out


def _cover_problems(lay: Layout) -> list[Problem]:
    """The expert group (ep x moe_tp), replicated expert_dp times, covers a stage exactly and is
    made of whole tp x sp x cp groups."""
    stage, inner = lay.stage_devices, lay.tp * lay.sp * lay.cp
    if stage % lay.ep:
        return [Problem("ep", f"{lay.ep} does not divide the {stage} devices of a pipeline stage "
                              f"(tp x dp x sp x cp; valid: {divisors_text(stage)})")]
    if lay.moe_tp is not None and lay.expert_dp is not None:
        n = lay.ep * lay.moe_tp * lay.expert_dp
        if n != stage:
            rep = f"x{lay.expert_dp}" if lay.expert_dp > 1 else ""
            return [Problem("ep", f"ep x moe_tp{' x expert_dp' if rep else ''} x pp = {lay.ep}x{lay.moe_tp}{rep}x"
                                  f"{lay.pp} = {n * lay.pp} must equal the {lay.devices} devices of the layout "
                                  f"(tp x dp x sp x cp x pp)")]
    group = lay.ep * lay.moe_tp_eff
    if group % inner or stage % (group * lay.expert_dp_eff):
        return [Problem("ep", f"{lay.ep} must be a multiple or a divisor of tp x sp x cp = {inner}")]
    return []


def _stage_problems(lay: Layout, m: ModelConfig, stages: int, even: bool) -> list[Problem]:
    """Pipeline stages within the layers (and, when asked, dividing them)."""
    layers = m.num_layers
    if even and layers % lay.pp:
        return [Problem("pp", f"{lay.pp} does not divide {layers} layers (valid: {divisors_text(layers)})")]
    if stages > layers:
        return [Problem("pp", f"{lay.pp} exceeds {layers} layers" if stages == lay.pp
                        else f"{stages} pipeline stages (pp {lay.pp}) exceed {layers} layers")]
    return []
