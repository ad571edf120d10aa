"""The report of a training simulation (``clustersim simulate TRAIN.yaml --report``).

Headline figures, the step's breakdown (mean and per pipeline device), the pipeline timeline
(a Gantt chart of every rank's actions, from ``simulator.training.result.to_chrome_trace``),
memory per device against the limit, and the per-stage costs of one micro-batch.
"""

from __future__ import annotations

from clustersim.report.page import Page, fmt

__all__ = ["training_report"]

KIND_COLORS = {"F": "#2563eb", "B": "#dc2626", "Bi": "#ef4444", "W": "#f59e0b", "F&B": "#7c3aed",
               "B&F": "#7c3aed", "dp_grad_sync": "#0891b2", "optimizer": "#059669", "dp_param_gather": "#14b8a6"}


def _timeline(page: Page, go, result) -> None:
    from simulator.training.result import to_chrome_trace

    page.section("Pipeline timeline", "One row per pipeline rank: forward (F), backward (B; Bi input, W weight "
                 "gradients), overlapped pairs (F&amp;B), then the data-parallel tail. Hover a bar for its "
                 "micro-batch and stage.")
    if not result.timeline:
        page.html("<p>No timeline recorded.</p>")
        return
    events = [e for e in to_chrome_trace(result)["traceEvents"] if e.get("ph") == "X"]
    ranks = sorted({e["tid"] for e in events})
    fig = go.Figure()
    for kind in sorted({e["name"] for e in events}, key=lambda k: (k not in KIND_COLORS, k)):
        ev = [e for e in events if e["name"] == kind]
        fig.add_trace(go.Bar(
            y=[f"rank {e['tid']}" for e in ev], x=[e["dur"] / 1e6 for e in ev], base=[e["ts"] / 1e6 for e in ev],
            orientation="h", name=kind, marker=dict(color=KIND_COLORS.get(kind), line=dict(width=0.3, color="#fff")),
            customdata=[[e["args"].get("label", kind), e["ts"] / 1e3, e["dur"] / 1e3] for e in ev],
            hovertemplate="%{customdata[0]}<br>start %{customdata[1]:.2f} ms, lasts %{customdata[2]:.2f} ms"
                          "<extra></extra>"))
    fig.update_layout(barmode="overlay", bargap=0.25, title=f"Step of {fmt(result.step_time_s)} s over "
                      f"{len(ranks)} pipeline ranks", xaxis_title="seconds into the step",
                      yaxis=dict(categoryorder="array", categoryarray=[f"rank {r}" for r in reversed(ranks)]))
    page.figure(fig, height=max(320, 26 * len(ranks) + 120))


def _breakdown(page: Page, go, result) -> None:
    from simulator.training.result import BREAKDOWN_PHASES

    page.section("Where the step goes", "Mean over pipeline devices (left) and per device (right); the parts sum "
                 "to the step time.")
    page.grid()
    b = result.breakdown_s
    fig = go.Figure(go.Bar(x=[b.get(k, 0.0) for k in BREAKDOWN_PHASES], y=list(BREAKDOWN_PHASES), orientation="h",
                           marker_color="#2563eb", hovertemplate="%{y}: %{x:.3f} s<extra></extra>"))
    fig.update_layout(title="Step breakdown (s, mean over devices)", xaxis_title="s",
                      yaxis=dict(autorange="reversed"))
    page.figure(fig)
    pd_ = result.per_device
    fig = go.Figure([go.Bar(x=pd_["device"], y=pd_[k], name=k) for k in BREAKDOWN_PHASES if k in pd_])
    fig.update_layout(barmode="stack", title="Per pipeline device (s)", xaxis_title="pipeline device",
                      yaxis_title="s")
    page.figure(fig)


def _memory(page: Page, go, result) -> None:
    m = result.memory
    page.section("Memory per device", f"Peak {fmt(result.memory_peak_gb)} GB; "
                 f"{'fits' if result.fits_memory else 'does NOT fit: ' + result.memory_reason}.")
    parts = [c for c in ("params_gb", "grads_gb", "optimizer_gb", "activations_gb", "reserved_gb") if c in m]
    fig = go.Figure([go.Bar(x=m["device"], y=m[c], name=c.removesuffix("_gb")) for c in parts])
    if "limit_gb" in m and len(m):
        fig.add_hline(y=float(m["limit_gb"].max()), line=dict(color="#b91c1c", width=2),
                      annotation=dict(text=f"usable {fmt(float(m['limit_gb'].max()))} GB", font_color="#b91c1c"))
    fig.update_layout(barmode="stack", title="Memory per pipeline device (GB)", xaxis_title="pipeline device",
                      yaxis_title="GB")
    page.figure(fig, height=340)


def training_report(job, result, summary: dict) -> str:
    """The HTML text of a training run's report (``summary``: ``clustersim.run.run_summary``)."""
    import plotly.graph_objects as go

    s = summary["summary"]
    p = job.parallelism
    prof = summary.get("profile") or {}
    page = Page(f"clustersim simulate: {job.model} training on {job.cluster}",
                f"{p.devices} devices: dp{p.dp} x pp{p.pp} ({p.pp_schedule}) x tp{p.tp}, ep{p.ep}, zero{p.zero_stage}; "
                f"global batch {job.global_batch} x {job.seq_len} tokens, {job.precision}; "
                f"profile {prof.get('name', 'none')}")
    page.card("step time", f"{fmt(s['step_time_s'])} s")
    page.card("tokens/s", s["tokens_per_s"])
    page.card("tokens/day", f"{s['tokens_per_day']:.3g}")
    page.card("MFU (causal, BF16 peak)", f"{s['mfu_causal_bf16_peak']:.1%}")
    page.card("bubble", f"{fmt(s['bubble_s'])} s")
    page.card("memory peak", f"{fmt(s['memory_peak_gb'])} GB")
    page.card("micro-batches per step", s["micro_batches"])
    _timeline(page, go, result)
    _breakdown(page, go, result)
    _memory(page, go, result)
    page.section("Per-stage costs of one micro-batch")
    st = result.stages
    page.table(st.to_dict("records"), [(c, c) for c in st.columns])
    return page.render()
