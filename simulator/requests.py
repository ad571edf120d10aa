"""Per-request and per-stream state of one run, as numpy arrays (struct of arrays).

A request has ``n`` decode *streams* (test-time-scaling samples or beams; n = 1 normally)
that share its prompt's KV. Request r owns streams ``r * n .. r * n + n - 1``. The engine
updates whole batches with fancy indexing instead of touching Python objects per token.
"""

from __future__ import annotations

from array import array

import numpy as np

from simulator.kv import BLOCK_TOKENS
from simulator.workload import WorkloadArrays

NAN = float("nan")


#: token and block counts are held as int32 when every value a run can store in them is below this
#: (``token_dtype``): half of int32's range, so that the sum of two such values (``gen + emitted``,
#: ``cached + prefilled``) cannot overflow either; sums over many requests or streams are taken with
#: ``np.add.reduce``, which adds int32 in int64
_INT32_TOKENS = 1 << 30


def token_dtype(max_prompt_tokens: int, max_output_tokens: int, samples: int):
    """The dtype of a run's per-request and per-stream token and KV-block counts: int32 when the
    largest value any of them can hold fits ``_INT32_TOKENS``, else int64 (same values either way).
    The largest is a request's prefill after recomputation (its prompt and every sample's generated
    tokens) or the KV it holds (blocks <= tokens); a step reserves at most ``MAX_SPECULATIVE_TOKENS``
    more per stream, counted here as a KV block's worth."""
    worst = int(max_prompt_tokens) + int(samples) * (int(max_output_tokens) + 2 * BLOCK_TOKENS)
    return np.int32 if worst < _INT32_TOKENS else np.int64


class _SameIndex:
    """``RunState.s_req`` with one sample per request: stream s is request s (an index, or an array
    of them, reads back as itself), with no array of a million request ids."""

    __slots__ = ()

    def __getitem__(self, s):
        return s


class ScalarViews:
    """Memoryviews of a ``RunState``'s numpy arrays, under the same names, for the per-request paths
    that read and write one element at a time: indexing a memoryview gives and takes Python ints,
    floats and bools (the values ``ndarray.item`` gives) at about a third of ``.item``'s cost and
    half of ``ndarray.__setitem__``'s. They share the arrays' memory: a write through either is
    seen by both. Only arrays of the run's own (C-contiguous, one-dimensional) are viewed."""

    def __init__(self, st: "RunState"):
        for name, a in vars(st).items():
            if isinstance(a, np.ndarray) and a.ndim == 1 and a.flags.c_contiguous:
                setattr(self, name, memoryview(a))


class RunState:
    """All mutable request/stream state of one simulation (owned by the run, no globals).

    Token and block counts are ``token_dtype`` (int32 unless a request could hold 2**30 tokens),
    instances and per-request sample counts int32, preemptions int64; the requests table converts
    them to int64 (``simulator.engine``). Only disaggregated runs (``transfers``) keep the KV
    transfer columns (``src_blocks``, ``transfer_s``)."""

    def __init__(self, wl: WorkloadArrays, transfers: bool = True):
        r, n = wl.num_requests, wl.samples
        self.num_requests, self.samples = r, n
        tok = token_dtype(np.maximum.reduce(wl.prompt_tokens) if r else 0,
                          np.maximum.reduce(wl.output_tokens, axis=None) if r else 0, n)
        self.tokens_dtype = tok
        # ---- requests
        self.arrival_s = wl.arrival_s.astype(float)
        self.prompt = wl.prompt_tokens.astype(tok)
        self.cached = wl.cached_tokens.astype(tok)
        self.block_hashes = wl.block_hashes  # prompt block hashes per request (Mooncake traces) or None
        self.first_token_s = np.full(r, NAN)
        self.finish_s = np.full(r, NAN)
        self.schedule_s = np.full(r, NAN)  # first admission to a prefill batch
        self.transfer_s = np.zeros(r) if transfers else None  # time spent in KV transfer (disaggregated)
        self.prefill_inst = np.full(r, -1, dtype=np.int32)
        self.decode_inst = np.full(r, -1, dtype=np.int32)
        self.preemptions = np.zeros(r, dtype=np.int64)
        self.prefill_target = self.prompt - self.cached  # tokens to compute in the (next) prefill
        self.prefilled = np.zeros(r, dtype=tok)
        self.prompt_blocks = np.zeros(r, dtype=tok)  # blocks held on the current instance
        # KV blocks of each prompt (an array of C ints: indexing gives a Python int, as a list
        # would, at 4 or 8 bytes a request instead of ~36)
        self.prompt_blocks_need = array("i" if tok is np.int32 else "q",
                                        ((self.prompt + BLOCK_TOKENS - 1) // BLOCK_TOKENS).tobytes())
        # blocks still held on the prefill side in transfer
        self.src_blocks = np.zeros(r, dtype=tok) if transfers else None
        self.streams_left = np.full(r, n, dtype=np.int32)
        self.cancelled = np.zeros(r, dtype=np.int32)
        # ---- streams
        s = r * n
        self.s_req = _SameIndex() if n == 1 else np.repeat(np.arange(r, dtype=np.int64), n)
        self.s_target = wl.output_tokens.reshape(-1).astype(tok)
        # context before generated tokens (never written: one sample shares the prompt array)
        self.s_base = self.prompt if n == 1 else np.repeat(self.prompt, n)
        self.s_gen = np.zeros(s, dtype=tok)
        self.s_blocks = np.zeros(s, dtype=tok)
        self.s_last_emit_s = np.zeros(s)
        self.s_done = np.zeros(s, dtype=bool)
        self.v = ScalarViews(self)

    def release_views(self) -> None:
        """Let go of the scalar views (``v``): they keep the arrays they view alive."""
        self.v = None

    def streams(self, r: int) -> range:
        return range(r * self.samples, (r + 1) * self.samples)

    def live_streams(self, r: int) -> list[int]:
        if self.samples == 1:
            return [] if self.s_done[r] else [r]
        return [s for s in self.streams(r) if not self.s_done[s]]

    def live_count(self, r: int) -> int:
        if self.samples == 1:
            return 0 if self.s_done[r] else 1
        return int(self.samples - self.s_done[r * self.samples:(r + 1) * self.samples].sum())
