"""Queueing of a batching prefill server: the TTFT percentile the simulator would measure.

A prefill instance (``simulator.engine.Server`` in a prefill pool) is a *batching server*:
when an iteration ends, every waiting request (up to ``cap`` prompts: the token budget, the
batch limit or the KV room) starts together in the next one, and an iteration of ``k``
prompts takes ``step_s[k]`` seconds (a staircase: the busiest attention-DP rank holds
``ceil(k / dp)`` prompts). With Poisson arrivals at ``lam`` this is a Markov chain on
``N``, the requests present when an iteration starts:

    N' = (N - min(N, cap)) + A,   A ~ Poisson(lam * step_s[min(N, cap)])

(``N' = 0`` means the server idles until the next arrival, which starts alone: ``N' = 1``).
Its stationary law ``pi`` gives the share of *time* spent in each kind of iteration,
``pi(N) step(N) / (sum pi step + idle)``. A request arriving (PASTA) at a uniform point
``u`` of an iteration of state ``N`` waits out ``(1 - u) step(N)`` and then runs in the
next iteration together with the ``L = N - min(N, cap)`` requests left over and the
``K ~ Poisson(lam step(N))`` other arrivals of that iteration, taking
``step(min(cap, L + 1 + K))``; when those overflow ``cap`` it waits
``ceil((L + a + 1) / cap)`` full iterations (``a ~ Poisson(lam u step)``: arrivals before
it, with ``u`` taken per quarter of the iteration).
An arrival to an idle server runs alone. The TTFT percentile is read off this mixture's
CDF (exact in ``u``: the TTFT is linear in ``u`` within each term).

Also here: the single-server wait (``kingman_wait_p``, the colocated prefill budget) and the
multi-server wait (``erlang_c``, ``mdc_wait_p``: a decode instance's KV slots).

Why not the mean-batch fixed point the planner used before (``T = step(lam T P / dp)``):
a long iteration collects more arrivals and makes the next one long, and the step is a
staircase in whole prompts per rank, so the fixed point under-states the tail (at 18 req/s
on DeepSeek-V3 / 8 H200: 1.1 s against the simulator's 3.5-5 s). ``tests/test_planner_verify.py``
checks this model against a direct simulation of the same server.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from workloads.scipy_parts import solve as _solve
from workloads.scipy_parts import special_ufuncs

# scipy.special's ufuncs, loaded without the package (``workloads.scipy_parts``: a plan's serial start)
gammaln, pdtr, xlogy = special_ufuncs().gammaln, special_ufuncs().pdtr, special_ufuncs().xlogy

__all__ = ["batch_server_ttft_p", "kingman_wait_p", "erlang_c", "mdc_wait_p"]

#: the chain covers a backlog of this many full iterations (at least 60 requests) ...
_BACKLOG_CAPS = 4
#: ... in at most this many states. Small enough for LAPACK to stay single-threaded:
#: OpenBLAS threads a larger solve, and its spinning threads make the planner's worker
#: processes crawl on a loaded machine.
_MAX_STATES = 80
#: sub-intervals of the arrival point within an iteration for requests that overflow it
_U_PARTS = 4
#: stationary mass allowed in the last full iteration of backlog before the server counts
#: as unstable
_TAIL_MASS = 1e-4


def _nodes(S: np.ndarray, cap: int) -> np.ndarray:
    """``_nodes_of`` memoised by the staircase (a prefill choice's capacity search solves the
    chain at ~11 rates over one staircase; the nodes do not depend on the rate). Read-only."""
    return _nodes_memo(S.tobytes(), cap)


@lru_cache(maxsize=512)
def _nodes_memo(raw: bytes, cap: int) -> np.ndarray:
    out = _nodes_of(np.frombuffer(raw, dtype=np.float64), cap)
    out.flags.writeable = False
    return out


def _nodes_of(S: np.ndarray, cap: int) -> np.ndarray:
    """Request counts the chain keeps as states (the rest split linearly between neighbours).

    Every count up to 16, both sides of each jump of the step staircase (a new prompt per
    DP rank), ``cap`` and ``cap + 1``, then evenly spaced counts below ``cap`` and in the
    backlog above it: within a stair the step is linear in the count, so linear splitting
    loses little there.
    """
    top = max(_BACKLOG_CAPS * cap, cap + 60)
    if top <= _MAX_STATES:  # small batches: every count is a state
        return np.arange(1, top + 1, dtype=np.int64)
    base = set(range(1, min(cap, 16) + 1)) | {cap, cap + 1, top}
    d = np.diff(S[1:])
    must = set(base)
    if d.size:
        big = np.flatnonzero(d > 3.0 * np.median(d) + 1e-12) + 1  # S[k + 1] - S[k] is a jump
        must |= {int(k) for k in big} | {int(k) + 1 for k in big}
    if len(must) > (2 * _MAX_STATES) // 3:
        must = base
    h = 1
    while True:
        hb = max(h, math.ceil((top - cap) / (_MAX_STATES // 3)))
        nodes = must | set(range(1, cap + 1, h)) | set(range(cap + 1, top + 1, hb))
        if len(nodes) <= _MAX_STATES:
            return np.array(sorted(nodes), dtype=np.int64)
        h += max(1, h // 4)


def _stationary(P: np.ndarray) -> np.ndarray:
    n = P.shape[0]
    A = P.T - np.eye(n)
    A[-1, :] = 1.0
    b = np.zeros(n)
    b[-1] = 1.0
    try:  # scipy's LAPACK call: numpy's threaded OpenBLAS costs ~20x more at this size
        pi = _solve(A, b)
    except np.linalg.LinAlgError:
        pi = np.linalg.lstsq(A, b, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def _pmf(k: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Poisson pmf of counts ``k`` (row) at means ``mu`` (column), computed in log space."""
    k = np.asarray(k, dtype=float)[None, :]
    mu = np.asarray(mu, dtype=float)[:, None]
    return np.exp(xlogy(k, mu) - mu - gammaln(k + 1.0))


