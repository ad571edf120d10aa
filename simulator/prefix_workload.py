"""Prefix identity of a run's requests: block chains, multi-turn sessions and shared prefixes.

A prefix cache needs to know which blocks of two prompts hold the same tokens. Requests carry a
*chain* of block ids, one per ``block_tokens`` tokens: equal ids at equal positions mean equal
content given everything before (a chain hash, as vLLM's block hashes and Mooncake's
``hash_ids`` are). ``BlockChains`` stores them without materialising every id: request r's
block j is ``head_base[r] + j`` for ``j < head_blocks[r]`` (a shared head: a system prompt or
a shared prefix) and ``tail_base[r] + j`` after it (its own tokens, or its session's), unless
explicit ids are given (a Mooncake trace).

Generators (drawn from the run's seeded streams, see ``simulator.workload``):

* ``sessions``: multi-turn conversations. Session s draws its turn count, a system prompt
  (uniformly among ``system_prompts``), and per turn k a user message u_k (``prompt_tokens``)
  and an answer o_k (``output_tokens``). Turn k's prompt is ``sys + sum_{j<k} (u_j + o_j) + u_k``
  and its chain runs over prompt + answer (the next turn's prompt holds both); a session stops
  before a turn whose prompt + answer exceeds ``max_context_tokens`` (its first turn always
  runs). Turns after the first arrive ``think_time_s`` (exponential) after the previous answer
  finishes: the engine releases them (``WorkloadArrays.next_turn`` / ``think_s``).
* ``shared_prefix``: request r opens with ``floor(reuse_ratio x prompt_r)`` tokens of prefix
  ``g_r`` (uniform among ``prefixes``); its chain's head is that prefix's blocks.
* no identity (plain synthetic workloads, Azure/BurstGPT traces): every request's blocks are
  its own (``unique_chains``), so only a recomputed request finds its own blocks again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workloads.traces import BlockHashes

__all__ = ["BlockChains", "SessionArrays", "unique_chains", "shared_prefix_chains", "draw_sessions"]


@dataclass(frozen=True)
class BlockChains:
    """Block ids of each request's tokens, ``block_tokens`` tokens per block (see module doc)."""

    block_tokens: int
    blocks: np.ndarray  # (R,) blocks with an id: prompt (+ answer for sessions), full blocks only
    head_base: np.ndarray | None = None
    head_blocks: np.ndarray | None = None
    tail_base: np.ndarray | None = None
    explicit: BlockHashes | None = None

    def ids(self, r: int, n: int) -> list[int]:
        """The first ``n`` block ids of request r (``n <= blocks[r]``)."""
        if self.explicit is not None:
            off = int(self.explicit.offsets[r])
            return self.explicit.ids[off:off + n].tolist()
        h = min(int(self.head_blocks[r]), n)
        hb, tb = int(self.head_base[r]), int(self.tail_base[r])
        return list(range(hb, hb + h)) + list(range(tb + h, tb + n))

    @classmethod
    def from_hashes(cls, hashes: BlockHashes) -> "BlockChains":
        """Chains of a trace's ``hash_ids`` (every listed block: the last may be partial)."""
        return cls(hashes.block_tokens, np.diff(hashes.offsets).astype(np.int64), explicit=hashes)


def unique_chains(tokens: np.ndarray, block_tokens: int) -> BlockChains:
    """Chains with no block in common between requests (``tokens[r] // block_tokens`` each)."""
    blocks = np.asarray(tokens, dtype=np.int64) // block_tokens
    zeros = np.zeros_like(blocks)
    return BlockChains(block_tokens, blocks, zeros, zeros, _bases(blocks, 0))


def _bases(blocks: np.ndarray, start: int) -> np.ndarray:
    """Disjoint id ranges ``[base_r, base_r + blocks_r)`` from ``start`` on."""
    return start + np.concatenate(([0], np.cumsum(blocks)[:-1])).astype(np.int64) if blocks.size else blocks


