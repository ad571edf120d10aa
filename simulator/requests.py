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


class RunState:
    """All mutable request/stream state of one simulation (owned by the run, no globals)."""

    def __init__(self, wl: WorkloadArrays):
        r, n = wl.num_requests, wl.samples
        self.num_requests, self.samples = r, n
        # ---- requests
        self.arrival_s = wl.arrival_s.astype(float)
        self.prompt = wl.prompt_tokens.astype(np.int64)
        self.cached = wl.cached_tokens.astype(np.int64)
        self.block_hashes = wl.block_hashes  # prompt block hashes per request (Mooncake traces) or None
        self.first_token_s = np.full(r, NAN)
        self.finish_s = np.full(r, NAN)
        self.schedule_s = np.full(r, NAN)  # first admission to a prefill batch
        self.transfer_s = np.zeros(r)  # time spent in KV transfer (disaggregated)
        self.prefill_inst = np.full(r, -1, dtype=np.int64)
        self.decode_inst = np.full(r, -1, dtype=np.int64)
        self.preemptions = np.zeros(r, dtype=np.int64)
        self.prefill_target = self.prompt - self.cached  # tokens to compute in the (next) prefill
        self.prefilled = np.zeros(r, dtype=np.int64)
        self.prompt_blocks = np.zeros(r, dtype=np.int64)  # blocks held on the current instance
        # KV blocks of each prompt (an array of C ints: indexing gives a Python int, as a list
        # would, at 8 bytes a request instead of ~36)
        self.prompt_blocks_need = array("q", ((self.prompt + BLOCK_TOKENS - 1) // BLOCK_TOKENS).tobytes())
        self.src_blocks = np.zeros(r, dtype=np.int64)  # blocks still held on the prefill side in transfer
        self.streams_left = np.full(r, n, dtype=np.int64)
        self.cancelled = np.zeros(r, dtype=np.int64)
        # ---- streams
        s = r * n
        self.s_req = np.repeat(np.arange(r, dtype=np.int64), n)
        self.s_target = wl.output_tokens.reshape(-1).astype(np.int64)
        # context before generated tokens (never written: one sample shares the prompt array)
        self.s_base = self.prompt if n == 1 else np.repeat(self.prompt, n)
        self.s_gen = np.zeros(s, dtype=np.int64)
        self.s_blocks = np.zeros(s, dtype=np.int64)
        self.s_last_emit_s = np.zeros(s)
        self.s_done = np.zeros(s, dtype=bool)

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
