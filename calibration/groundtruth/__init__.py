"""Whole-model ground truth: torch reference forward steps with random bf16 weights, on one GPU.

``python -m calibration.groundtruth --out DIR [--set main|wide|chunk|check]`` measures:

* **main** (the first run's tables, formats unchanged): a Llama-3.1-8B-shaped model (prefill of
  B sequences of S tokens, logits of the last token only; one decode step of B sequences at
  context C); one tensor-parallel rank of a Llama-3.1-70B-shaped model under TP 4 (TP
  all-reduces and the logits gather NOT included); one expert-parallel rank of a
  DeepSeek-V3-shaped MoE layer under EP 4 (dispatch/combine NOT included);
* **wide** (issue 14; every row carries ``split`` = fit | holdout): MoE layers at 1..64 tokens
  per rank (DeepSeek-V3 at EP 1/4/32, V2-Lite at EP 1/4; ``experts_touched`` recorded), whole
  DeepSeek-V2-Lite-shaped MLA models in absorbed decode over batch x context and in
  non-absorbed prefill, and batch-1..8 long-context dense decode (Llama-3.1-8B, 70B TP-4 rank);
* **chunk**: chunked prefill of a Llama-3.1-8B-shaped model (n new tokens per sequence after c
  cached ones, lower-right causal attention; ``split`` = fit | holdout);
* **check**: the handful of steps ``calibration.run --check`` measures after a calibration.

Modules: ``configs`` (shapes from the workloads catalog), ``dense``, ``moe``, ``mla`` (the torch
models), ``cases`` (tables, point sets, fit/holdout split), ``workload`` (each row's operator
list, for prediction and planning), ``plan`` (device-time estimate), ``run`` (driver),
``common`` (timing, RoPE, SDPA). Each step is timed eagerly and as a CUDA-graph replay
(``seconds`` is the replay, ``seconds_eager`` the eager step). These tables are ground truth for
the simulator and are kept apart from the profile that predicts them. torch is imported lazily.
"""

from calibration.groundtruth.cases import (  # noqa: F401  (public names of the first version)
    DENSE_DECODE,
    DENSE_PREFILL,
    LLAMA_8B_DECODE,
    LLAMA_8B_PREFILL,
    LLAMA_70B_DECODE,
    LLAMA_70B_PREFILL,
    MOE_LAYER,
    MOE_TOKENS,
)
from calibration.groundtruth.common import time_step  # noqa: F401
from calibration.groundtruth.configs import (  # noqa: F401
    DSV3_MOE_EP4,
    LLAMA_8B,
    LLAMA_70B_TP4,
    TINY_DENSE,
    TINY_MOE,
    DenseConfig,
    MoEConfig,
)
from calibration.groundtruth.dense import DenseModel  # noqa: F401
from calibration.groundtruth.moe import MoELayer, uniform_routing  # noqa: F401
from calibration.groundtruth.run import main  # noqa: F401

PREFILL_COLUMNS = list(DENSE_PREFILL.columns)
DECODE_COLUMNS = list(DENSE_DECODE.columns)
MOE_COLUMNS = list(MOE_LAYER.columns)
