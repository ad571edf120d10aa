"""FlashMLA's decode tile scheduler replayed in Python, and what unequal cached lengths add.

FlashMLA (``get_mla_metadata``, csrc/smxx/decode/get_decoding_sched_meta) cuts a decode batch's
key blocks (64 keys each, plus a fixed overhead of 5 blocks per request piece) into
``num_sm_parts`` equal payloads, one per group of SMs; a request that straddles two parts is
split, its pieces write partial outputs in fp32 and a combine kernel merges them. A batch of equal
lengths often packs whole requests into parts (128 sequences of 1,024 keys at 128 heads: no split),
a batch of real, unequal lengths does not (~40-60 split requests there), and the table measures
equal lengths. ``benchmarks/flashmla_spread_probe.py`` (2026-12-02, H200): any unequal batch of the
same mean (sorted, shuffled, bimodal, half the spread) takes the same time within ~5%, and the
extra time over the equal batch follows the split requests the scheduler makes (~0.4 us each at
128 heads, ~0.1 us at 16), while the equal batches at the spread's own extremes do not explain it.

``unequal_penalty_s`` charges that for a decode batch read at its mean length: the split requests
of an evenly spread batch (0.25-1.75 of the mean, ``spread_lengths``) minus those of the equal
batch the table holds, times the per-split time fitted from the probe table per head count.
"""

from __future__ import annotations

import math
import random
from functools import lru_cache

BLOCK_N = 64
FIXED_OVERHEAD_BLOCKS = 5
#: the probe's table (``calibration/profiles/<gpu>/``)
SPREAD_TABLE = "mla_decode_flashmla_spread"
#: SMs of an H100 / H200 / H800 SXM (the measured GPUs'; a profile's ``sm_count`` overrides it)
HOPPER_SXM_SMS = 132


def sm_parts(heads_q: int, q_per_seq: int = 1, sm_count: int = HOPPER_SXM_SMS) -> int:
    """FlashMLA's ``num_sm_parts`` for one latent KV head: SMs over the 64-row query tiles."""
    return max(sm_count // math.ceil(q_per_seq * heads_q / 64), 1)


def split_requests(lens: tuple[int, ...], heads_q: int, q_per_seq: int = 1, sm_count: int = HOPPER_SXM_SMS) -> int:
    """Requests the scheduler splits across SM parts for cached lengths ``lens``."""
    parts = sm_parts(heads_q, q_per_seq, sm_count)
    nb = [max(n - 1, 0) // BLOCK_N + 1 for n in lens]
    payload = -(-sum(n + FIXED_OVERHEAD_BLOCKS for n in nb) // parts) + FIXED_OVERHEAD_BLOCKS
    req = blk = pieces = split = 0
    for _ in range(parts):
        rem = payload
        while req < len(nb):
            left = nb[req] - blk
            if rem >= left + FIXED_OVERHEAD_BLOCKS:
                split += pieces > 0
                rem -= left + FIXED_OVERHEAD_BLOCKS
                req, blk, pieces = req + 1, 0, 0
            else:
                if rem > FIXED_OVERHEAD_BLOCKS:
                    blk += rem - FIXED_OVERHEAD_BLOCKS
                    pieces += 1
                break
    return split


def spread_lengths(batch: int, mean: float) -> tuple[int, ...]:
    """``batch`` lengths evenly spaced over 0.25-1.75 of ``mean`` (the unequal batch stood for)."""
    if batch <= 1:
        return (max(round(mean), 1),) * max(batch, 1)
    return tuple(max(round(mean * (0.25 + 1.5 * i / (batch - 1))), 1) for i in range(batch))


def probe_variants(batch: int, mean: int) -> dict[str, list[int]]:
    """The probe's length lists at one (batch, mean) (``benchmarks/flashmla_spread_probe.py``)."""
    even = list(spread_lengths(batch, mean))
    shuffled = even[:]
    random.Random(0).shuffle(shuffled)
    return {"equal": [mean] * batch, "even_sorted": even, "even_desc": even[::-1], "even_shuffled": shuffled,
            "bimodal": [mean // 4] * (batch // 2) + [mean * 7 // 4] * (batch - batch // 2),
            "half_spread": [round(mean * (0.625 + 0.75 * i / (batch - 1))) for i in range(batch)],
            "equal_min": [mean // 4] * batch, "equal_max": [mean * 7 // 4] * batch,
            "one_long": [mean] * (batch - 1) + [mean * 8]}


#: variants of the same mean as the equal batch (the fit's rows); the others change the keys read
SAME_MEAN = ("even_sorted", "even_desc", "even_shuffled", "bimodal", "half_spread")


def fit_per_split_s(rows, sm_count: int = HOPPER_SXM_SMS) -> dict[int, float]:
    """Seconds per split request, per query-head count: least squares through the origin of each
    same-mean variant's extra time over its equal batch against its extra split requests."""
    by = {(int(r["heads_q"]), int(r["batch"]), int(r["mean"]), str(r["variant"])): float(r["seconds"]) for r in rows}
    num: dict[int, float] = {}
    den: dict[int, float] = {}
    for (h, b, c, v), t in by.items():
        t_eq = by.get((h, b, c, "equal"))
        if v not in SAME_MEAN or t_eq is None:
            continue
        lens = probe_variants(b, c)
        ds = split_requests(tuple(lens[v]), h, 1, sm_count) - split_requests(tuple(lens["equal"]), h, 1, sm_count)
        num[h] = num.get(h, 0.0) + (t - t_eq) * ds
        den[h] = den.get(h, 0.0) + ds * ds
    return {h: max(num[h] / den[h], 0.0) for h in num if den[h] > 0}


def per_split_at(fit: dict[int, float], heads_q: int) -> float:
    """The fitted per-split time at ``heads_q``: linear between measured head counts, clamped outside."""
    hs = sorted(fit)
    if not hs:
        return 0.0
    if heads_q <= hs[0]:
        return fit[hs[0]]
    if heads_q >= hs[-1]:
        return fit[hs[-1]]
    lo = max(h for h in hs if h <= heads_q)
    hi = min(h for h in hs if h >= heads_q)
    return fit[lo] if hi == lo else fit[lo] + (fit[hi] - fit[lo]) * (heads_q - lo) / (hi - lo)


@lru_cache(maxsize=4096)
def extra_splits(batch: int, context: int, heads_q: int, q_per_seq: int = 1, sm_count: int = HOPPER_SXM_SMS) -> int:
    """Split requests of the evenly spread batch beyond those of the equal batch (at least 0)."""
    if batch < 2:
        return 0
    spread = split_requests(spread_lengths(batch, context), heads_q, q_per_seq, sm_count)
    equal = split_requests((int(context),) * batch, heads_q, q_per_seq, sm_count)
    return max(spread - equal, 0)
