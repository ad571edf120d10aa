"""Request generation: arrival times, prompt/output lengths and cached prefixes as arrays.

``generate_workload(workload, rng_arrivals, rng_lengths)`` turns a validated
``workloads.deployment.Workload`` into a ``WorkloadArrays`` (one row per request, plus one
output length per test-time-scaling sample). Everything is drawn up front from the run's
seeded streams, so the event loop never touches a random generator for the workload.

Conventions:

* Poisson arrivals: exponential gaps of mean 1/rate. Gamma arrivals: gaps ~ Gamma(k, theta)
  with k = 1/cv^2 and theta = 1/(rate k) (mean 1/rate, coefficient of variation cv).
* ``num_requests`` and ``duration_s``: arrivals stop at whichever comes first.
* Lognormal(mean, cv): sigma^2 = ln(1 + cv^2), mu = ln(mean) - sigma^2/2, rounded and
  clipped to [1, max_tokens].
* Prefix cache: a hit rate h gives each request floor(h * prompt / 64) * 64 cached tokens
  (prefix caches work in KV blocks), always leaving at least one token to prefill.
* Traces (``arrival.kind: trace``) are read, sliced and time-scaled by ``workloads.traces``
  (formats csv, azure, burstgpt, mooncake); a trace's cached tokens are raised to the hit
  rate's when ``prefix_cache_hit_rate`` is set, and Mooncake's block hashes ride along per
  request (``WorkloadArrays.block_hashes``) for a prefix cache.
* Samples: ``samples_per_request`` n draws n output lengths per request; ``beam`` keeps n
  beams of one common length.
* Prefix identity (``workload.prefix``, ``simulator.prefix_workload``): ``sessions`` lays out
  multi-turn conversations (arrivals are session starts, later turns are released by the
  engine after the previous answer), ``shared_prefix`` gives prompts shared heads; both set
  ``WorkloadArrays.chains`` for the prefix cache, as a Mooncake trace's hashes do. Their extra
  draws come after the ones above, so a workload without ``prefix`` draws exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.prefix_workload import BlockChains, draw_sessions, draw_turns, shared_prefix_chains
from workloads.traces import BlockHashes, workload_trace

#: tokens per KV block; prefix-cache hits are whole blocks
PREFIX_BLOCK_TOKENS = 64


@dataclass(frozen=True)
class WorkloadArrays:
    """The requests of a run: ``arrival_s``, ``prompt_tokens``, ``cached_tokens`` of shape
    (R,), ``output_tokens`` of shape (R, n) for n samples per request; ``block_hashes``: each
    request's prompt block hashes when the trace carries them (Mooncake), else None;
    ``chains``: prefix identity for a prefix cache (``simulator.prefix_workload``), else None;
    multi-turn sessions: ``next_turn`` (the session's next request, -1 at its end) and
    ``think_s`` (gap after the previous answer), with ``arrival_s`` NaN for later turns."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    cached_tokens: np.ndarray
    output_tokens: np.ndarray
    block_hashes: BlockHashes | None = None
    chains: BlockChains | None = None
    next_turn: np.ndarray | None = None
    think_s: np.ndarray | None = None

    @property
    def num_requests(self) -> int:
        return int(self.arrival_s.size)

    @property
    def samples(self) -> int:
        return int(self.output_tokens.shape[1])


def sample_lengths(dist, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws (int64, >= 1) from a fixed / uniform / lognormal length distribution."""
    kind = dist.kind
    if kind == "fixed":
        return np.full(size, int(dist.tokens), dtype=np.int64)
    if kind == "uniform":
        return rng.integers(dist.min_tokens, dist.max_tokens + 1, size=size, dtype=np.int64)
    if kind == "lognormal":
        sigma2 = np.log1p(dist.cv**2)
        mu = np.log(dist.mean_tokens) - sigma2 / 2
        x = rng.lognormal(mu, np.sqrt(sigma2), size=size)
        return np.clip(np.rint(x), 1, dist.max_tokens).astype(np.int64)
    raise ValueError(f"unknown length distribution {kind!r} (valid: fixed, uniform, lognormal)")


def _arrival_times(arrival, limit_n: int | None, duration_s: float | None, rng: np.random.Generator) -> np.ndarray:
    """Arrival instants until ``limit_n`` requests or ``duration_s`` seconds, whichever first."""
    rate = arrival.rate_per_s
    if arrival.kind == "poisson":
        def gaps(k: int) -> np.ndarray:
            return rng.exponential(1.0 / rate, size=k)
    else:  # gamma
        shape = 1.0 / arrival.cv**2

        def gaps(k: int) -> np.ndarray:
            return rng.gamma(shape, 1.0 / (rate * shape), size=k)
    if limit_n is not None:
        t = np.cumsum(gaps(limit_n))
        return t[t <= duration_s] if duration_s is not None else t
    chunks, last = [], 0.0
    while last <= duration_s:  # draw in chunks until past the horizon
        chunk = last + np.cumsum(gaps(max(16, int(rate * duration_s * 0.25) + 16)))
        chunks.append(chunk)
        last = float(chunk[-1])
    t = np.concatenate(chunks)
    return t[t <= duration_s]


def generate_workload(workload, rng_arrivals: np.random.Generator, rng_lengths: np.random.Generator) -> WorkloadArrays:
    """All requests of a run, drawn from the run's ``arrivals`` and ``lengths`` streams."""
    n_samples = workload.samples_per_request
    if workload.arrival.kind == "trace":
        tr = workload_trace(workload)
        prompt = tr.prompt_tokens.astype(np.int64)
        cached = tr.cached_tokens.astype(np.int64)
        if workload.prefix_cache_hit_rate > 0:
            cached = np.maximum(cached, _cached(prompt, workload.prefix_cache_hit_rate))
        output = np.repeat(tr.output_tokens.astype(np.int64)[:, None], n_samples, axis=1)
        chains = BlockChains.from_hashes(tr.block_hashes) if tr.block_hashes is not None else None
        return WorkloadArrays(tr.arrival_s.astype(float), prompt, cached, output, tr.block_hashes, chains)
    if workload.prefix is not None and workload.prefix.kind == "sessions":
        return _sessions(workload, rng_arrivals, rng_lengths)
    arrival = _arrival_times(workload.arrival, workload.num_requests, workload.duration_s, rng_arrivals)
    r = arrival.size
    prompt = sample_lengths(workload.prompt_tokens, r, rng_lengths)
    if workload.sample_policy == "beam" or n_samples == 1:
        output = np.repeat(sample_lengths(workload.output_tokens, r, rng_lengths)[:, None], n_samples, axis=1)
    else:
        output = sample_lengths(workload.output_tokens, r * n_samples, rng_lengths).reshape(r, n_samples)
    cached = _cached(prompt, workload.prefix_cache_hit_rate)
    chains = None
    if workload.prefix is not None:  # shared_prefix
        spec = workload.prefix
        group = rng_lengths.integers(0, spec.prefixes, size=r)
        chains = shared_prefix_chains(prompt, group, spec.reuse_ratio, spec.prefixes, PREFIX_BLOCK_TOKENS)
    return WorkloadArrays(arrival, prompt, cached, output, chains=chains)


def _sessions(workload, rng_arrivals: np.random.Generator, rng_lengths: np.random.Generator) -> WorkloadArrays:
    """Multi-turn sessions (``simulator.prefix_workload.draw_sessions``): session starts from the
    arrival process, turns until ``num_requests`` turns (the last session cut short) or the
    sessions starting within ``duration_s``."""
    spec, n = workload.prefix, workload.num_requests
    if n is not None:
        drawn, total = [], 0
        while total < n:
            drawn.append(draw_turns(spec.turns, max(16, n // 2), rng_lengths))
            total += int(drawn[-1].sum())
        turns = np.concatenate(drawn)
        cum = np.cumsum(turns)
        sessions = int(np.searchsorted(cum, n)) + 1
        turns = turns[:sessions].copy()
        turns[-1] -= int(cum[sessions - 1]) - n
        starts = _arrival_times(workload.arrival, sessions, workload.duration_s, rng_arrivals)
        turns = turns[:starts.size]
    else:
        starts = _arrival_times(workload.arrival, None, workload.duration_s, rng_arrivals)
        turns = draw_turns(spec.turns, starts.size, rng_lengths)
    t = int(turns.sum())
    user = sample_lengths(workload.prompt_tokens, t, rng_lengths)
    answer = sample_lengths(workload.output_tokens, t, rng_lengths)
    system = rng_lengths.integers(0, spec.system_prompts, size=turns.size)
    think = rng_arrivals.exponential(spec.think_time_s, size=t) if spec.think_time_s > 0 else np.zeros(t)
    ss = draw_sessions(spec, starts, turns, user, answer, system, think, PREFIX_BLOCK_TOKENS)
    return WorkloadArrays(ss.start_s, ss.prompt, np.zeros_like(ss.prompt), ss.output[:, None], chains=ss.chains,
                          next_turn=ss.next_turn, think_s=ss.think_s)


def _cached(prompt: np.ndarray, hit_rate: float) -> np.ndarray:
    blocks = np.floor(prompt * hit_rate / PREFIX_BLOCK_TOKENS).astype(np.int64)
    return np.minimum(blocks * PREFIX_BLOCK_TOKENS, prompt - 1)
