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
* Trace files (CSV with a header, or JSON lines) carry ``arrival_s``, ``prompt_tokens``,
  ``output_tokens`` and optionally ``cached_tokens``; rows are sorted by arrival. A relative
  path written in a deployment or plan YAML is relative to that YAML's folder (resolved at load
  by ``workloads.config_file.anchor_relative_paths``); one from ``--set``, to the working directory.
* Samples: ``samples_per_request`` n draws n output lengths per request; ``beam`` keeps n
  beams of one common length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: tokens per KV block; prefix-cache hits are whole blocks
PREFIX_BLOCK_TOKENS = 64


@dataclass(frozen=True)
class WorkloadArrays:
    """The requests of a run: ``arrival_s``, ``prompt_tokens``, ``cached_tokens`` of shape
    (R,), ``output_tokens`` of shape (R, n) for n samples per request."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    cached_tokens: np.ndarray
    output_tokens: np.ndarray

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


def read_trace(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a CSV (header row) or JSONL trace file; raises ValueError naming the file."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"trace file {p} does not exist")
    cols = ("arrival_s", "prompt_tokens", "output_tokens", "cached_tokens")
    if p.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        data = {c: np.array([r.get(c, 0) for r in rows], dtype=float) for c in cols}
        missing = [c for c in cols[:3] if rows and c not in rows[0]]
    else:
        import pandas as pd

        df = pd.read_csv(p)
        missing = [c for c in cols[:3] if c not in df.columns]
        data = {c: (df[c].to_numpy(dtype=float) if c in df.columns else np.zeros(len(df))) for c in cols}
    if missing:
        raise ValueError(f"trace file {p}: missing column(s) {', '.join(missing)} (valid: {', '.join(cols)})")
    return data


def generate_workload(workload, rng_arrivals: np.random.Generator, rng_lengths: np.random.Generator) -> WorkloadArrays:
    """All requests of a run, drawn from the run's ``arrivals`` and ``lengths`` streams."""
    n_samples = workload.samples_per_request
    if workload.arrival.kind == "trace":
        tr = read_trace(workload.arrival.path)
        order = np.argsort(tr["arrival_s"], kind="stable")
        arrival = tr["arrival_s"][order]
        keep = np.ones(arrival.size, dtype=bool)
        if workload.duration_s is not None:
            keep &= arrival <= workload.duration_s
        if workload.num_requests is not None:
            keep &= np.arange(arrival.size) < workload.num_requests
        arrival = arrival[keep]
        prompt = np.maximum(tr["prompt_tokens"][order][keep].astype(np.int64), 1)
        out1 = np.maximum(tr["output_tokens"][order][keep].astype(np.int64), 1)
        cached = np.clip(tr["cached_tokens"][order][keep].astype(np.int64), 0, prompt - 1)
        output = np.repeat(out1[:, None], n_samples, axis=1)
        if workload.prefix_cache_hit_rate > 0:
            cached = np.maximum(cached, _cached(prompt, workload.prefix_cache_hit_rate))
        return WorkloadArrays(arrival - (arrival[0] if arrival.size and arrival[0] < 0 else 0.0), prompt, cached, output)
    arrival = _arrival_times(workload.arrival, workload.num_requests, workload.duration_s, rng_arrivals)
    r = arrival.size
    prompt = sample_lengths(workload.prompt_tokens, r, rng_lengths)
    if workload.sample_policy == "beam" or n_samples == 1:
        output = np.repeat(sample_lengths(workload.output_tokens, r, rng_lengths)[:, None], n_samples, axis=1)
    else:
        output = sample_lengths(workload.output_tokens, r * n_samples, rng_lengths).reshape(r, n_samples)
    cached = _cached(prompt, workload.prefix_cache_hit_rate)
    return WorkloadArrays(arrival, prompt, cached, output)


def _cached(prompt: np.ndarray, hit_rate: float) -> np.ndarray:
    blocks = np.floor(prompt * hit_rate / PREFIX_BLOCK_TOKENS).astype(np.int64)
    return np.minimum(blocks * PREFIX_BLOCK_TOKENS, prompt - 1)
