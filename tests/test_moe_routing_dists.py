"""``workloads.moe_routing``'s Poisson pmf and binomial cdf give scipy.stats' exact bits (they
replace ``scipy.stats`` on the simulator's path, whose import costs time and memory)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, poisson

from workloads.moe_routing import binom_cdf, poisson_pmf


@pytest.mark.parametrize("mu", [1e-3, 0.5, 1.0, 7.25, 64.0, 127.9, 300.0, 4096.0, 1e5])
def test_poisson_pmf_bits(mu):
    x = np.arange(1, int(mu + 10 * math.sqrt(mu) + 128) + 1)
    assert poisson_pmf(x, mu).tobytes() == poisson.pmf(x, mu).tobytes()


@pytest.mark.parametrize("tokens,q", [(1, 0.5), (3, 8 / 256), (64, 8 / 256), (257, 8 / 288), (4096, 8 / 256),
                                      (100_000, 8 / 256), (10, 1.0), (7, 0.0), (50, 0.999)])
def test_binom_cdf_bits(tokens, q):
    for hi in (tokens, min(tokens, 40)):  # up to n (cdf 1) and below it
        xs = list(range(0, hi + 1))
        assert binom_cdf(xs, tokens, q).tobytes() == binom.cdf(xs, tokens, q).tobytes()
