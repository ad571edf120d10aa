"""The prefix-cache part of a serving report (a run with ``prefix_cache``).

Hit rate per pool over time (prompt tokens served from cache / prompt tokens, over the requests
admitted in each time bin, bins three times the report's own: first admissions only, as the
summary counts them), the KV memory the
cached prefixes hold beside the requests' own, and a table per pool (``SimResult.cache`` and
``summary["prefix_cache"]``, ``simulator.prefix_cache``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clustersim.report.page import Page, fmt

__all__ = ["prefix_cache_cards", "prefix_cache_section"]

_COLORS = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2")


def prefix_cache_cards(page: Page, pc: dict) -> None:
    """Header cards: the hit rate overall and the shared-pool share of it."""
    page.card("prefix-cache hit rate", "-" if pc.get("hit_rate") is None else f"{pc['hit_rate']:.1%}")
    if "shared_pool" in pc and pc.get("hit_tokens"):
        page.card("hits from the shared pool", f"{pc['shared_hit_tokens'] / pc['hit_tokens']:.1%}")


def _binned(log: pd.DataFrame, edges: np.ndarray) -> pd.DataFrame:
    """Per pool and time bin: hit rate of first admissions, mean cached and used KV fractions."""
    b = np.clip(np.searchsorted(edges, log["time_s"].to_numpy(), side="right") - 1, 0, len(edges) - 2)
    cap = log["capacity_blocks"].replace(0, np.nan)
    df = log.assign(bin=b, cached=log["cached_blocks"] / cap, used=log["used_blocks"] / cap)
    first = df[df["first"].astype(bool)]
    hits = first.groupby(["pool", "bin"], sort=True).agg(prompt=("prompt_tokens", "sum"), hit=("hit_tokens", "sum"),
                                                          shared=("shared_hit_tokens", "sum")).reset_index()
    hits["hit_rate"] = hits["hit"] / hits["prompt"].replace(0, np.nan)
    hits["shared_rate"] = hits["shared"] / hits["prompt"].replace(0, np.nan)
    mem = df.groupby(["pool", "bin"], sort=True).agg(cached=("cached", "mean"), used=("used", "mean")).reset_index()
    out = hits.merge(mem, on=["pool", "bin"], how="outer").sort_values(["pool", "bin"])
    out["t_s"] = edges[out["bin"].to_numpy()] + (edges[1] - edges[0]) / 2
    return out


def prefix_cache_section(page: Page, go, result, pc: dict, edges: np.ndarray) -> None:
    """Hit rate over time per pool, cached vs used KV, and the per-pool table."""
    shared = "shared_pool" in pc
    page.section("Prefix cache", "Prompt tokens served from cached KV blocks instead of being prefilled "
                 f"(first admissions; blocks of {pc['block_tokens']} tokens). Overall hit rate "
                 f"{'-' if pc.get('hit_rate') is None else format(pc['hit_rate'], '.1%')}"
                 + (f"; {fmt(pc['shared_hit_tokens'])} tokens fetched from the shared pool in "
                    f"{fmt(pc['fetch_s'])} s of transfer" if shared else "") + ".")
    log = result.cache
    if log is None or not len(log):
        page.html("<p>No prefix lookups were made.</p>")
        return
    per = _binned(log, edges[::3] if len(edges) > 40 else edges)  # a hit rate needs a few admissions per bin
    page.grid()
    fig = go.Figure()
    for i, (pool, g) in enumerate(per.groupby("pool", sort=True)):
        g = g.dropna(subset=["hit_rate"])
        color = _COLORS[i % len(_COLORS)]
        fig.add_trace(go.Scatter(x=g["t_s"], y=g["hit_rate"], mode="lines+markers", name=f"{pool}",
                                 line=dict(color=color), marker=dict(size=4)))
        if shared:
            fig.add_trace(go.Scatter(x=g["t_s"], y=g["shared_rate"], mode="lines", name=f"{pool}: from the shared pool",
                                     line=dict(color=color, dash="dot", width=1)))
    fig.update_layout(title="Prefix-cache hit rate over time, per pool", xaxis_title="simulated time (s)",
                      yaxis_title="hit tokens / prompt tokens", yaxis_range=[0, 1])
    page.figure(fig)
    fig = go.Figure()
    for i, (pool, g) in enumerate(per.dropna(subset=["cached"]).groupby("pool", sort=True)):
        color = _COLORS[i % len(_COLORS)]
        fig.add_trace(go.Scatter(x=g["t_s"], y=g["cached"], mode="lines", name=f"{pool}: cached prefixes",
                                 line=dict(color=color)))
        fig.add_trace(go.Scatter(x=g["t_s"], y=g["used"], mode="lines", name=f"{pool}: in use by requests",
                                 line=dict(color=color, dash="dot")))
    fig.update_layout(title="KV memory per instance: cached prefix blocks vs blocks in use (at lookups)",
                      xaxis_title="simulated time (s)", yaxis_title="fraction of capacity")
    page.figure(fig)
    rows = [{"pool": k, **v} for k, v in pc.get("pools", {}).items()]
    page.table(rows, [("pool", "pool"), ("hit_rate", "hit rate"), ("lookups", "requests"),
                      ("prompt_tokens", "prompt tokens"), ("hit_tokens", "hit tokens"),
                      ("shared_hit_tokens", "from shared pool"), ("evicted_blocks", "evicted KV blocks"),
                      ("peak_total_fraction", "peak KV (active + cached)")], left=["pool"], scroll=False)
