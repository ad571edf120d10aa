"""Prefix reuse in the deployment schema: which prompts share prefixes, and the cache that keeps them.

Two halves, both optional (absent: the engine behaves as before, with at most the legacy
``workload.prefix_cache_hit_rate``):

* ``workload.prefix``: where prompts share prefixes (their *identity*; lengths stay
  ``workload.prompt_tokens`` / ``output_tokens``):

  - ``{kind: sessions, turns: {kind: geometric, mean: 2.0}, think_time_s: 30, system_prompt_tokens: 0,
    system_prompts: 1, max_context_tokens: 32768}``: multi-turn conversations. A session's turn k
    prompt is its (shared) system prompt, every earlier turn's user message and answer, then
    this turn's user message (``prompt_tokens`` is the *new* user message per turn); the next
    turn arrives ``think_time_s`` (exponential, mean) after the answer finishes (closed loop).
    ``arrival`` draws session starts; ``num_requests`` counts turns.
  - ``{kind: shared_prefix, reuse_ratio: 0.5, prefixes: 8}``: each prompt opens with
    ``floor(reuse_ratio x prompt)`` tokens of one of ``prefixes`` shared prefixes (few-shot
    examples, documents, long system prompts), chosen uniformly; the rest is its own. With an
    unbounded cache the hit rate approaches ``reuse_ratio`` (less each prefix's first use and
    the partial last block).
  - a Mooncake trace's ``hash_ids`` are such an identity already (``workloads.traces``).

* ``prefix_cache``: a block-hash cache over each prefilling instance's KV memory
  (``simulator.prefix_cache``): blocks a prompt (and, colocated, its answer) computed stay in KV
  after the request leaves, are reused by a later prompt with the same prefix, and are evicted
  LRU when admission needs the room, as vLLM's automatic prefix caching and SGLang's
  RadixAttention keep them. ``max_cached_tokens`` caps what an instance keeps for reuse
  (default: all KV memory not in use). ``shared_pool``: a cluster-wide pool (CloudMatrix-Infer's
  EMS, Mooncake's store) holding every computed prefix block up to ``capacity_tokens``; a hit
  there costs a KV transfer at ``bandwidth_gb_per_s`` per device of the instance (default: the
  instance's KV port, ``hardware.kv_transfer.kv_port_bytes_per_s``) instead of a prefill.

``prefix_cache`` and ``workload.prefix_cache_hit_rate`` are exclusive: a hit rate is either an
input (legacy) or what the cache achieves.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from workloads import limits as L

__all__ = ["FixedTurns", "GeometricTurns", "SessionsPrefix", "SharedPrefix", "PrefixSpec", "SharedPool",
           "PrefixCache", "expected_previous_turns"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class FixedTurns(_Frozen):
    """Every session has ``turns`` turns."""

    kind: Literal["fixed"]
    turns: int = Field(ge=1, le=L.MAX_SESSION_TURNS)


class GeometricTurns(_Frozen):
    """Turns per session ~ Geometric on {1, 2, ...} with the given mean: after each turn the user
    leaves with probability 1 / mean (memoryless; the maximum-entropy count for a known mean)."""

    kind: Literal["geometric"]
    mean: float = Field(ge=1.0, le=L.MAX_SESSION_TURNS)
    max_turns: int = Field(L.MAX_SESSION_TURNS, ge=1, le=L.MAX_SESSION_TURNS)


TurnCount = Annotated[Union[FixedTurns, GeometricTurns], Field(discriminator="kind")]


def expected_previous_turns(turns: FixedTurns | GeometricTurns) -> float:
    """Mean number of earlier turns in a request's context, over requests: E[T(T-1)/2] / E[T]
    (fixed T: (T-1)/2; geometric of mean m, untruncated: m - 1)."""
    if turns.kind == "fixed":
        return (turns.turns - 1) / 2
    return turns.mean - 1.0


class SessionsPrefix(_Frozen):
    """Multi-turn sessions: each turn's prompt extends the previous prompt and answer."""

    kind: Literal["sessions"]
    turns: TurnCount = GeometricTurns(kind="geometric", mean=2.0)
    think_time_s: float = Field(30.0, ge=0.0, le=L.MAX_DURATION_S,
                                description="mean (exponential) gap from an answer to the next turn")
    system_prompt_tokens: int = Field(0, ge=0, le=L.MAX_SEQUENCE_TOKENS,
                                      description="tokens of the system prompt each session opens with")
    system_prompts: int = Field(1, ge=1, le=L.MAX_REQUESTS,
                                description="distinct system prompts, one drawn uniformly per session")
    max_context_tokens: int = Field(32768, ge=2, le=L.MAX_SEQUENCE_TOKENS,
                                    description="a session ends before a turn whose prompt + answer exceeds this")


