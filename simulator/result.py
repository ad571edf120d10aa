"""The result of one run (``SimResult``) and its Chrome/Perfetto trace.

``SimResult`` holds data only; the facade (``clustersim``) decides what to write.
``to_chrome_trace(result)`` returns the Trace Event Format dict (load it in
chrome://tracing or ui.perfetto.dev): one process per pool, one thread per instance, a
complete event per batch iteration, and instant events per request when the run was
traced (``simulate(..., trace=True)``).
"""

from __future__ import annotations

from typing import Any

from simulator.prefix_cache import CACHE_LOG_COLUMNS

REQUEST_COLUMNS = (
    "id", "arrival_s", "prompt_tokens", "cached_tokens", "output_tokens", "target_output_tokens", "samples",
    "first_token_s", "finish_s", "ttft_s", "tpot_s", "e2e_s", "queue_s", "transfer_s",
    "prefill_instance", "decode_instance", "preemptions", "cancelled_samples",
)
STEP_COLUMNS = (
    "time_s", "instance", "pool", "batch_size", "decode_seqs", "prefill_tokens", "new_tokens", "step_s",
    "kv_used_fraction", "compute_s", "comm_s",
)
#: operator seconds summed over the run, per pool, by source family and op kind (one device of an
#: instance, before compute/communication overlap: they add up to more than the busy time)
OP_SECONDS_COLUMNS = ("pool", "source", "kind", "seconds")
#: one row per completed KV transfer (disaggregated serving): a group of requests moved together
TRANSFER_COLUMNS = ("start_s", "end_s", "bytes", "src_instance", "dst_instance")
#: kinds of the event log, in the order they can happen to one request
EVENT_KINDS = ("arrival", "schedule", "first_token", "kv_transfer_start", "kv_transfer_end", "preempt",
               "cancel", "finish")


class SimResult:
    """Per-request and per-iteration tables, the summary, and (if traced) the event log. Read-only.

    The tables are pandas DataFrames built when first read, then kept (a run itself never imports
    pandas: ``clustersim simulate`` without ``--out`` prints the summary and builds none of them):

    ``requests``: one row per request (``REQUEST_COLUMNS``), from the run's columns
    (``request_columns``: numpy arrays, read without pandas).
    ``steps``: the per-iteration DataFrame (``STEP_COLUMNS``), from ``step_table`` (the run's
    compact steps, ``simulator.steplog.StepTable``): a long run's table is millions of rows, which
    the CLI writes from ``step_table`` without building it.
    ``events``: ``(time_s, kind, request_id, instance)`` tuples in simulation order.
    ``op_seconds``: operator seconds by pool, source and kind (``OP_SECONDS_COLUMNS``).
    ``transfers``: the completed KV transfers (``TRANSFER_COLUMNS``; empty when colocated).
    ``cache``: one row per prefix-cache lookup at admission (``CACHE_LOG_COLUMNS``; empty without
    ``prefix_cache``).

    ``requests`` may be given as a DataFrame or as a mapping of ``REQUEST_COLUMNS`` to arrays;
    ``op_seconds``, ``transfers`` and ``cache`` as DataFrames or as sequences of row tuples.
    """

    __slots__ = ("request_columns", "step_table", "summary", "events", "_tables", "_frames")

    def __init__(self, requests: Any, step_table: Any, summary: dict, events: list | None = None,
                 op_seconds: Any = (), transfers: Any = (), cache: Any = ()):
        columns = None if _is_frame(requests) else dict(requests)
        tables = {"requests": (requests, REQUEST_COLUMNS), "op_seconds": (op_seconds, OP_SECONDS_COLUMNS),
                  "transfers": (transfers, TRANSFER_COLUMNS), "cache": (cache, CACHE_LOG_COLUMNS)}
        for name, value in (("request_columns", columns), ("step_table", step_table), ("summary", summary),
                            ("events", [] if events is None else events), ("_tables", tables), ("_frames", {})):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"SimResult is read-only: cannot set {name!r}")

    def _frame(self, name: str):
        df = self._frames.get(name)
        if df is None:
            data, columns = self._tables[name]
            if _is_frame(data):
                df = data
            else:
                import pandas as pd

                if isinstance(data, dict):  # the run's arrays, not a second copy of them
                    df = pd.DataFrame(data, columns=list(columns), copy=False)
                else:
                    df = pd.DataFrame(list(data), columns=list(columns))
            self._frames[name] = df
        return df

    @property
    def requests(self):
        return self._frame("requests")

    @property
    def op_seconds(self):
        return self._frame("op_seconds")

    @property
    def transfers(self):
        return self._frame("transfers")

    @property
    def cache(self):
        return self._frame("cache")

    @property
    def steps(self):
        df = self._frames.get("steps")
        if df is None:
            df = self._frames["steps"] = self.step_table.frame()
        return df


def _is_frame(data: Any) -> bool:
    """A DataFrame (or another table that is used as given), not columns or rows to build one from."""
    return hasattr(data, "to_csv")


def to_chrome_trace(result: SimResult) -> dict:
    """Trace Event Format dict of ``result`` (times in microseconds)."""
    steps = result.steps
    pools = sorted(steps["pool"].unique()) if len(steps) else []
    pid = {p: i + 1 for i, p in enumerate(pools)}
    inst_pool = dict(zip(steps["instance"], steps["pool"])) if len(steps) else {}
    ev: list[dict] = [
        {"name": "process_name", "ph": "M", "pid": pid[p], "args": {"name": str(p)}} for p in pools
    ]
    for inst, pool in sorted(inst_pool.items()):
        ev.append({"name": "thread_name", "ph": "M", "pid": pid[pool], "tid": int(inst),
                   "args": {"name": f"{pool}/{inst}"}})
    for row in steps.itertuples(index=False):
        ev.append({"name": "decode" if row.prefill_tokens == 0 else ("prefill" if row.decode_seqs == 0 else "mixed"),
                   "ph": "X", "pid": pid[row.pool], "tid": int(row.instance), "ts": row.time_s * 1e6,
                   "dur": row.step_s * 1e6,
                   "args": {"batch_size": int(row.batch_size), "new_tokens": int(row.new_tokens),
                            "kv_used_fraction": float(row.kv_used_fraction)}})
    for time_s, kind, rid, inst in result.events:
        pool = inst_pool.get(inst)
        ev.append({"name": kind, "ph": "i", "s": "t", "pid": pid.get(pool, 0), "tid": int(inst),
                   "ts": time_s * 1e6, "args": {"request": int(rid)}})
    return {"traceEvents": ev, "displayTimeUnit": "ms"}
