"""``workloads.ops_blocks._binom_cdf`` gives ``scipy.stats.binom.cdf``'s values bit for bit (the
expected busiest-expert load of every MoE step reads them; it avoids importing scipy.stats)."""

import numpy as np
import pytest
from scipy.stats import binom

from workloads.ops_blocks import _binom_cdf, expected_max_expert_load


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, 4096, 12345, 262144])
@pytest.mark.parametrize("q", [0.0, 1.0, 8 / 256, 9 / 288, 8 / 257, 0.5, 1 / 3, 0.999, 1e-6])
def test_binom_cdf_is_scipy_stats(n, q):
    hi = n if n < 5000 else min(n, int(n * q + 12 * (n * q * (1 - q)) ** 0.5 + 10))
    assert np.array_equal(_binom_cdf(hi, n, q), binom.cdf(list(range(hi + 1)), n, q))


def test_expected_max_expert_load_as_before():
    """The formula on scipy.stats directly (the code before ``_binom_cdf``)."""
    for tokens, experts, k, considered in [(1, 256, 8, 32), (512, 256, 8, 8), (65536, 256, 8, 1), (4000, 64, 6, 64)]:
        q = k / experts
        mean, sd = tokens * q, (tokens * q * (1 - q)) ** 0.5
        hi = int(min(tokens, np.ceil(mean + 12 * sd + 10)))
        cdf = binom.cdf(list(range(hi + 1)), tokens, q)
        want = float(sum(1.0 - cdf[x - 1] ** considered for x in range(1, hi + 1)))
        assert expected_max_expert_load(tokens, experts, k, considered) == want
