"""The result of simulating a training job (``TrainingResult``): data only, no files.

MFU = model FLOPs per second / (devices x peak), with model FLOPs per token from
``workloads.accounting.training_flops_per_token`` (6 x activated GEMM parameters + 3 x
attention forward, causal or not; recomputation is not model FLOPs) and the peak of the job's
precision (BF16 or FP8 dense peak of the device). ``mfu_*_bf16`` always divide by the BF16
peak, the convention of most published MFU figures.

The breakdown splits every device's step into forward, backward_input, backward_weight,
recompute, comm_sm_slowdown (compute stretched by the SMs communication holds while they
overlap), exposed_comm (communication inside chunks that nothing hides), bubble (pipeline
idle), dp_grad_sync / dp_param_gather (data-parallel collectives after the pipeline),
optimizer, and tail_wait (waiting for the slowest device's tail); the parts sum to the step.

``to_chrome_trace(result)`` turns a traced result's pipeline timeline into a Chrome/Perfetto
Trace Event Format dict (one thread per pipeline rank, one complete event per action or tail
phase).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

__all__ = ["BREAKDOWN_PHASES", "TrainingResult", "to_chrome_trace"]

BREAKDOWN_PHASES = ("forward", "backward_input", "backward_weight", "recompute", "comm_sm_slowdown",
                    "exposed_comm", "bubble", "dp_grad_sync", "optimizer", "dp_param_gather", "tail_wait")

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class TrainingResult:
    """Step time, throughput, MFU, per-phase breakdown and memory of one training job.

    ``breakdown_s``: mean over pipeline devices of each phase (sums to ``step_time_s``).
    ``per_device``: the same per device (DataFrame, one row per pipeline device).
    ``stages``: per-stage costs of one micro-batch. ``memory``: per device, GB.
    ``timeline``: (rank, action, start_s, end_s) of the pipeline flush when traced.
    """

    job: object
    step_time_s: float
    steps: int
    devices: int
    tokens_per_step: int
    flops_per_token_causal: float
    flops_per_token_noncausal: float
    peak_flops_per_s: float
    peak_bf16_flops_per_s: float
    breakdown_s: dict
    per_device: pd.DataFrame
    stages: pd.DataFrame
    memory: pd.DataFrame
    fits_memory: bool
    memory_reason: str = ""
    bubble_closed_form_s: float = 0.0
    micro_batches: int = 0
    timeline: tuple = field(default=(), repr=False)
    sources: dict = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_time_s

    @property
    def tokens_per_day(self) -> float:
        return self.tokens_per_s * SECONDS_PER_DAY

    def _mfu(self, flops_per_token: float, peak: float) -> float:
        return self.tokens_per_s * flops_per_token / (self.devices * peak)

    @property
    def mfu_causal(self) -> float:
        return self._mfu(self.flops_per_token_causal, self.peak_flops_per_s)

    @property
    def mfu_noncausal(self) -> float:
        return self._mfu(self.flops_per_token_noncausal, self.peak_flops_per_s)

    @property
    def mfu_causal_bf16(self) -> float:
        return self._mfu(self.flops_per_token_causal, self.peak_bf16_flops_per_s)

    @property
    def mfu_noncausal_bf16(self) -> float:
        return self._mfu(self.flops_per_token_noncausal, self.peak_bf16_flops_per_s)

    @property
    def memory_peak_gb(self) -> float:
        return float(self.memory["total_gb"].max()) if len(self.memory) else 0.0

    def summary(self) -> dict:
        """Headline figures as a plain dict (what the CLI prints)."""
        return {
            "step_time_s": self.step_time_s,
            "steps": self.steps,
            "devices": self.devices,
            "micro_batches": self.micro_batches,
            "tokens_per_step": self.tokens_per_step,
            "tokens_per_s": self.tokens_per_s,
            "tokens_per_day": self.tokens_per_day,
            "mfu_causal": self.mfu_causal,
            "mfu_noncausal": self.mfu_noncausal,
            "mfu_causal_bf16_peak": self.mfu_causal_bf16,
            "mfu_noncausal_bf16_peak": self.mfu_noncausal_bf16,
            "bubble_s": self.breakdown_s.get("bubble", 0.0),
            "bubble_closed_form_s": self.bubble_closed_form_s,
            "memory_peak_gb": self.memory_peak_gb,
            "fits_memory": self.fits_memory,
            "memory_reason": self.memory_reason,
            "breakdown_s": dict(self.breakdown_s),
        }


def to_chrome_trace(result: TrainingResult) -> dict:
    """Trace Event Format dict of a training step's pipeline (times in microseconds).

    Needs a result simulated with ``trace=True``. Actions are named by their kind (``F``, ``B``,
    ``Bi``, ``W``, ``F&B`` for DualPipe's overlapped pair) with the full label (kind, direction,
    micro-batch, stage) in ``args``; the tail phases (gradient sync, optimizer) by name.
    """
    if not result.timeline:
        raise ValueError("the training result has no timeline: simulate with trace=True")
    ranks = sorted({r for r, *_ in result.timeline})
    ev: list[dict] = [{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "pipeline"}}]
    ev += [{"name": "thread_name", "ph": "M", "pid": 1, "tid": r, "args": {"name": f"rank {r}"}} for r in ranks]
    for rank, label, start_s, end_s in result.timeline:
        kind = "&".join(part.split(".", 1)[0].rstrip("0123456789") for part in label.split("&")) if "@" in label \
            else label
        ev.append({"name": kind, "cat": "tail" if "@" not in label else "pipeline", "ph": "X", "pid": 1,
                   "tid": rank, "ts": start_s * 1e6, "dur": (end_s - start_s) * 1e6, "args": {"label": label}})
    return {"traceEvents": ev, "displayTimeUnit": "ms"}
