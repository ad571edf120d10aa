"""Torch microbenchmark suites. Every module here imports torch lazily (inside functions).

Each suite is a function ``run(ctx)`` taking a :class:`calibration.bench.common.BenchContext`
and appending rows to its CSV tables; see ``calibration.run`` for the driver.
"""

SUITES = (
    "gemm",
    "grouped_gemm",
    "attn_prefill",
    "attn_decode",
    "mla_decode",
    "elementwise",
    "collectives",
    "moe_routing",
    "attn_decode_tiles",
    "attn_prefill_qview",
    "grouped_mm_routed",
    "grouped_mm_sparse",
    "mla_decode_impls",
    "attn_decode_long",
    "mla_glue",
)