def _transitions(nodes: np.ndarray, L: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Transition matrix between the ``nodes``: from a node, ``L`` left over plus Poisson(mu)
    arrivals; the mass of a count between two nodes split linearly between them, an idle
    server (count 0) starting with the next arrival (node 1), mass past the last node kept
    there (the truncation the tail check watches)."""
    n = nodes.size
    a = np.arange(0, int(mu.max() + 12.0 * math.sqrt(mu.max()) + 24))  # Poisson support that matters
    pk_all = _pmf(a, mu)  # (states, counts)
    target = np.clip(L[:, None] + a[None, :], 1, nodes[-1])
    lo_i = np.clip(np.searchsorted(nodes, target, side="right") - 1, 0, n - 1)
    hi_i = np.minimum(lo_i + 1, n - 1)
    span = np.maximum(nodes[hi_i] - nodes[lo_i], 1)
    frac = np.where(hi_i > lo_i, (target - nodes[lo_i]) / span, 0.0)
    rows = np.arange(n)[:, None] * n
    P = (np.bincount((rows + lo_i).ravel(), (pk_all * (1.0 - frac)).ravel(), n * n)
         + np.bincount((rows + hi_i).ravel(), (pk_all * frac).ravel(), n * n)).reshape(n, n)
    P[:, -1] += np.clip(1.0 - pk_all.sum(axis=1), 0.0, None)
    return P


def batch_server_ttft_p(lam: float, step_s, percentile: float, full_s: float | None = None,
                        full_batch: float | None = None) -> float:
    """Percentile of (arrival -> end of the iteration that serves the request) of a batching
    server; ``step_s[k]`` is an iteration of ``k`` requests (``k = 1 .. cap``; index 0 unused).

    ``full_s`` / ``full_batch``: an iteration when more than ``cap`` requests wait, and the
    requests' worth of work it clears (default ``step_s[cap]`` / ``cap``). With chunked
    prefill the engine fills the token budget with a chunk of the next prompt, and costs the
    batch with its tokens spread evenly over the chunks (``simulator.policies``), so that
    iteration is slower than ``step_s[cap]`` and clears ``budget / prompt`` prompts.
    ``inf`` when the server cannot keep up (the chain's mass runs off its truncation)."""
    S = np.asarray(step_s, dtype=float)
    cap = len(S) - 1
    if cap < 1:
        raise ValueError("step_s needs at least one batch size (step_s[1])")
    full_s = float(S[cap]) if full_s is None else float(full_s)
    full_batch = float(cap) if full_batch is None else max(float(full_batch), float(cap))
    if lam <= 0.0:
        return float(S[1])
    if lam * full_s >= full_batch:  # a full iteration cannot clear the arrivals it collects
        return math.inf
    nodes = _nodes(S, cap)
    over = nodes > cap
    X = np.where(over, np.minimum(nodes, full_batch), nodes)  # served per iteration
    L = nodes - X  # left over for the next one
    S_N = np.where(over, full_s, S[np.minimum(nodes, cap)])
    mu = lam * S_N
    P = _transitions(nodes, L, mu)
    pi = _stationary(P)
    if pi[nodes > nodes[-1] - cap].sum() > _TAIL_MASS:
        return math.inf
    idle = float((pi * np.where(L < 1e-9, np.exp(-mu), 0.0)).sum() / lam)
    busy = float((pi * S_N).sum())
    total = busy + idle
    live = pi > 1e-10
    w = pi[live] * S_N[live] / total
    Sl, Ll, mul = S_N[live], L[live], mu[live]
    # the tagged request's TTFT is uniform on [c, c + step(N)] (its arrival point u) for each
    # (state, others K) term: c = the iteration it runs in, or the full ones it waits for
    hi_k = int(min(cap, mul.max() + 12.0 * math.sqrt(mul.max()) + 24))  # Poisson support that matters
    K = np.arange(0, hi_k + 1)
    pk = _pmf(K, mul)
    size = Ll[:, None] + 1 + K[None, :]
    p_fit = np.where(size <= cap, pk, 0.0)
    c_fit = S[np.minimum(np.rint(size).astype(np.int64), cap)]
    p_over = np.clip(1.0 - p_fit.sum(axis=1), 0.0, None)
    # overflow: it waits full iterations until its turn; the arrivals ahead of it grow with its
    # arrival point u, so u is split into quarters (a ~ Poisson(lam u step) at each's middle)
    A = np.arange(0, int(min(2 * cap, 0.5 * mul.max() + 12.0 * math.sqrt(mul.max()) + 24)) + 1)
    parts_w, parts_c, parts_width = [(w[:, None] * p_fit).ravel()], [c_fit.ravel()], \
        [np.broadcast_to(Sl[:, None], c_fit.shape).ravel()]
    for q in range(_U_PARTS):
        u_lo, u_mid = q / _U_PARTS, (q + 0.5) / _U_PARTS
        pa = _pmf(A, u_mid * mul)
        pa[:, -1] += np.clip(1.0 - pa.sum(axis=1), 0.0, None)
        turns = np.maximum(1, np.ceil((Ll[:, None] + A[None, :] + 1) / full_batch))
        parts_c.append(((1.0 - u_lo - 1.0 / _U_PARTS) * Sl[:, None] + turns * full_s).ravel())
        parts_w.append((w[:, None] * p_over[:, None] * pa / _U_PARTS).ravel())
        parts_width.append(np.broadcast_to(Sl[:, None] / _U_PARTS, pa.shape).ravel())
    wt, c, width = np.concatenate(parts_w), np.concatenate(parts_c), np.concatenate(parts_width)
    keep = wt > 1e-12
    wt, c, width = wt[keep], c[keep], width[keep]
    idle_share = idle / total

    def cdf_at(t: float) -> float:
        return idle_share * (S[1] <= t) + float((wt * np.clip((t - c) / width, 0.0, 1.0)).sum())

    q = percentile / 100.0
    lo, hi = 0.0, float((c + width).max())
    if cdf_at(hi) < q * (1.0 - 1e-9):
        return math.inf
    while hi - lo > 2e-4 * hi:
        mid = 0.5 * (lo + hi)
        if cdf_at(mid) >= q:
            hi = mid
        else:
            lo = mid
    return hi


def kingman_wait_p(rho: float, service_s: float, cv_arrival: float, percentile: float) -> float:
    """Percentile of the queueing wait of a single deterministic server (M/D/1 when cv = 1).

    Mean ``W = rho s ca^2 / (2 (1 - rho))`` (Kingman); tail ``P(W > t) = rho exp(-rho t / W)``.
    """
    if rho <= 0.0:
        return 0.0
    if rho >= 1.0:
        return math.inf
    mean = rho * service_s * cv_arrival**2 / (2.0 * (1.0 - rho))
    tail = 1.0 - percentile / 100.0
    if rho <= tail or mean <= 0.0:
        return 0.0
    return mean / rho * math.log(rho / tail)


def erlang_c(load: float, servers: float) -> float:
    """Probability of waiting in M/M/c with offered load ``load`` (Erlangs) and ``servers``
    (Erlang B from the Poisson pmf and cdf, then C = c B / (c - A (1 - B)))."""
    c = max(1, int(math.floor(servers)))
    if load <= 0.0:
        return 0.0
    if load >= c:
        return 1.0
    log_pmf = c * math.log(load) - load - math.lgamma(c + 1.0)
    cdf = float(pdtr(c, load))
    b = math.exp(log_pmf) / cdf if cdf > 0 else 1.0
    return min(1.0, c * b / (c - load * (1.0 - b)))


def mdc_wait_p(load: float, servers: float, service_s: float, percentile: float) -> float:
    """Percentile of the queueing wait of M/D/c: Erlang C's waiting probability and
    exponential tail with the Allen-Cunneen scaling (1 + cs^2) / 2 = 1/2 of the M/M/c mean."""
    c = max(1, int(math.floor(servers)))
    if load >= c:
        return math.inf
    pw = erlang_c(load, c)
    tail = 1.0 - percentile / 100.0
    if pw <= tail:
        return 0.0
    mean_given_wait = 0.5 * service_s / (c - load)
    return mean_given_wait * math.log(pw / tail)
