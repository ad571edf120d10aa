"""The report of a serving simulation (``clustersim simulate --report``).

Latency distributions against the SLOs, throughput / queue / batch / KV use over time per pool,
goodput, operator time by source and kind, and KV-transfer traffic, all from ``SimResult``
(requests, steps, op_seconds, transfers) and the run summary.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clustersim.report.page import Page, esc, fmt
from clustersim.report.prefix_cache import prefix_cache_cards, prefix_cache_section

__all__ = ["serving_report"]

COLORS = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2")


def _bins(span_s: float, n: int = 120) -> np.ndarray:
    """Bin edges over [0, span] with a round width (at least 1 ms)."""
    raw = max(span_s / n, 1e-3)
    mag = 10 ** np.floor(np.log10(raw))
    width = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=raw)
    return np.arange(0.0, span_s + width, width)


def _hist(go, values_ms: np.ndarray, name: str, slo_ms: float | None, color: str):
    v = values_ms[np.isfinite(values_ms)]
    counts, edges = np.histogram(v, bins=60) if v.size else (np.zeros(0), np.zeros(1))
    # binned here, not in the browser: the page stays small for runs of any size
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), marker_color=color,
                           opacity=0.85, name=name, hovertemplate="%{x:.4g} ms: %{y} requests<extra></extra>"))
    if v.size:
        for k, (q, dash) in enumerate(((50, "dot"), (90, "dash"), (99, "dashdot"))):
            x = float(np.percentile(v, q))
            fig.add_vline(x=x, line=dict(color="#52606d", dash=dash, width=1),
                          annotation=dict(text=f"p{q}", font_size=10, yshift=-14 * k), annotation_position="top right")
    if slo_ms is not None:
        fig.add_vline(x=slo_ms, line=dict(color="#b91c1c", width=2),
                      annotation=dict(text=f"SLO {fmt(slo_ms)} ms", font_color="#b91c1c", font_size=11),
                      annotation_position="top left")
    met = f"; {np.mean(v <= slo_ms):.1%} within the SLO" if slo_ms is not None and v.size else ""
    pct = ", ".join(f"p{q} {fmt(float(np.percentile(v, q)), 3)}" for q in (50, 90, 99)) if v.size else "no data"
    fig.update_layout(title=f"{name} (ms): {pct}{met}", xaxis_title="ms", yaxis_title="requests",
                      showlegend=False, bargap=0.02)
    return fig


def _header(page: Page, dep, s: dict, summary: dict) -> None:
    thr, slo = s["throughput"], s["slo"]
    page.card("requests finished", f"{s['counts']['finished']:,} / {s['counts']['requests']:,}")
    page.card("output tokens/s", thr["output_tokens_per_s"])
    page.card("output tokens/s per device", thr["output_tokens_per_s_per_device"])
    page.card("goodput (requests/s within SLOs)", slo["goodput_requests_per_s"])
    page.card("SLO attainment", f"{slo['attainment']:.1%}")
    q = f"p{slo['percentile']:g}"
    page.card(f"TTFT {q} (SLO {fmt(slo['ttft_ms'])} ms)", f"{fmt(slo.get('ttft_' + q + '_ms'))} ms")
    page.card(f"TPOT {q} (SLO {fmt(slo['tpot_ms'])} ms)", f"{fmt(slo.get('tpot_' + q + '_ms'))} ms")
    page.card("makespan", f"{fmt(s['makespan_s'])} s")


def _latency(page: Page, go, req: pd.DataFrame, slo: dict) -> None:
    fin = req[np.isfinite(req["finish_s"])]
    page.section("Latency distributions", "Per finished request; red: the SLO limit, grey: p50 / p90 / p99.")
    page.grid()
    page.figure(_hist(go, fin["ttft_s"].to_numpy() * 1e3, "TTFT", slo["ttft_ms"], COLORS[0]))
    page.figure(_hist(go, fin["tpot_s"].to_numpy() * 1e3, "TPOT", slo["tpot_ms"], COLORS[2]))
    page.figure(_hist(go, fin["e2e_s"].to_numpy() * 1e3, "E2E latency", None, COLORS[4]))
    page.figure(_hist(go, fin["queue_s"].to_numpy() * 1e3, "Queueing delay before prefill", None, COLORS[3]))


def _per_bin(steps: pd.DataFrame, edges: np.ndarray) -> pd.DataFrame:
    """Per pool and time bin: tokens/s, mean batch size, mean and max KV use."""
    width = edges[1] - edges[0]
    b = np.clip(np.searchsorted(edges, steps["time_s"].to_numpy(), side="right") - 1, 0, len(edges) - 2)
    g = steps.assign(bin=b).groupby(["pool", "bin"], sort=True)
    out = g.agg(tokens=("new_tokens", "sum"), batch=("batch_size", "mean"), kv=("kv_used_fraction", "mean"),
                kv_max=("kv_used_fraction", "max")).reset_index()
    out["t_s"] = edges[out["bin"].to_numpy()] + width / 2
    out["tokens_per_s"] = out["tokens"] / width
    return out


def _over_time(page: Page, go, res, edges: np.ndarray) -> None:
    steps, req = res.steps, res.requests
    page.section("Over time, per pool", f"Bins of {fmt(edges[1] - edges[0])} s; every instance of a pool together.")
    page.grid()
    if len(steps):
        pb = _per_bin(steps, edges)
        for col, title, ytitle in (("tokens_per_s", "Throughput: tokens produced per second", "tokens/s"),
                                   ("batch", "Batch size per iteration (mean)", "sequences"),
                                   ("kv", "KV cache in use (mean over iterations; dotted: max)", "fraction of capacity")):
            fig = go.Figure()
            for i, (pool, g) in enumerate(pb.groupby("pool", sort=True)):
                fig.add_trace(go.Scatter(x=g["t_s"], y=g[col], mode="lines", name=str(pool),
                                         line=dict(color=COLORS[i % len(COLORS)])))
                if col == "kv":
                    fig.add_trace(go.Scatter(x=g["t_s"], y=g["kv_max"], mode="lines", name=f"{pool} max",
                                             line=dict(color=COLORS[i % len(COLORS)], dash="dot", width=1)))
            fig.update_layout(title=title, xaxis_title="simulated time (s)", yaxis_title=ytitle)
            page.figure(fig)
    arrive = np.sort(req["arrival_s"].to_numpy())
    admit = np.sort((req["arrival_s"] + req["queue_s"]).to_numpy())
    finish = np.sort(req["finish_s"].to_numpy())
    t = edges
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=np.searchsorted(arrive, t, "right") - np.searchsorted(admit, t, "right"),
                             mode="lines", name="waiting for prefill", line=dict(color=COLORS[1])))
    fig.add_trace(go.Scatter(x=t, y=np.searchsorted(arrive, t, "right") - np.searchsorted(finish, t, "right"),
                             mode="lines", name="in the system", line=dict(color=COLORS[0])))
    fig.update_layout(title="Queue length: requests waiting and in flight", xaxis_title="simulated time (s)",
                      yaxis_title="requests")
    page.figure(fig)


def _goodput(page: Page, go, req: pd.DataFrame, slo: dict, edges: np.ndarray) -> None:
    fin = req[np.isfinite(req["finish_s"])]
    ok = (fin["ttft_s"] * 1e3 <= slo["ttft_ms"]) & ~(fin["tpot_s"] * 1e3 > slo["tpot_ms"])
    width = edges[1] - edges[0]
    page.section("Goodput", f"Requests finished per second, by whether they met both SLOs (TTFT &le; "
                            f"{esc(fmt(slo['ttft_ms']))} ms, TPOT &le; {esc(fmt(slo['tpot_ms']))} ms). "
                            f"Goodput {esc(fmt(slo['goodput_requests_per_s']))} requests/s, "
                            f"attainment {slo['attainment']:.1%}.")
    fig = go.Figure()
    for mask, name, color in ((ok, "met both SLOs", "#15803d"), (~ok, "missed an SLO", "#b91c1c")):
        counts, _ = np.histogram(fin.loc[mask, "finish_s"], bins=edges)
        fig.add_trace(go.Bar(x=edges[:-1] + width / 2, y=counts / width, name=name, marker_color=color))
    fig.update_layout(barmode="stack", title="Finished requests per second", xaxis_title="simulated time (s)",
                      yaxis_title="requests/s", bargap=0)
    page.figure(fig, height=320)


def _breakdown(page: Page, go, res) -> None:
    ops, steps = res.op_seconds, res.steps
    page.section("Step time by operator source", "Operator time of one device per iteration, summed over the "
                 "run and divided by the pool's iterations (before compute/communication overlap, so it can exceed "
                 "the step). Source: <b>profile</b> measured here, <b>transfer</b> measured on another device and "
                 "scaled, <b>roofline</b> outside the measured grids, <b>published</b> kernel figures, <b>model</b> "
                 "collectives and dispatch from the fabric model.")
    if ops is None or not len(ops):
        page.html("<p>No operator breakdown recorded (a custom step-cost function was used).</p>")
        return
    iters = steps.groupby("pool").size() if len(steps) else pd.Series(dtype=float)
    per = ops.assign(ms=[s / max(int(iters.get(p, 1)), 1) * 1e3 for p, s in zip(ops["pool"], ops["seconds"])])
    page.grid()
    for by, title in (("source", "by source"), ("kind", "by operator kind")):
        agg = per.groupby(["pool", by], sort=True)["ms"].sum().reset_index()
        fig = go.Figure()
        for i, (key, g) in enumerate(agg.groupby(by, sort=True)):
            fig.add_trace(go.Bar(x=g["pool"], y=g["ms"], name=str(key), marker_color=COLORS[i % len(COLORS)]
                                 if by == "source" else None))
        fig.update_layout(barmode="stack", title=f"Operator ms per iteration, {title}", yaxis_title="ms")
        page.figure(fig)
    if len(steps):
        share = steps.groupby("pool")[["step_s", "compute_s", "comm_s"]].mean().reset_index()
        fig = go.Figure([go.Bar(x=share["pool"], y=share[c] * 1e3, name=n, marker_color=col)
                         for c, n, col in (("step_s", "step", "#52606d"), ("compute_s", "compute", COLORS[0]),
                                           ("comm_s", "communication", COLORS[3]))])
        fig.update_layout(barmode="group", title="Mean step, compute and communication time", yaxis_title="ms")
        page.figure(fig)


def _transfers(page: Page, go, res, edges: np.ndarray) -> None:
    tr = res.transfers
    page.section("KV-cache transfers", "Prefill to decode, as max-min fair flows over the instance ports and the "
                 "fabric between the pools.")
    if tr is None or not len(tr):
        page.html("<p>No KV transfers: the deployment is colocated (prefill and decode share instances).</p>")
        return
    width = edges[1] - edges[0]
    rate = np.zeros(len(edges) - 1)
    for start, end, nbytes in zip(tr["start_s"], tr["end_s"], tr["bytes"]):
        lo, hi = edges[:-1], edges[1:]
        overlap = np.clip(np.minimum(hi, end) - np.maximum(lo, start), 0.0, None)
        dur = max(end - start, 1e-12)
        rate += nbytes * overlap / dur if end > start else nbytes * ((lo <= start) & (start < hi))
    page.grid()
    fig = go.Figure(go.Scatter(x=edges[:-1] + width / 2, y=rate / width / 1e9, mode="lines", fill="tozeroy",
                               line=dict(color=COLORS[5])))
    fig.update_layout(title=f"KV traffic: {len(tr):,} transfers, {tr['bytes'].sum() / 1e12:.3g} TB in all",
                      xaxis_title="simulated time (s)", yaxis_title="GB/s")
    page.figure(fig)
    ms = res.requests["transfer_s"].to_numpy() * 1e3
    page.figure(_hist(go, ms, "KV transfer time per request", None, COLORS[5]))


def serving_report(dep, result, summary: dict) -> str:
    """The HTML text of a serving run's report (``summary``: ``clustersim.run.run_summary``)."""
    import plotly.graph_objects as go

    s = summary["summary"]
    pools = ", ".join(f"{name}: {p.instances} x {p.devices_per_instance} devices" for name, p in dep.pools().items())
    prof = summary.get("profile") or {}
    page = Page(f"clustersim simulate: {dep.name}",
                f"{dep.model} on {dep.cluster} ({dep.serving.mode}; {pools}); {s['counts']['requests']:,} requests, "
                f"seed {dep.seed}; profile {prof.get('name', 'none')}")
    _header(page, dep, s, summary)
    if "prefix_cache" in s:
        prefix_cache_cards(page, s["prefix_cache"])
    req = result.requests
    fin = req[np.isfinite(req["finish_s"])]
    span = float(max(fin["finish_s"].max() if len(fin) else 0.0,
                     result.steps["time_s"].max() if len(result.steps) else 0.0, 1e-3))
    edges = _bins(span)
    _latency(page, go, req, s["slo"])
    _over_time(page, go, result, edges)
    _goodput(page, go, req, s["slo"], edges)
    if "prefix_cache" in s:
        prefix_cache_section(page, go, result, s["prefix_cache"], edges)
    _breakdown(page, go, result)
    _transfers(page, go, result, edges)
    page.section("Summary")
    page.pre(_summary_text(summary))
    return page.render()


def _summary_text(summary: dict) -> str:
    from clustersim.outputs import to_json

    return to_json({k: summary[k] for k in ("summary", "profile", "seed", "config_sha256") if k in summary})
