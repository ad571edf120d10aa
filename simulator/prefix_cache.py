"""Prefix caches: blocks of computed KV kept for reuse, per instance and in a shared pool.

``BlockCache`` is one instance's cache *inside its KV memory* (``simulator.kv.KVBlocks``), kept
as vLLM's automatic prefix caching and SGLang's RadixAttention keep theirs:

* an entry is one chain block (``simulator.prefix_workload.BlockChains``: ``block_tokens``
  tokens, ``entry_blocks`` KV blocks) with a reference count: the running requests using it;
* a lookup walks a prompt's chain from its first block and stops at the first block not cached
  (a chain id names a block given everything before it, so the walk is a radix-tree descent);
* a request that hits shares the entries (``acquire``: no new memory for them); the blocks its
  prefill computes become entries when the prefill ends (``insert_held``; a block another
  request computed meanwhile stays private, as vLLM keeps a duplicate uncached);
* when a request leaves, its entries lose a reference; at zero they stay in KV memory, *idle*,
  in LRU order, released tail first so a chain's last block is evicted before its first
  (vLLM frees a request's blocks in reverse; SGLang evicts leaves first);
* idle entries count against KV memory: ``KVBlocks.alloc`` evicts the least recently used ones
  whenever active + idle would exceed capacity, so admission and decode growth never wait for
  them; ``max_cached_tokens`` caps the idle ones on top.

So ``active + cached <= capacity`` always holds (``KVBlocks.peak_total_blocks``), and a KV
block is free for admission whether it is empty or idle cache.

``SharedPool`` is a cluster-wide store (CloudMatrix-Infer's EMS, Mooncake's store) written
through with every block a prefill computes (and every answer block of a session, from the
instance that decoded it), LRU over ``capacity_tokens``. A lookup continues there where the
local walk stopped; those blocks are *fetched*: their KV crosses the fabric into the instance's
port (``hardware.kv_transfer.kv_port_bytes_per_s``, or the pool's ``bandwidth_gb_per_s`` per
device; ``fetch_s_per_token``) instead of being prefilled, charged to the step that admits the
request (as a swap-in is). A fetch does not share the port with KV hand-offs in flight.

``InstanceCache`` binds both to one server and the run's request arrays: the engine calls
``admit`` (lookup, references, hit tokens, fetch time), ``prefill_done``, ``release`` and
``finish``; routers call ``local_hit_blocks``. Hit rates count each request's first admission
(prompt tokens served from cache / prompt tokens); a recomputed request's lookups are logged
apart (``first = False``).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from hardware.kv_transfer import kv_port_bytes_per_s
from simulator.kv import BLOCK_TOKENS

__all__ = ["BlockCache", "SharedPool", "InstanceCache", "PrefixCacheRun", "CACHE_LOG_COLUMNS"]

#: one row per prefix lookup at admission (``SimResult.cache``)
CACHE_LOG_COLUMNS = ("time_s", "instance", "pool", "request", "first", "prompt_tokens", "hit_tokens",
                     "shared_hit_tokens", "fetch_s", "cached_blocks", "used_blocks", "capacity_blocks")


class BlockCache:
    """Ref-counted chain blocks of one instance in its KV memory, idle ones in LRU order."""

    __slots__ = ("kv", "entry_blocks", "ref", "idle", "max_idle_entries", "inserted", "evicted", "peak_entries")

    def __init__(self, kv, entry_blocks: int, max_idle_blocks: int | None):
        self.kv = kv
        self.entry_blocks = int(entry_blocks)
        self.ref: dict[int, int] = {}  # every cached entry -> requests using it
        self.idle: OrderedDict[int, None] = OrderedDict()  # entries with no user, least recently used first
        self.max_idle_entries = None if max_idle_blocks is None else max_idle_blocks // self.entry_blocks
        self.inserted = self.evicted = self.peak_entries = 0
        kv.cache = self

    @property
    def cached_blocks(self) -> int:
        """KV blocks holding cached entries (in use or idle)."""
        return len(self.ref) * self.entry_blocks

    def match(self, ids: list[int]) -> tuple[int, int]:
        """Leading entries of ``ids`` cached here, and the KV blocks of those already in use."""
        ref, k, busy = self.ref, 0, 0
        for h in ids:
            c = ref.get(h)
            if c is None:
                break
            k += 1
            if c:
                busy += 1
        return k, busy * self.entry_blocks

    def acquire(self, ids: list[int]) -> None:
        """A request uses the cached entries ``ids``: idle ones become active KV."""
        ref, idle, kv, eb = self.ref, self.idle, self.kv, self.entry_blocks
        for h in ids:
            c = ref[h]
            if c == 0:
                del idle[h]
                kv.idle_blocks -= eb
                kv.used_blocks += eb
            ref[h] = c + 1
        if kv.used_blocks > kv.peak_blocks:
            kv.peak_blocks = kv.used_blocks

    def insert_held(self, ids: list[int]) -> list[int]:
        """Blocks a request computed (in its private KV) become entries it holds; returns those
        inserted (ids already cached stay private to the request)."""
        ref, out = self.ref, []
        for h in ids:
            if h not in ref:
                ref[h] = 1
                out.append(h)
        self._grew(len(out))
        return out

    def insert_idle(self, ids: list[int]) -> int:
        """Blocks of a request that just left (their KV already freed) stay as idle entries, tail
        first; returns how many were inserted."""
        ref, idle, n = self.ref, self.idle, 0
        for h in reversed(ids):
            if h not in ref:
                ref[h] = 0
                idle[h] = None
                n += 1
        self.kv.idle_blocks += n * self.entry_blocks
        self._grew(n)
        self.fit()
        return n

    def release(self, held: list[int]) -> None:
        """A request leaves: its entries lose a reference, tail first; unused ones turn idle."""
        ref, idle, kv, eb = self.ref, self.idle, self.kv, self.entry_blocks
        for h in reversed(held):
            c = ref[h] - 1
            ref[h] = c
            if c == 0:
                idle[h] = None
                kv.used_blocks -= eb
                kv.idle_blocks += eb
        self.fit()

    def fit(self) -> None:
        """Evict least recently used idle entries until active + idle fit the KV capacity and the
        idle ones fit ``max_cached_tokens``."""
        kv, idle, ref, eb = self.kv, self.idle, self.ref, self.entry_blocks
        over = kv.used_blocks + kv.idle_blocks - kv.capacity_blocks
        n = -(-over // eb) if over > 0 else 0
        if self.max_idle_entries is not None:
            n = max(n, len(idle) - self.max_idle_entries)
        n = min(n, len(idle))
        for _ in range(n):
            h, _ = idle.popitem(last=False)
            del ref[h]
        if n:
            kv.idle_blocks -= n * eb
            self.evicted += n
        total = kv.used_blocks + kv.idle_blocks
        if total > kv.peak_total_blocks:
            kv.peak_total_blocks = total

    def _grew(self, n: int) -> None:
        self.inserted += n
        if len(self.ref) > self.peak_entries:
            self.peak_entries = len(self.ref)


class SharedPool:
    """A cluster-wide LRU store of chain blocks (no reference counts: it holds copies)."""

    __slots__ = ("capacity_entries", "store", "evicted", "peak_entries")

    def __init__(self, capacity_entries: int):
        self.capacity_entries = int(capacity_entries)
        self.store: OrderedDict[int, None] = OrderedDict()
        self.evicted = self.peak_entries = 0

    def put(self, ids: list[int]) -> None:
        """Write blocks (tail first, so a chain's first block is the most recently used)."""
        store = self.store
        for h in reversed(ids):
            if h in store:
                store.move_to_end(h)
            else:
                store[h] = None
        if len(store) > self.peak_entries:
            self.peak_entries = len(store)
        while len(store) > self.capacity_entries:
            store.popitem(last=False)
            self.evicted += 1

    def match(self, ids: list[int], touch: bool = True) -> int:
        """Leading blocks of ``ids`` held here (``touch``: marked as just used)."""
        store, k = self.store, 0
        for h in ids:
            if h not in store:
                break
            k += 1
        if touch:
            for h in reversed(ids[:k]):
                store.move_to_end(h)
        return k


class InstanceCache:
    """The prefix caches as one server sees them: its ``BlockCache`` (None on a decode instance
    of a disaggregated deployment, which keeps no prefixes), the ``SharedPool`` (or None), and
    the run's request arrays and chains."""

    __slots__ = ("st", "chains", "block_tokens", "entry_blocks", "covers_output", "local", "shared",
                 "fetch_s_per_token", "held", "index", "pool", "log", "first_hit", "stats", "load_weight")

    def __init__(self, st, chains, local: BlockCache | None, shared: SharedPool | None, fetch_s_per_token: float,
                 index: int, pool: str, log: list, first_hit, covers_output: bool):
        self.st, self.chains, self.local, self.shared = st, chains, local, shared
        self.block_tokens = chains.block_tokens
        self.entry_blocks = local.entry_blocks if local is not None else 0
        self.covers_output = covers_output
        self.fetch_s_per_token = fetch_s_per_token
        self.held: dict[int, list[int]] = {}
        self.index, self.pool, self.log, self.first_hit = index, pool, log, first_hit
        self.load_weight = 1.0  # kv_aware's weight of blocks in use (PrefixCacheRun.attach sets the config's)
        # first admissions: lookups, prompt tokens, tokens hit (local + shared), shared hits, fetch seconds
        self.stats = [0, 0, 0, 0, 0.0]

    def _prompt_ids(self, r: int, lookup: bool) -> list[int]:
        """Chain ids of r's full prompt blocks; for a lookup at most ``(prompt - 1) // block_tokens``
        of them, so at least one token is prefilled (vLLM recomputes the last one too)."""
        p = int(self.st.prompt[r])
        n = (p - 1) // self.block_tokens if lookup else p // self.block_tokens
        return self.chains.ids(r, min(int(self.chains.blocks[r]), n))

    def local_hit_blocks(self, r: int) -> int:
        """KV blocks of r's prompt cached here (routers)."""
        if self.local is None:
            return 0
        return self.local.match(self._prompt_ids(r, True))[0] * self.entry_blocks

    def peek_hit_tokens(self, r: int) -> int:
        """Prompt tokens of r a lookup now would find (local, then shared), without touching anything."""
        ids = self._prompt_ids(r, True)
        k = self.local.match(ids)[0] if self.local is not None else 0
        m = self.shared.match(ids[k:], touch=False) if self.shared is not None else 0
        return (k + m) * self.block_tokens

    def busy_hit_blocks(self, r: int) -> int:
        """KV blocks of r's cached prefix already in use here: admitting r needs no new memory for them."""
        if self.local is None:
            return 0
        return self.local.match(self._prompt_ids(r, True))[1]

    def admit(self, r: int, now: float, first: bool) -> tuple[int, float]:
        """Look r's prompt up at admission: reference the local hits, set its cached tokens and
        what is left to prefill; returns (KV blocks it now shares, seconds to fetch shared-pool hits)."""
        st, bt = self.st, self.block_tokens
        ids = self._prompt_ids(r, True)
        k = self.local.match(ids)[0] if self.local is not None else 0
        m = self.shared.match(ids[k:]) if self.shared is not None else 0
        if k:
            self.local.acquire(ids[:k])
        self.held[r] = ids[:k]
        hit = (k + m) * bt
        st.prefill_target[r] += int(st.cached[r]) - hit
        st.cached[r] = hit
        fetch_s = m * bt * self.fetch_s_per_token
        if first:
            s = self.stats
            s[0] += 1
            s[1] += int(st.prompt[r])
            s[2] += hit
            s[3] += m * bt
            s[4] += fetch_s
            self.first_hit[r] = hit
        kv = self.local.kv if self.local is not None else None
        self.log.append((now, self.index, self.pool, r, first, int(st.prompt[r]), hit, m * bt, fetch_s,
                         self.local.cached_blocks if kv is not None else 0, kv.used_blocks if kv is not None else 0,
                         kv.capacity_blocks if kv is not None else 0))
        return k * self.entry_blocks, fetch_s

    def prefill_done(self, r: int) -> None:
        """r's prompt is computed: its full blocks become cached entries it holds (their KV moves
        from its private blocks to the cache) and are written to the shared pool."""
        ids = self._prompt_ids(r, False)
        if self.local is not None:
            held = self.held.setdefault(r, [])
            new = self.local.insert_held(ids[len(held):])
            held.extend(new)
            self.st.prompt_blocks[r] -= len(new) * self.entry_blocks
        if self.shared is not None:
            self.shared.put(ids)

    def release(self, r: int) -> None:
        """r leaves this instance (preempted, or its KV handed to a decode instance)."""
        held = self.held.pop(r, None)
        if held:
            self.local.release(held)

    def finish(self, r: int) -> None:
        """r finished here (its private KV already freed): its prompt and, in a session, answer
        blocks stay cached (idle); they go to the shared pool too."""
        st = self.st
        n = int(st.prompt[r]) // self.block_tokens
        if self.covers_output:
            n = (int(st.prompt[r]) + int(st.s_gen[r])) // self.block_tokens
        ids = self.chains.ids(r, min(int(self.chains.blocks[r]), n))
        if self.local is not None:
            self.local.insert_idle(ids)
        self.release(r)
        if self.shared is not None:
            self.shared.put(ids)


class PrefixCacheRun:
    """The prefix caches of one run: builds each server's ``InstanceCache``, keeps the lookup log
    and sums the hit rates (``summary``)."""

    def __init__(self, config, st, chains, covers_output: bool, kv_bytes_per_token: float, cluster):
        self.config, self.st, self.chains, self.covers_output = config, st, chains, covers_output
        self.entry_blocks = chains.block_tokens // BLOCK_TOKENS
        self.kv_bytes_per_token = kv_bytes_per_token
        self.cluster = cluster
        pool = config.shared_pool
        self.shared = SharedPool(pool.capacity_tokens // chains.block_tokens) if pool is not None else None
        self.log: list[tuple] = []
        self.first_hit = np.zeros(st.num_requests, dtype=np.int64)
        self.caches: list[InstanceCache] = []

    def fetch_bytes_per_s(self, pool) -> float:
        """Shared-pool fetch bandwidth of one instance of ``pool``: the pool's ``bandwidth_gb_per_s``
        per device x devices when given, else the instance's KV port (``hardware.kv_transfer``)."""
        sp = self.config.shared_pool
        if sp.bandwidth_gb_per_s:
            return sp.bandwidth_gb_per_s * 1e9 * pool.devices_per_instance
        return kv_port_bytes_per_s(self.cluster, pool.devices_per_instance)

    def attach(self, server, pool, keeps_prefixes: bool) -> InstanceCache:
        """The ``InstanceCache`` of ``server`` (a local cache when ``keeps_prefixes``)."""
        local = None
        if keeps_prefixes:
            cap = self.config.max_cached_tokens
            local = BlockCache(server.kv, self.entry_blocks, None if cap is None else cap // BLOCK_TOKENS)
        fetch = self.kv_bytes_per_token / self.fetch_bytes_per_s(pool) if self.shared is not None else 0.0
        c = InstanceCache(self.st, self.chains, local, self.shared, fetch, server.index, server.pool_name, self.log,
                          self.first_hit, self.covers_output)
        c.load_weight = self.config.kv_aware_load_weight
        self.caches.append(c)
        return c

    def summary(self) -> dict:
        """Hit rates per pool and overall (first admissions), evictions, peaks, the shared pool."""
        pools: dict[str, dict] = {}
        tot = [0, 0, 0, 0, 0.0]
        for c in self.caches:
            p = pools.setdefault(c.pool, {"lookups": 0, "prompt_tokens": 0, "hit_tokens": 0, "shared_hit_tokens": 0,
                                          "fetch_s": 0.0, "inserted_blocks": 0, "evicted_blocks": 0,
                                          "peak_cached_fraction": 0.0, "peak_total_fraction": 0.0})
            for i, key in enumerate(("lookups", "prompt_tokens", "hit_tokens", "shared_hit_tokens", "fetch_s")):
                p[key] += c.stats[i]
                tot[i] += c.stats[i]
            if c.local is not None:
                kv, eb = c.local.kv, c.local.entry_blocks
                p["inserted_blocks"] += c.local.inserted * eb
                p["evicted_blocks"] += c.local.evicted * eb
                if kv.capacity_blocks:
                    p["peak_cached_fraction"] = max(p["peak_cached_fraction"], c.local.peak_entries * eb / kv.capacity_blocks)
                    p["peak_total_fraction"] = max(p["peak_total_fraction"], kv.peak_total_blocks / kv.capacity_blocks)
        for p in pools.values():
            p["hit_rate"] = p["hit_tokens"] / p["prompt_tokens"] if p["prompt_tokens"] else None
        out = {"hit_rate": tot[2] / tot[1] if tot[1] else None, "prompt_tokens": tot[1], "hit_tokens": tot[2],
               "shared_hit_tokens": tot[3], "fetch_s": tot[4], "block_tokens": self.chains.block_tokens,
               "max_cached_tokens": self.config.max_cached_tokens,
               "pools": {k: pools[k] for k in sorted(pools) if pools[k]["lookups"]}}
        if self.shared is not None:
            out["shared_pool"] = {"capacity_tokens": self.config.shared_pool.capacity_tokens,
                                  "peak_tokens": self.shared.peak_entries * self.chains.block_tokens,
                                  "evicted_tokens": self.shared.evicted * self.chains.block_tokens}
        return out
