"""Causal attention's (query, key) pair counts: the closed form every attention cost uses.

Home of ``attention_pairs`` and ``causal_pairs_sum`` (re-exported by ``workloads.accounting``);
kept apart from the model catalog so the profile's lookups (``calibration.chunk_lookup``) can
use them without importing every model's schema. A sequence of ``S`` new tokens over ``C``
cached ones has ``S*C + S*(S+1)/2`` causal pairs (workloads/README.md).
"""

from __future__ import annotations

from itertools import groupby
from typing import Iterable, Sequence


def attention_pairs(new_tokens: float, context_tokens: float = 0, causal: bool = True) -> float:
    """(query, key) pairs for one sequence of ``new_tokens`` queries after ``context_tokens``
    cached tokens. Causal: ``S*C + S*(S+1)/2``; non-causal: ``S*(C+S)``."""
    s, c = new_tokens, context_tokens
    return s * c + (s * (s + 1) / 2 if causal else s * s)


def causal_pairs_sum(new_tokens: Sequence[int], context_tokens: Sequence[int]) -> float:
    """``sum(attention_pairs(n, c) for n, c in zip(new_tokens, context_tokens))``, the same float.

    The terms are whole numbers, so while their total stays below 2**53 every partial float sum
    is exact and the float total equals the integer one: that is taken once per run of equal
    sequences (one multiplication for a uniform batch). Otherwise (non-int or negative lengths,
    lengths that differ in number, a larger total) the float loop itself."""
    n = len(new_tokens)
    if n and n == len(context_tokens):
        if new_tokens.count(new_tokens[0]) == n and context_tokens.count(context_tokens[0]) == n:
            runs: Iterable = (((new_tokens[0], context_tokens[0]), n),)
        else:
            runs = ((pair, len(list(g))) for pair, g in groupby(zip(new_tokens, context_tokens)))
        total = 0
        for (s, c), k in runs:
            if type(s) is not int or type(c) is not int or s < 0 or c < 0:
                break
            total += k * (s * c + s * (s + 1) // 2)
        else:
            if total < 2**53:
                return float(total)
    return sum(attention_pairs(s, c, True) for s, c in zip(new_tokens, context_tokens))