class SharedPrefix(_Frozen):
    """Prompts opening with one of a few shared prefixes, a target share of their tokens."""

    kind: Literal["shared_prefix"]
    reuse_ratio: float = Field(ge=0.0, lt=1.0, description="share of each prompt that is a shared prefix")
    prefixes: int = Field(1, ge=1, le=L.MAX_REQUESTS, description="distinct shared prefixes, drawn uniformly")


PrefixSpec = Annotated[Union[SessionsPrefix, SharedPrefix], Field(discriminator="kind")]


class SharedPool(_Frozen):
    """A disaggregated prefix pool shared by every instance (EMS in CloudMatrix-Infer)."""

    capacity_tokens: int = Field(ge=1, le=L.MAX_CACHE_TOKENS, description="tokens of KV the pool holds (LRU)")
    bandwidth_gb_per_s: float | None = Field(
        None, gt=0, le=L.MAX_MEMORY_GB,
        description="GB/s per device of the fetching instance (None: the device's scale-out bandwidth, "
                    "as KV hand-offs; hardware.kv_transfer)")


class PrefixCache(_Frozen):
    """Per-instance prefix cache in KV memory (LRU), optionally backed by a shared pool."""

    max_cached_tokens: int | None = Field(
        None, ge=0, le=L.MAX_CACHE_TOKENS,
        description="tokens an instance keeps for reuse after their requests leave (None: all free KV memory)")
    shared_pool: SharedPool | None = None
    kv_aware_load_weight: float = Field(
        0.1, ge=0.0, le=1000.0,
        description="scheduler.router kv_aware: weight of an instance's KV blocks in use against the prefix "
                    "blocks a request would reuse there (simulator.policies)")


class PrefixRuleError(ValueError):
    """A broken prefix rule, located at ``path`` below the validated model
    (``workloads.yamlloc.format_validation_error`` appends it to the model's location)."""

    def __init__(self, path: tuple, msg: str):
        super().__init__(f"{'.'.join(map(str, path))}: {msg}")
        self.path, self.msg = path, msg


#: KV block of the engine's paged cache (``simulator.kv.BLOCK_TOKENS``; repeated here because the
#: schema may not import ``simulator/``; tests/test_prefix_cache.py checks they agree)
KV_BLOCK_TOKENS = 64


def workload_prefix_errors(workload) -> None:
    """Rules of ``workload.prefix`` against the rest of the workload (raises ``PrefixRuleError``)."""
    prefix = workload.prefix
    if prefix is None:
        return
    if workload.arrival.kind == "trace":
        raise PrefixRuleError(("prefix",), "applies to synthetic arrivals (a trace carries its own prefix "
                                           "identity: mooncake's hash_ids); remove it or use arrival kind poisson/gamma")
    if prefix.kind == "sessions" and workload.samples_per_request != 1:
        raise PrefixRuleError(("prefix",), f"sessions continue one answer per turn, so samples_per_request must be 1 "
                                           f"(got {workload.samples_per_request})")
    if workload.prefix_cache_hit_rate > 0:
        raise PrefixRuleError(("prefix_cache_hit_rate",), "a fixed hit rate and workload.prefix exclude each other: "
                              "with prefix identity the hits come from prefix_cache (set the rate to 0)")


def prefix_cache_errors(dep) -> None:
    """Rules of ``prefix_cache`` against the workload (raises ``PrefixRuleError``)."""
    if dep.prefix_cache is None:
        return
    wl = dep.workload
    if wl.prefix_cache_hit_rate > 0:
        raise PrefixRuleError(("workload", "prefix_cache_hit_rate"),
                              f"{wl.prefix_cache_hit_rate:g} is a fixed hit rate, but prefix_cache computes the hits "
                              "from cache state; set it to 0 (or remove prefix_cache to keep the fixed rate)")
    arrival = wl.arrival
    if arrival.kind == "trace" and arrival.format == "mooncake" and arrival.block_tokens % KV_BLOCK_TOKENS:
        raise PrefixRuleError(("workload", "arrival", "block_tokens"),
                              f"{arrival.block_tokens} is not a multiple of the {KV_BLOCK_TOKENS}-token KV block, "
                              "so hash_ids blocks cannot be cached whole (valid: 64, 128, ..., 512)")
