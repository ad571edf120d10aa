"""Input limits: the largest file, YAML structure and sizes that the config schemas accept.

One home for every bound a user's YAML is checked against before anything runs, so that no
input makes a command run out of memory or time instead of answering with one located line.
Each limit is far above any real deployment (the reasoning is beside each value) and is
documented in ``workloads/README.md`` ("Input limits"); a test keeps that table in step.
"""

from __future__ import annotations

#: Largest config file read (bytes). Real deployment, plan and training files are a few KB;
#: request traces are separate files (``workload.arrival.path``), bounded by MAX_TRACE_BYTES.
MAX_CONFIG_BYTES = 4 * 1024 * 1024

#: Most values (scalars, mappings and lists, keys included) one YAML document may hold,
#: counting every re-use of an alias as a copy of the values it names (billion laughs).
MAX_YAML_NODES = 100_000

#: Deepest nesting of mappings and lists in one YAML document (the schemas need about 5).
MAX_YAML_DEPTH = 64

#: Most devices of a parallel degree, instance, pool or budget: 16x the largest catalog
#: cluster (h800-ft3, 65,536 GPUs).
MAX_DEVICES = 1_048_576

#: Most pipeline stages (the largest catalog model has 126 layers).
MAX_PIPELINE_STAGES = 1024

#: Most redundant expert slots of an instance.
MAX_REDUNDANT_EXPERTS = 65_536

#: Longest prompt, output or training sequence, in tokens (4 Mi; catalog models reach 128 K).
MAX_SEQUENCE_TOKENS = 4_194_304

#: Largest token budget of one serving iteration (prefill chunk x DP ranks): 64 Mi tokens.
MAX_TOKENS_PER_ITERATION = 67_108_864

#: Most sequences of one serving batch (one instance).
MAX_BATCH_SIZE = 1_048_576

#: Most speculative tokens per decode step (MTP depth, draft length).
MAX_SPECULATIVE_TOKENS = 16

#: Most requests one simulation may generate (``num_requests``, or rate x duration).
MAX_REQUESTS = 1_000_000

#: Most samples (parallel sequences) per request.
MAX_SAMPLES_PER_REQUEST = 1024

#: Most sequences one serving simulation may decode: requests x samples per request.
MAX_SIMULATED_SEQUENCES = 2_000_000

#: Longest simulated serving horizon: ``duration_s``, and num_requests / rate_per_s (one year, in
#: seconds; float64 times then keep nanosecond resolution).
MAX_DURATION_S = 31_536_000.0

#: Largest request trace file (bytes) and most data rows it may hold (``workload.arrival.path``).
#: The Azure 2024 one-week traces hold some tens of millions of rows; rows are parsed in chunks
#: into about 40 bytes of arrays each, so 50 M rows take about 2 GB.
MAX_TRACE_BYTES = 4 * 1024**3
MAX_TRACE_ROWS = 50_000_000

#: Most Mooncake ``hash_ids`` (prefix block hashes) one trace file may hold, all rows together
#: (8 bytes each; Mooncake's FAST'25 conversation trace holds about 250,000).
MAX_TRACE_BLOCK_HASHES = 100_000_000

#: Most turns one multi-turn session may have (``workload.prefix.turns``).
MAX_SESSION_TURNS = 10_000

#: Most tokens a prefix cache or shared prefix pool may be given (``prefix_cache``); a day of
#: DeepSeek's traffic is 6e11 input tokens.
MAX_CACHE_TOKENS = 10**13

#: Range of a trace's time scaling ``workload.arrival.speedup`` (replayed time = trace time / speedup).
MIN_TRACE_SPEEDUP = 0.001
MAX_TRACE_SPEEDUP = 1_000_000.0

#: Highest arrival rate (requests/s).
MAX_RATE_PER_S = 1_000_000.0

#: Largest coefficient of variation of a length or inter-arrival distribution.
MAX_CV = 100.0

#: Largest MoE load imbalance (busiest rank / mean).
MAX_MOE_IMBALANCE = 1024.0

#: Largest SLO limit (ms): one day.
MAX_SLO_MS = 86_400_000.0

#: Most sequences of one training step (``global_batch``), and per micro-batch.
MAX_GLOBAL_BATCH = 16_777_216
MAX_MICRO_BATCH_SIZE = 65_536

#: Most pipeline actions one training step may simulate (one event per micro-batch phase per
#: device: about 2 x micro-batches x pp for 1F1B; the shipped 2,048-GPU example needs 3,840,
#: and 500,000 take about 20 s).
MAX_PIPELINE_ACTIONS = 500_000

#: Largest per-device memory figure (GB) and SM reservation a training job may give.
MAX_MEMORY_GB = 1_000_000.0
MAX_COMM_SMS = 4096

#: Most values of one planner search list, and most pool choices one role may enumerate
#: (the product of the per-pool lists; the shipped plans need at most 2,016).
MAX_SEARCH_VALUES = 64
MAX_POOL_CHOICES = 100_000

#: Most instances of one pool in a planner layout (``search.max_instances``; default 64).
MAX_INSTANCES = 4096

#: Most feasible layouts the planner builds in memory (counted before they are built; the
#: shipped H800 plan has about 500,000 candidates).
MAX_PLAN_LAYOUTS = 5_000_000

#: Largest planner grid / optuna budget, and most layouts verified in the simulator.
MAX_GRID_LAYOUTS = MAX_PLAN_LAYOUTS
MAX_OPTUNA_TRIALS = 1_000_000
MAX_VERIFY_TOP = 100

#: Largest seed (numpy's SeedSequence takes any non-negative integer; 2**63 - 1 keeps it an int64).
MAX_SEED = 2**63 - 1

#: What-if sweep scales (bandwidth, HBM) must lie in [MIN_WHATIF_SCALE, MAX_WHATIF_SCALE].
MIN_WHATIF_SCALE = 0.001
MAX_WHATIF_SCALE = 1000.0

README_SECTION = "workloads/README.md#input-limits"
