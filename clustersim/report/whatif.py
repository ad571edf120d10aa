"""The report of a what-if run (``clustersim what-if --report``): the sweep or the hardware
comparison as charts of the best layout's metrics, or the capacity answer in one sentence with
the budgets tried; the table of every variant below.
"""

from __future__ import annotations

import pandas as pd

from clustersim.report.page import Page, esc, fmt

__all__ = ["whatif_report", "capacity_sentence"]

METRICS = (("tokens_per_s_per_device", "output tokens/s per device"), ("tokens_per_s_per_user", "output tokens/s per user"),
           ("capacity_rps", "capacity (requests/s)"), ("tokens_per_s_per_kusd", "output tokens/s per k$ of hardware"),
           ("ttft_ms", "TTFT (ms) at capacity"), ("tpot_ms", "TPOT (ms) at capacity"))


def _layout(row) -> str:
    """The what-if row's ``layout`` (``prefill_instances=2, ...``) in the plan report's words."""
    from clustersim.report.plan import layout_text

    fields = dict(p.split("=", 1) for p in str(row.get("layout", "")).split(", ") if "=" in p)
    return layout_text({"mode": row.get("mode"), **{k: float(v) for k, v in fields.items()}})


def capacity_sentence(df: pd.DataFrame, plan) -> str:
    """The capacity answer in one sentence."""
    rate = df.attrs.get("target_rate_per_s")
    slo = f"TTFT <= {fmt(plan.slo.ttft_ms)} ms and TPOT <= {fmt(plan.slo.tpot_ms)} ms at p{fmt(plan.slo.percentile)}"
    n = df.attrs.get("fewest_devices")
    if n:
        row = df[df["meets_load"].astype(bool)].iloc[0] if "meets_load" in df else df.iloc[-1]
        return (f"The fewest devices that serve {fmt(rate)} requests/s of {plan.model} within {slo}: {n} devices "
                f"({df.attrs.get('fewest_nodes')} nodes), as {_layout(row)} "
                f"(capacity {fmt(row.get('capacity_rps'))} requests/s).")
    tried = int(df["budget_devices"].max()) if len(df) else 0
    best = df["capacity_rps"].max() if "capacity_rps" in df and len(df) else None
    return (f"No budget tried (up to {tried} devices) serves {fmt(rate)} requests/s of {plan.model} within {slo}; "
            f"the most any reaches is {fmt(best)} requests/s.")


def _charts(page: Page, go, kind: str, df: pd.DataFrame) -> None:
    x = df.columns[0]
    xs = df[x].astype(str) if kind == "compare" or df[x].dtype == object else df[x]
    page.grid()
    for col, label in METRICS:
        if col not in df or df[col].isna().all():
            continue
        if kind == "compare":
            fig = go.Figure(go.Bar(x=xs, y=df[col], marker_color="#2563eb", text=[fmt(v) for v in df[col]],
                                   textposition="outside", hovertemplate="%{x}: %{y:.4g}<extra></extra>"))
        else:
            fig = go.Figure(go.Scatter(x=xs, y=df[col], mode="lines+markers", line=dict(color="#2563eb"),
                                       hovertemplate=f"{x} %{{x}}: %{{y:.4g}}<extra></extra>"))
        fig.update_layout(title=f"Best layout: {label}", xaxis_title=x.replace("_", " "), yaxis_title=label)
        page.figure(fig, height=320)


def _capacity_chart(page: Page, go, df: pd.DataFrame) -> None:
    rate = df.attrs.get("target_rate_per_s")
    colors = ["#15803d" if m else "#b91c1c" for m in df.get("meets_load", pd.Series(False, index=df.index)).fillna(False)]
    fig = go.Figure(go.Bar(x=df["budget_devices"].astype(str), y=df["capacity_rps"].fillna(0.0), marker_color=colors,
                           hovertemplate="%{x} devices: %{y:.3g} requests/s<extra></extra>"))
    if rate:
        fig.add_hline(y=rate, line=dict(color="#111827", dash="dash"),
                      annotation=dict(text=f"target {fmt(rate)} requests/s"))
    fig.update_layout(title="Capacity of the best layout per device budget (green: serves the target)",
                      xaxis_title="device budget", yaxis_title="requests/s within the SLOs")
    page.figure(fig, height=360)


def whatif_report(kind: str, df: pd.DataFrame, plan) -> str:
    """The HTML text of a what-if run's report (``plan``: the loaded PlanConfig)."""
    import plotly.graph_objects as go

    titles = {"capacity": "capacity", "sweep": f"sweep of {df.columns[0] if len(df.columns) else ''}",
              "compare": "hardware comparison"}
    page = Page(f"clustersim what-if: {titles[kind]} ({plan.name})",
                f"{plan.model}; SLO TTFT <= {fmt(plan.slo.ttft_ms)} ms, TPOT <= {fmt(plan.slo.tpot_ms)} ms; "
                f"{df.attrs.get('profile', '')}")
    page.card("variants", int(len(df)))
    if kind == "capacity":
        page.card("fewest devices", df.attrs.get("fewest_devices") or "none")
        page.section("Answer")
        page.html(f"<p class=answer>{esc(capacity_sentence(df, plan))}</p>")
        _capacity_chart(page, go, df)
    else:
        if "tokens_per_s_per_device" in df and df["tokens_per_s_per_device"].notna().any():
            i = df["tokens_per_s_per_device"].idxmax()
            page.card("best tokens/s per device", f"{fmt(df.loc[i, 'tokens_per_s_per_device'])} at {df.iloc[i, 0]}")
        page.section("Best layout per variant", "Each point is the planner's best layout for that value "
                     "(analytic ranking).")
        _charts(page, go, kind, df)
    page.section("Every variant")
    cols = [c for c in df.columns if c not in ("plan_wall_s",)]
    page.table(df.to_dict("records"), [(c, c.replace("_", " ")) for c in cols], left=("layout", "reason"),
               classes={"layout": lambda r: "w", "reason": lambda r: "w"})
    return page.render()
