"""The report of a plan (``clustersim plan --report``): the Pareto front with each layout on
hover, the ranked table with the analytic estimate beside the simulator's verification, and
the emitted deployment YAML; for a training plan, the ranked training layouts.
"""

from __future__ import annotations

import math

import pandas as pd

from clustersim.report.page import Page, esc, fmt

__all__ = ["plan_report", "training_plan_report", "layout_text"]

MODE_COLORS = {"colocated": "#2563eb", "disaggregated": "#d97706"}


def _pool(row, prefix: str) -> str:
    def g(k):
        v = row.get(f"{prefix}_{k}")
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)

    if g("instances") is None:
        return ""
    parts = [f"TP{g('attn_tp')}" if g("attn_tp") else "", f"DP{g('attn_dp')}" if (g("attn_dp") or 1) > 1 else "",
             f"EP{g('moe_ep')}" if (g("moe_ep") or 1) > 1 else "", f"PP{g('pp')}" if (g("pp") or 1) > 1 else "",
             f"{g('micro_batches')} micro-batches" if (g("micro_batches") or 1) > 1 else "",
             f"MTP{g('mtp_depth')}" if g("mtp_depth") else "",
             f"batch <= {g('max_batch_size')}" if g("max_batch_size") else ""]
    return f"{g('instances')} x {g('devices_per_instance')} devices ({', '.join(p for p in parts if p)})"


def layout_text(row) -> str:
    """A ranked row's layout in one line (``prefill 2 x 8 devices (TP1, DP8, EP8) + decode ...``)."""
    if row.get("mode") == "colocated":
        return "colocated " + _pool(row, "pool")
    return f"prefill {_pool(row, 'prefill')} + decode {_pool(row, 'decode')}"


def _pareto(page: Page, go, result, max_points: int = 1500) -> None:
    t = result.table
    ok = t[t["feasible"].astype(bool)]
    feas = ok.groupby("mode", sort=False, group_keys=False).head(max_points)  # the best of each mode (ranked)
    plan = result.plan
    page.section("Pareto front: throughput per device vs speed per user",
                 f"Feasible layouts under TTFT &le; {fmt(plan.slo.ttft_ms)} ms and TPOT &le; {fmt(plan.slo.tpot_ms)} ms "
                 f"(the best {max_points:,} of each mode shown, {len(feas):,} of {len(ok):,}); hover a point for its "
                 "layout.")
    fig = go.Figure()
    for mode, g in feas.groupby("mode", sort=True):
        fig.add_trace(go.Scatter(
            x=g["tokens_per_s_per_user"], y=g["tokens_per_s_per_device"], mode="markers", name=str(mode),
            marker=dict(size=5, opacity=0.45, color=MODE_COLORS.get(mode)),
            text=[f"#{int(r['rank'])}: {layout_text(r)}" for _, r in g.iterrows()],
            hovertemplate="%{text}<br>%{y:.1f} tok/s/device, %{x:.1f} tok/s/user<extra></extra>"))
    p = result.pareto
    if len(p):
        p = p.sort_values("tokens_per_s_per_user")
        fig.add_trace(go.Scatter(
            x=p["tokens_per_s_per_user"], y=p["tokens_per_s_per_device"], mode="lines+markers", name="Pareto front",
            line=dict(color="#111827", width=2), marker=dict(size=8, color="#111827"),
            text=[f"#{int(r['rank'])}: {layout_text(r)}" for _, r in p.iterrows()],
            hovertemplate="%{text}<br>%{y:.1f} tok/s/device, %{x:.1f} tok/s/user<extra></extra>"))
    fig.update_layout(title=f"{plan.name}: {plan.model}", xaxis_title="output tokens/s per user",
                      yaxis_title="output tokens/s per device")
    page.figure(fig, height=480)


