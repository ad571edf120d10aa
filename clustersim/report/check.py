"""The report of ``clustersim check --report``: how far to trust the model.

The error of every published check by family (coloured by status), our GPU ground truth as
predicted against measured time (fit and holdout), the error per family and split, the
known gaps with the mechanism each lacks, and every check in a table.
"""

from __future__ import annotations

import numpy as np

from clustersim.report.page import Page, esc, fmt

__all__ = ["check_report"]

STATUS_COLORS = {"ok": "#15803d", "known gap": "#d97706", "fail": "#b91c1c"}
STATUS_CSS = {"ok": "s-ok", "known gap": "s-gap", "fail": "s-fail"}


def _published_chart(page: Page, go, t) -> None:
    pub = t[~t["family"].str.startswith("measured.")].copy()
    pub = pub[pub["error"].notna()]
    clip = 1.0
    pub["shown"] = (pub["error"] * 100).clip(-clip * 100, clip * 100)
    fig = go.Figure()
    for status, g in pub.groupby("status", sort=False):
        fig.add_trace(go.Scatter(
            x=g["shown"], y=g["family"], mode="markers", name=status,
            marker=dict(color=STATUS_COLORS[status], size=9, opacity=0.75, line=dict(width=0.5, color="#fff")),
            text=[f"{r.id}<br>published {fmt(r.published)} {esc(r.unit)}, predicted {fmt(r.predicted)}<br>"
                  f"error {r.error:+.1%}, tolerance {r.tolerance} ({r.role})" for r in g.itertuples()],
            hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(title="Published references: error of each prediction (%, shown within ±100%)",
                      xaxis_title="predicted / published - 1 (%)", yaxis=dict(autorange="reversed"),
                      xaxis=dict(zeroline=True, zerolinecolor="#111827"))
    page.figure(fig, height=max(360, 34 * pub["family"].nunique() + 140))


def _measured_chart(page: Page, go, t) -> None:
    m = t[t["family"].str.startswith("measured.")]
    if not len(m):
        return
    page.grid()
    fig = go.Figure()
    for (fam, role), g in m.groupby(["family", "role"], sort=True):
        fig.add_trace(go.Scatter(
            x=g["published"], y=g["predicted"], mode="markers", name=f"{fam.removeprefix('measured.')} ({role})",
            marker=dict(symbol="circle" if role == "fit" else "diamond-open", size=7, opacity=0.8),
            text=[f"{r.id}<br>measured {fmt(r.published)} ms, predicted {fmt(r.predicted)} ms ({r.error:+.1%}), "
                  f"{r.status}" for r in g.itertuples()], hovertemplate="%{text}<extra></extra>"))
    lo, hi = float(m["published"].min()) * 0.7, float(m["published"].max()) * 1.4
    for k, dash in ((1.0, "solid"), (1.15, "dot"), (1 / 1.15, "dot")):
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * k, hi * k], mode="lines", showlegend=False, hoverinfo="skip",
                                 line=dict(color="#9aa5b1", dash=dash, width=1)))
    fig.update_layout(title="Our H200 ground truth: predicted vs measured (ms; dotted ±15%)",
                      xaxis=dict(type="log", title="measured ms"), yaxis=dict(type="log", title="predicted ms"))
    page.figure(fig, height=460)
    fams = sorted(m["family"].unique())
    fig = go.Figure()
    for role, color in (("fit", "#2563eb"), ("holdout", "#d97706")):
        med = [float(np.median(np.abs(m[(m.family == f) & (m.role == role)]["error"]))) * 100
               if len(m[(m.family == f) & (m.role == role)]) else None for f in fams]
        fig.add_trace(go.Bar(x=[f.removeprefix("measured.") for f in fams], y=med, name=role, marker_color=color))
    fig.add_hline(y=15, line=dict(color="#b91c1c", dash="dash"), annotation=dict(text="tolerance 15%"), annotation_position="top left")
    fig.update_layout(barmode="group", title="Median |error| per family, fit vs holdout (%)", yaxis_title="%")
    page.figure(fig, height=460)


def check_report(run) -> str:
    """The HTML text of a ``clustersim check`` run's report."""
    import plotly.graph_objects as go

    t = run.table()
    n = run.counts
    page = Page("clustersim check: predictions against published figures and our GPU ground truth",
                f"{len(t)} checks in {sum(run.seconds.values()):.1f} s; "
                + ("no check fails" if run.passed else f"{n['fail']} FAIL"))
    page.card("ok", n["ok"])
    page.card("known gap", n["known gap"])
    page.card("fail", n["fail"])
    page.card("published checks", int((~t["family"].str.startswith("measured.")).sum()))
    page.card("ground-truth points", int(t["family"].str.startswith("measured.").sum()))
    page.section("Published references", "Each point is one published figure predicted by the model at the "
                 "published setting; hover for the figure, the prediction and the tolerance.")
    _published_chart(page, go, t)
    page.section("Our GPU ground truth", "Whole-model steps and layers measured on one H200, predicted from "
                 "per-operator microbenchmarks (the profile never holds these steps). Fit: points the cost model was "
                 "tuned against; holdout: points kept out.")
    _measured_chart(page, go, t)
    gaps = {}
    for c in run.checks:
        if c.status == "known gap":
            gaps.setdefault(c.family if c.family.startswith("measured.") else c.id, c.known_gap)
    if gaps:
        page.section("Known gaps", "Where the model misses and the mechanism it lacks (from the reference data).")
        page.table([{"what": k, "mechanism": v} for k, v in gaps.items()], [("what", "check"), ("mechanism", "mechanism")],
                   left=("what", "mechanism"), scroll=False)
    summ = run.summary()
    for col in ("median_abs_error", "worst_abs_error"):
        summ[col] = [("–" if v is None or v != v else f"{v:.1%}") for v in summ[col]]
    page.section("Per family and role")
    page.table(summ.to_dict("records"), [("family", "family"), ("role", "role"), ("checks", "checks"), ("ok", "ok"),
                                         ("known gap", "known gap"), ("fail", "fail"),
                                         ("median_abs_error", "median |error|"), ("worst_abs_error", "worst |error|")],
               left=("family", "role"))
    page.section("Every check", "Published vs predicted in the source's unit; error = predicted / published - 1.")
    recs = t.assign(err=[("–" if e != e or e is None else f"{e:+.1%}") for e in t["error"]]).to_dict("records")
    page.table(recs, [("status", "status"), ("family", "family"), ("id", "id"), ("role", "role"),
                      ("published", "published"), ("predicted", "predicted"), ("err", "error"),
                      ("tolerance", "tolerance"), ("unit", "unit")],
               left=("family", "id", "unit", "status"), classes={"status": lambda r: STATUS_CSS[r["status"]]})
    page.section("Sources")
    src = t.drop_duplicates(["family", "source"])[["family", "source"]].to_dict("records")
    page.table(src, [("family", "family"), ("source", "source")], left=("family", "source"), scroll=False)
    for name, why in run.not_run.items():
        page.html(f"<p>not run: {esc(name)}: {esc(why)}</p>")
    return page.render()