def shared_prefix_chains(prompt: np.ndarray, group: np.ndarray, reuse_ratio: float, groups: int,
                         block_tokens: int) -> BlockChains:
    """Chains of prompts opening with ``floor(reuse_ratio x prompt)`` tokens of prefix ``group``."""
    prompt = np.asarray(prompt, dtype=np.int64)
    blocks = prompt // block_tokens
    head = np.floor(prompt * reuse_ratio).astype(np.int64) // block_tokens
    longest = int(blocks.max()) if blocks.size else 0
    head_base = group.astype(np.int64) * max(longest, 1)  # prefix g: ids [g * longest, g * longest + longest)
    return BlockChains(block_tokens, blocks, head_base, head, _bases(blocks, groups * max(longest, 1)))


@dataclass(frozen=True)
class SessionArrays:
    """Requests of multi-turn sessions, session-major (a session's turns are consecutive ids)."""

    start_s: np.ndarray  # (R,) arrival of first turns; NaN for later turns (released by the engine)
    prompt: np.ndarray  # (R,) the whole prompt (context + new user message)
    output: np.ndarray  # (R,) answer tokens
    next_turn: np.ndarray  # (R,) id of the session's next turn, -1 at its last
    think_s: np.ndarray  # (R,) gap from the previous answer to this turn (0 for first turns)
    chains: BlockChains


def draw_turns(turns, size: int, rng: np.random.Generator) -> np.ndarray:
    """Turns per session: fixed, or geometric on {1, 2, ...} with the given mean (capped)."""
    if turns.kind == "fixed":
        return np.full(size, turns.turns, dtype=np.int64)
    return np.minimum(rng.geometric(1.0 / turns.mean, size=size), turns.max_turns).astype(np.int64)


def draw_sessions(spec, starts: np.ndarray, turns: np.ndarray, user: np.ndarray, answer: np.ndarray,
                  system: np.ndarray, think: np.ndarray, block_tokens: int) -> SessionArrays:
    """Lay out sessions: ``starts`` (S,), ``turns`` (S,), per-turn ``user`` / ``answer`` / ``think``
    (sum(turns),), ``system`` (S,) the system prompt of each session."""
    sys_tokens = int(spec.system_prompt_tokens)
    sys_blocks = sys_tokens // block_tokens
    limit = int(spec.max_context_tokens)
    rows_prompt, rows_out, rows_sess, rows_first, rows_think = [], [], [], [], []
    pos = 0
    for s, t in enumerate(turns.tolist()):
        context = sys_tokens
        for k in range(t):
            p = context + int(user[pos + k])
            o = int(answer[pos + k])
            if k and p + o > limit:
                break
            rows_prompt.append(p)
            rows_out.append(o)
            rows_sess.append(s)
            rows_first.append(k == 0)
            rows_think.append(0.0 if k == 0 else float(think[pos + k]))
            context = p + o
        pos += t
    prompt = np.asarray(rows_prompt, dtype=np.int64)
    output = np.asarray(rows_out, dtype=np.int64)
    sess = np.asarray(rows_sess, dtype=np.int64)
    first = np.asarray(rows_first, dtype=bool)
    r = prompt.size
    nxt = np.full(r, -1, dtype=np.int64)
    if r > 1:
        same = sess[1:] == sess[:-1]
        nxt[:-1][same] = np.arange(1, r)[same]
    start = np.full(r, np.nan)
    start[first] = starts[sess[first]]
    think_r = np.asarray(rows_think, dtype=float)
    blocks = (prompt + output) // block_tokens
    longest = int(blocks.max()) + 1 if r else 1
    n_sys = int(system.max()) + 1 if system.size else 1
    head_base = system.astype(np.int64)[sess] * max(sys_blocks, 1)
    tail_base = n_sys * max(sys_blocks, 1) + sess * longest
    chains = BlockChains(block_tokens, blocks, head_base, np.full(r, sys_blocks, dtype=np.int64), tail_base)
    return SessionArrays(start, prompt, output, nxt, think_r, chains)
