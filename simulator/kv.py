"""KV-cache memory of one instance, in fixed-size blocks.

Capacity (``instance_kv_capacity_tokens``): ``workloads.deployment_rules.pool_memory`` gives
the tokens of KV one *device* holds after its weights (its ``kv_bytes_per_token`` already
accounts for attention TP: MLA's latent is replicated over TP, GQA heads are split, and
for PP each stage holds its layers' share). Sequences are spread over the attention-DP
ranks and each rank (tp x sp devices) keeps its own sequences' KV; SP splits a sequence's
tokens over sp devices. So one instance holds

    capacity_tokens = per-device capacity x attention dp x sp.

The engine treats this as one pool per instance (it does not model DP-rank imbalance of
KV); the step cost model does charge the busiest DP rank for compute.

Blocks are ``BLOCK_TOKENS`` tokens (vLLM/SGLang page sizes are 16-64; 64 matches the
FlashMLA page). A request holds its prompt's blocks once; each decode stream (sample) of
it holds private blocks for its generated tokens (copy-on-write of the last shared prompt
block is ignored).
"""

from __future__ import annotations

import numpy as np

from workloads.deployment_rules import pool_memory

#: tokens per KV block: the paged-KV block of FlashMLA (block 64, its README) and SGLang/DeepSeek serving
BLOCK_TOKENS = 64


#: BLOCK_TOKENS = 2**BLOCK_SHIFT: a right shift is the floor division of (non-negative) token counts
BLOCK_SHIFT = BLOCK_TOKENS.bit_length() - 1
assert 1 << BLOCK_SHIFT == BLOCK_TOKENS


def stream_blocks(gen: int) -> int:
    """Blocks a one-sample stream with ``gen`` generated tokens holds: ``ceil(max(gen, 1) / BLOCK_TOKENS)``
    (a stream holds a block from its first token on)."""
    return 1 if gen <= BLOCK_TOKENS else (gen + BLOCK_TOKENS - 1) >> BLOCK_SHIFT


def blocks_after_step(gen, tokens: int, target, held):
    """KV blocks each decode stream holds after a step that generates ``tokens`` more (capped at its
    ``target``): ``max(held, ceil(min(gen + tokens, target) / BLOCK_TOKENS))`` per stream, a new
    integer array (the inputs are untouched; the counts are >= 0, so the shift is the floor division)."""
    blocks = gen + tokens
    np.minimum(blocks, target, out=blocks)
    blocks += BLOCK_TOKENS - 1
    blocks >>= BLOCK_SHIFT
    np.maximum(blocks, held, out=blocks)
    return blocks


def blocks_for(tokens: int) -> int:
    """Blocks needed for ``tokens`` tokens (ceil)."""
    return -(-int(tokens) // BLOCK_TOKENS)


def instance_kv_capacity_tokens(model, pool, device, weight_dtype: str, kv_dtype: str) -> float:
    """Tokens of KV one instance of ``pool`` holds (see module docstring)."""
    mem = pool_memory(model, pool, device, weight_dtype, kv_dtype)
    return max(mem.kv_capacity_tokens, 0.0) * pool.layout.dp * pool.layout.sp


class KVBlocks:
    """Block accounting of one instance: reserve before use, never above capacity.

    ``used_blocks`` are in use by requests (shared prefix blocks counted once). With a prefix
    cache (``simulator.prefix_cache.BlockCache``, set as ``cache``), ``idle_blocks`` hold
    cached prefixes no request uses: they count as free for ``fits`` and ``free_blocks`` and are
    evicted (LRU) by ``alloc`` when used + idle would exceed capacity; ``peak_total_blocks`` is
    the most used + idle ever held (never above capacity)."""

    __slots__ = ("capacity_blocks", "used_blocks", "peak_blocks", "idle_blocks", "peak_total_blocks", "cache")

    def __init__(self, capacity_tokens: float):
        self.capacity_blocks = int(capacity_tokens // BLOCK_TOKENS)
        self.used_blocks = 0
        self.peak_blocks = 0
        self.idle_blocks = 0
        self.peak_total_blocks = 0
        self.cache = None

    @property
    def free_blocks(self) -> int:
        return self.capacity_blocks - self.used_blocks

    def fits(self, blocks: int) -> bool:
        return self.used_blocks + blocks <= self.capacity_blocks

    def alloc(self, blocks: int) -> None:
        used = self.used_blocks + int(blocks)
        if used > self.capacity_blocks:
            raise RuntimeError(f"KV over-allocation: {used} > {self.capacity_blocks} blocks")
        self.used_blocks = used
        if used > self.peak_blocks:
            self.peak_blocks = used
        if self.cache is not None:  # make room: evict idle cached prefixes (LRU)
            self.cache.fit()

    def free(self, blocks: int) -> None:
        self.used_blocks -= int(blocks)
        if self.used_blocks < 0:
            raise RuntimeError("KV freed more blocks than were allocated")

    @property
    def used_fraction(self) -> float:
        return self.used_blocks / self.capacity_blocks if self.capacity_blocks else 0.0
