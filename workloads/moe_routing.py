"""Uniform top-k routing: how many of a rank's experts a step touches, and how many tokens each gets.

With a few tokens per rank (decode, speculative verification) most local experts receive no
token, and a grouped GEMM reads only the weights of the experts that do (measured:
``calibration/profiles/h200/grouped_mm_sparse_bf16.csv``, where 8 active groups of 64 or of 256
take the same time). The expected number of touched experts is therefore the quantity that sets
the weight bytes an MoE layer reads, not the number of experts a rank holds.

Model: every one of ``tokens`` tokens (all tokens entering the layer over the expert-parallel
group) picks ``top_k`` distinct experts of ``num_experts`` uniformly at random, independently of
the other tokens (DeepSeek's routing without load imbalance; ``calibration.groundtruth.moe``
draws exactly this). For one token, a given expert is among its ``top_k`` distinct choices with
probability ``top_k / num_experts`` (sampling without replacement: each expert is equally likely
to be in the chosen subset), so it stays untouched by all tokens with probability
``(1 - top_k / num_experts) ** tokens`` and

    E[touched of the rank's E_l experts] = E_l * (1 - (1 - k/E) ** T)      (exact, by linearity).

Redundant expert replicas (EPLB) count as extra experts: ``num_experts`` is the number of expert
slots over the group.
"""

from __future__ import annotations


def untouched_probability(tokens: float, num_experts: int, top_k: int) -> float:
    """P(a given expert receives none of ``tokens`` uniformly routed top-``top_k`` tokens)."""
    if num_experts <= 0 or top_k <= 0 or tokens <= 0:
        return 1.0
    return (1.0 - min(top_k, num_experts) / num_experts) ** tokens


def expected_active_experts(tokens: float, num_experts: int, top_k: int, local_experts: int) -> float:
    """Expected number of a rank's ``local_experts`` that at least one of ``tokens`` tokens routes to
    (exact for uniform top-k routing, see the module docstring)."""
    return local_experts * (1.0 - untouched_probability(tokens, num_experts, top_k))


def tokens_per_active_expert(pairs: float, active_experts: float) -> float:
    """Mean routed (token, expert) pairs per touched expert: at least one wherever there are pairs."""
    if pairs <= 0 or active_experts <= 0:
        return 0.0
    return max(1.0, pairs / active_experts)


def poisson_pmf(k, mu: float):
    """``scipy.stats.poisson.pmf(k, mu)`` for integer ``k >= 0`` and ``mu > 0``, computed as scipy
    computes it (``exp(xlogy(k, mu) - gammaln(k + 1) - mu)``, clipped to [0, 1]) from
    ``scipy.special`` alone: importing ``scipy.stats`` costs ~0.1 s and ~20 MB more than the
    special functions (the simulator's start-up and peak memory). Same bits as scipy's
    (``tests/test_moe_routing_dists.py``)."""
    import numpy as np

    from workloads.scipy_parts import special_ufuncs

    scu = special_ufuncs()  # scipy.special's own ufuncs, without the package's import
    k = np.asarray(k)
    return np.clip(np.exp(scu.xlogy(k, mu) - scu.gammaln(k + 1) - mu), 0, 1)


def binom_cdf(k, n: int, p: float):
    """``scipy.stats.binom.cdf(k, n, p)`` for integers ``0 <= k`` and ``n >= 0``, ``0 <= p <= 1``:
    scipy's own kernel (``scipy.special._ufuncs._binom_cdf`` of ``floor(k)``, clipped to [0, 1];
    1 from ``k >= n`` on) without importing ``scipy.stats`` (see ``poisson_pmf``)."""
    import numpy as np

    from workloads.scipy_parts import special_ufuncs

    scu = special_ufuncs()
    k = np.asarray(k)
    out = np.ones(k.shape)
    below = k < n
    out[below] = np.clip(scu._binom_cdf(np.floor(k[below]), n, p), 0, 1)
    return out
