"""Batch policies: which decode streams and prefill chunks an instance runs in its next step.

A ``BatchPolicy`` has one method, ``form(server) -> StepPlan | None`` (None: nothing to run,
the instance sleeps until work arrives). It decides the *order* of the steps' parts; the
mechanics are the server's (``simulator.engine.Server``, seen by the policies through the
``Server`` protocol below, so that they never import the engine), which a policy calls:

* ``grow_decodes(plan)``: put the running decode streams in the step and reserve this step's
  KV growth, preempting the most recently admitted requests if it does not fit (what happens
  to them is the ``PreemptionPolicy``'s business: ``simulator.preemption``);
* ``continue_prefills(plan, budget) -> budget``: next chunks of admitted prompts;
* ``resume_preempted(plan)``: bring preempted requests back (swap-ins), charged to the step;
* ``admit_waiting(plan, budget) -> budget``: admit queued requests FCFS while the token budget,
  the batch-size cap and KV allow (the whole prompt's KV must fit: admission control);
* ``over_budget_head()`` / ``run_alone(r)``: vLLM's rule for a whole prompt that does not fit
  beside the decode streams.

How many tokens of a prompt a step takes is ``chunk_tokens`` (the one chunk rule), with the
pool's ``chunked_prefill``. The policies (Sarathi-Serve, OSDI'24, section 3, classifies them):

* ``splitfuse`` (default): stall-free batching, Sarathi-Serve / DeepSpeed-FastGen's Dynamic
  SplitFuse: decode streams first (1 + MTP depth tokens each), then prefill chunks fill
  ``max_tokens_per_iteration``. Without chunking a prompt enters whole, and one at the head of
  the queue that does not fit beside the decode streams runs as a batch by itself.
* ``prefill_first``: continuous batching as vLLM (V0) and Orca schedule it by default: a step
  is prefill-only whenever a prompt can be started or continued; the decode streams wait
  (generation stalls, TTFT is lowest).
* ``decode_first``: decode-prioritising request-level batching (FasterTransformer): new
  prompts are admitted only when no decode stream runs, i.e. a batch decodes to the end
  before the next one starts (lowest TPOT, highest TTFT under load).

A new policy is a class with ``form`` in its own file, its name in
``workloads/policy_names.py`` and one entry in ``simulator/registry.py``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from simulator.kv import KVBlocks
    from simulator.requests import RunState

#: an empty set of decode streams (stream ids)
NO_STREAMS = np.empty(0, dtype=np.int64)


class StepPlan:
    """One step's work: decode streams ``run`` (stream ids), prefill ``chunks`` ((request, tokens)),
    requests swapped back in (``swapins``) and seconds charged on top of the step's cost
    (``extra_s``: swap copies); ``row``: the step's record in the run's step log and ``dec_tokens``
    the decode streams' context tokens, once costed; ``gen``/``target``: the streams' generated and
    target tokens when ``grow_decodes`` formed the step (None: not gathered; nothing else changes
    them before the step is applied); ``emitted_s``/``blocks``: when every stream last emitted at one
    time, that time, and the streams' KV blocks, when the step was formed knowing them
    (``fastforward.DecodeRun.form_next``; None: read from ``RunState``)."""

    __slots__ = ("run", "chunks", "swapins", "extra_s", "row", "dec_tokens", "gen", "target", "emitted_s", "blocks")

    def __init__(self, run: np.ndarray = NO_STREAMS):
        self.run = run
        self.chunks: list[tuple[int, int]] = []
        self.swapins: list[int] = []
        self.extra_s = 0.0
        self.row = -1
        self.dec_tokens = 0
        self.gen = self.target = None
        self.emitted_s = self.blocks = None

    @property
    def empty(self) -> bool:
        return not self.run.size and not self.chunks and not self.swapins


def chunk_tokens(remaining: int, budget: int, chunked: bool, alone: bool) -> int:
    """Tokens of a prompt with ``remaining`` (>= 1) tokens to prefill this step: all of them if
    they fit in ``budget``; else a chunk of the budget (``chunked``); else the whole prompt if it
    is the step's only work (``alone``); else none (<= 0: the prompt does not run this step)."""
    if remaining <= budget:
        return remaining
    return budget if chunked else (remaining if alone else 0)


class Server(Protocol):
    """What the batch and preemption policies see of an instance (``simulator.engine.Server``
    implements it): its queues, limits and KV, and the step mechanics they call."""

    st: "RunState"  # the run's per-request and per-stream arrays
    kv: "KVBlocks"
    waiting: deque[int]  # queued at this instance, not yet admitted (FCFS)
    swapped: deque[int]  # preempted to host memory (``swap``)
    prefilling: list[int]  # started prompts with tokens left to prefill
    budget: int  # max tokens per iteration
    k: int  # tokens a decode stream runs per step (1 + MTP depth)
    max_batch: int
    committed: int  # batch slots held
    queued_blocks: int  # KV blocks of the queued requests
    swap_s_per_token: float

    def grow_decodes(self, plan: "StepPlan") -> None: ...
    def continue_prefills(self, plan: "StepPlan", budget: int) -> int: ...
    def resume_preempted(self, plan: "StepPlan") -> None: ...
    def admit_waiting(self, plan: "StepPlan", budget: int) -> int: ...
    def over_budget_head(self) -> int | None: ...
    def run_alone(self, r: int) -> "StepPlan": ...
    def prompt_left(self, r: int) -> int: ...
    def request_blocks(self, r: int) -> int: ...
    def reserve(self, r: int) -> int: ...


class BatchPolicy(Protocol):
    """Forms an instance's next step from its queues (see the module docstring)."""

    def form(self, server: "Server") -> StepPlan | None: ...


class SplitFuse:
    """Decode streams first, then prefill chunks (continuing, swap-ins, new) fill the budget."""

    __slots__ = ()

    def form(self, server: "Server") -> StepPlan | None:
        alone = server.over_budget_head()
        if alone is not None:
            return server.run_alone(alone)
        plan = StepPlan()
        server.grow_decodes(plan)
        if server.prefilling or server.waiting or server.swapped:
            budget = server.continue_prefills(plan, server.budget - plan.run.size * server.k)
            server.resume_preempted(plan)
            server.admit_waiting(plan, budget)
        return None if plan.empty else plan


class PrefillFirst:
    """A prefill-only step whenever a prompt can start or continue; else a decode step."""

    __slots__ = ()

    def form(self, server: "Server") -> StepPlan | None:
        if server.prefilling or server.waiting:
            plan = StepPlan()
            budget = server.continue_prefills(plan, server.budget)
            server.admit_waiting(plan, budget)
            if plan.chunks:
                return plan
        plan = StepPlan()
        server.grow_decodes(plan)
        server.resume_preempted(plan)
        return None if plan.empty else plan


class DecodeFirst:
    """Decode streams first; new prompts only when no decode stream runs."""

    __slots__ = ()

    def form(self, server: "Server") -> StepPlan | None:
        plan = StepPlan()
        server.grow_decodes(plan)
        budget = server.continue_prefills(plan, server.budget - plan.run.size * server.k)
        server.resume_preempted(plan)
        if not plan.run.size:
            server.admit_waiting(plan, budget)
        return None if plan.empty else plan


#: policies whose step, when nothing waits, prefills or is swapped out, is exactly ``grow_decodes``
#: (the engine may then advance runs of such steps in closed form: ``simulator.fastforward``)
PLAIN_DECODE_POLICIES = (SplitFuse, PrefillFirst, DecodeFirst)