def _ranked(page: Page, result, rows: int = 25) -> None:
    t = result.top(rows)
    ver = result.verification.set_index("id") if len(result.verification) else pd.DataFrame()
    page.section("Ranked layouts: analytic estimate vs verification in the simulator",
                 f"Top {len(t)} feasible layouts. The analytic model ranks every layout; the best "
                 f"{len(ver)} were simulated at the plan's load (sim columns).")
    recs = []
    for _, r in t.iterrows():
        rec = {"rank": int(r["rank"]), "layout": layout_text(r), "devices": int(r["devices"]),
               "tpd": r.get("tokens_per_s_per_device"), "tpu": r.get("tokens_per_s_per_user"),
               "ttft": r.get("ttft_ms_at_target"), "tpot": r.get("tpot_ms_at_target"), "cap": r.get("capacity_rps")}
        if r["id"] in ver.index:
            v = ver.loc[r["id"]]
            rec.update(sttft=v.get("sim_ttft_p_ms"), stpot=v.get("sim_tpot_p_ms"),
                       stpd=v.get("sim_output_tokens_per_s_per_device"),
                       att=_pct(v.get("sim_slo_attainment")))
        recs.append(rec)
    cols = [("rank", "#"), ("layout", "layout"), ("devices", "devices"), ("tpd", "tok/s/device"),
            ("tpu", "tok/s/user"), ("cap", "capacity req/s"), ("ttft", "TTFT ms (analytic)"),
            ("tpot", "TPOT ms (analytic)"), ("sttft", "TTFT ms (sim)"), ("stpot", "TPOT ms (sim)"),
            ("stpd", "tok/s/device at the plan's load (sim)"), ("att", "SLO met (sim)")]
    page.table(recs, cols, left=("layout",), classes={"layout": lambda r: "w"})


def _pct(x) -> str:
    return "–" if x is None or x != x else f"{x:.0%}"


def plan_report(result) -> str:
    """The HTML text of a serving plan's report."""
    import plotly.graph_objects as go

    plan, st = result.plan, result.stats
    page = Page(f"clustersim plan: {plan.name}",
                f"{plan.model} on {st.get('cluster')} ({st.get('device')}, budget {st.get('budget_devices')} devices); "
                f"SLO TTFT <= {fmt(plan.slo.ttft_ms)} ms, TPOT <= {fmt(plan.slo.tpot_ms)} ms at p{fmt(plan.slo.percentile)}")
    t = result.table
    page.card("layouts evaluated", int(len(t)))
    page.card("feasible", int(t["feasible"].sum()) if len(t) else 0)
    page.card("on the Pareto front", int(len(result.pareto)))
    page.card("verified in the simulator", int(len(result.verification)))
    page.card("planner wall time", f"{fmt(st.get('wall_s'))} s")
    best = result.top(1)
    if len(best):
        b = best.iloc[0]
        page.card("best: tokens/s per device", b["tokens_per_s_per_device"])
        page.card("best: tokens/s per user", b["tokens_per_s_per_user"])
        page.html(f"<section><h2>Best layout</h2><p class=answer>{esc(layout_text(b))}</p></section>")
    _pareto(page, go, result)
    _ranked(page, result)
    page.section("The best deployment (best_deployment.yaml)", "Runs as it is with <code>clustersim simulate</code>.")
    page.pre(result.best_yaml() or "no feasible layout: nothing to emit")
    if result.notes:
        page.section("Notes")
        page.pre("\n".join(result.notes))
    return page.render()


def training_plan_report(table: pd.DataFrame, name: str) -> str:
    """The HTML text of a training plan's report: layouts by tokens/day and memory."""
    import plotly.graph_objects as go

    page = Page(f"clustersim plan: {name}", table.attrs.get("profile_line", ""))
    feas = table[table["feasible"].astype(bool)] if "feasible" in table else table
    page.card("layouts", int(len(table)))
    page.card("fit in memory", int(len(feas)))
    if len(feas):
        page.card("best tokens/day", f"{feas['tokens_per_day'].iloc[0]:.3g}")
    page.section("Layouts: tokens/day against peak memory", "Hover a point for its layout.")
    fig = go.Figure()
    for ok, g in table.groupby(table["feasible"].astype(bool) if "feasible" in table else True):
        label = [f"{r.get('pp_schedule')}: tp{r.get('tp')} pp{r.get('pp')} ep{r.get('ep')} dp{r.get('dp')}"
                 for _, r in g.iterrows()]
        fig.add_trace(go.Scatter(x=g["memory_peak_gb"], y=g["tokens_per_day"], mode="markers", text=label,
                                 name="fits" if ok else "out of memory",
                                 marker=dict(color="#2563eb" if ok else "#b91c1c", size=7, opacity=0.7),
                                 hovertemplate="%{text}<br>%{y:.3g} tokens/day, %{x:.1f} GB<extra></extra>"))
    fig.update_layout(xaxis_title="peak memory per device (GB)", yaxis_title="tokens/day", title="Training layouts")
    page.figure(fig, height=420)
    page.section("Ranked layouts")
    cols = [c for c in ("feasible", "pp_schedule", "tp", "pp", "ep", "dp", "step_time_s", "tokens_per_day",
                        "mfu_causal", "memory_peak_gb", "reason") if c in table.columns]
    page.table(table.head(40).to_dict("records"), [(c, c) for c in cols], left=("reason",))
    return page.render()
