"""The result of one run (``SimResult``) and its Chrome/Perfetto trace.

``SimResult`` holds data only; the facade (``clustersim``) decides what to write.
``to_chrome_trace(result)`` returns the Trace Event Format dict (load it in
chrome://tracing or ui.perfetto.dev): one process per pool, one thread per instance, a
complete event per batch iteration, and instant events per request when the run was
traced (``simulate(..., trace=True)``).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np

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


class RequestColumns(Mapping):
    """The requests table's columns (``REQUEST_COLUMNS`` -> numpy array) from the run's own arrays,
    without a second copy of them: each column is computed when read and not kept (a million-request
    run would otherwise hold ~100 MB more at its end): the counts as int64 (the run may hold them
    narrower, ``simulator.requests.RunState``), ``id``, ``samples``, TTFT, E2E and queueing delay
    from the arrays they are the difference of, output tokens summed over a request's samples.

    ``arrays``: ``arrival_s``, ``prompt``, ``cached``, ``gen`` and ``target`` (requests x samples),
    ``first_token_s``, ``finish_s``, ``schedule_s``, ``tpot_s``, ``transfer_s`` (None: zeros),
    ``prefill_inst``, ``decode_inst``, ``preemptions``, ``cancelled``."""

    def __init__(self, arrays: dict):
        self._a = arrays
        self.rows = len(arrays["arrival_s"])

    def __iter__(self) -> Iterator[str]:
        return iter(REQUEST_COLUMNS)

    def __len__(self) -> int:
        return len(REQUEST_COLUMNS)

    def __getitem__(self, name: str) -> np.ndarray:
        a = self._a
        get = _REQUEST_READS.get(name)
        if get is None:
            raise KeyError(name)
        return get(a, self.rows)


def _i64(v: np.ndarray) -> np.ndarray:
    return v.astype(np.int64, copy=False)


#: how each requests-table column is read from the run's arrays (``RequestColumns``)
_REQUEST_READS = {
    "id": lambda a, n: np.arange(n),
    "arrival_s": lambda a, n: a["arrival_s"],
    "prompt_tokens": lambda a, n: _i64(a["prompt"]),
    "cached_tokens": lambda a, n: _i64(a["cached"]),
    "output_tokens": lambda a, n: _i64(a["gen"].sum(axis=1)),
    "target_output_tokens": lambda a, n: _i64(a["target"].sum(axis=1)),
    "samples": lambda a, n: np.full(n, int(a["gen"].shape[1])),
    "first_token_s": lambda a, n: a["first_token_s"],
    "finish_s": lambda a, n: a["finish_s"],
    "ttft_s": lambda a, n: a["first_token_s"] - a["arrival_s"],
    "tpot_s": lambda a, n: a["tpot_s"],
    "e2e_s": lambda a, n: a["finish_s"] - a["arrival_s"],
    "queue_s": lambda a, n: a["schedule_s"] - a["arrival_s"],
    "transfer_s": lambda a, n: a["transfer_s"] if a["transfer_s"] is not None else np.zeros(n),
    "prefill_instance": lambda a, n: _i64(a["prefill_inst"]),
    "decode_instance": lambda a, n: _i64(a["decode_inst"]),
    "preemptions": lambda a, n: _i64(a["preemptions"]),
    "cancelled_samples": lambda a, n: _i64(a["cancelled"]),
}


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

    ``requests`` may be given as a DataFrame or as a mapping of ``REQUEST_COLUMNS`` to arrays
    (``RequestColumns``);
    ``op_seconds``, ``transfers`` and ``cache`` as DataFrames or as sequences of row tuples.
    """

    __slots__ = ("request_columns", "step_table", "summary", "events", "_tables", "_frames")

    def __init__(self, requests: Any, step_table: Any, summary: dict, events: list | None = None,
                 op_seconds: Any = (), transfers: Any = (), cache: Any = ()):
        columns = None if _is_frame(requests) else requests
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

                if isinstance(data, Mapping):  # the run's arrays, not a second copy of them
                    df = pd.DataFrame({c: data[c] for c in columns}, columns=list(columns), copy=False)
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
