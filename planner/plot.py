"""PNG plots of planner results: the Pareto figure with Pillow (``planner.chart``), the what-if
sweep and comparison with matplotlib (imported lazily; the ``plot`` extra, which brings Pillow).

Each function draws one figure and returns it as PNG bytes; the facade writes them
(``clustersim.outputs``). Nothing here is imported by ``planner.plan``.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["plot_pareto", "pareto_data", "draw_pareto", "ready", "plot_sweep", "plot_compare"]


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise ValueError("plots need the plot extra: pip install 'clustersim[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ready() -> None:
    """Import what ``draw_pareto`` needs now (Pillow; ``clustersim.plotproc``'s helper does it
    while a plan runs)."""
    import PIL.Image  # noqa: F401
    import PIL.ImageDraw  # noqa: F401
    import PIL.ImageFont  # noqa: F401


def _png(plt, fig) -> bytes:
    """``fig`` as PNG bytes (120 dpi); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def pareto_data(result, max_points: int = 5000) -> dict:
    """What ``plot_pareto`` draws, as plain lists (JSON): per mode the first ``max_points``
    feasible layouts' (tokens/s per user, tokens/s per device), the Pareto front, the title."""
    t = result.table
    feas = t.iloc[t["feasible"].to_numpy(dtype=bool).nonzero()[0][:max_points]]
    modes = {str(mode): [g["tokens_per_s_per_user"].tolist(), g["tokens_per_s_per_device"].tolist()]
             for mode, g in feas.groupby("mode")}
    p = result.pareto
    front = [[], []]
    if len(p):
        p = p.sort_values("tokens_per_s_per_user")
        front = [p["tokens_per_s_per_user"].tolist(), p["tokens_per_s_per_device"].tolist()]
    plan = result.plan
    title = f"{plan.name}: {plan.model}, TTFT<={plan.slo.ttft_ms:g} ms, TPOT<={plan.slo.tpot_ms:g} ms"
    return {"modes": modes, "front": front, "title": title}


def draw_pareto(data: dict) -> bytes:
    """``pareto_data``'s figure as PNG bytes, drawn with Pillow (``planner.chart``: no
    matplotlib; ``clustersim.plotproc`` draws it in a helper process)."""
    from planner.chart import scatter_png

    front = data["front"]
    return scatter_png([(mode, x, y) for mode, (x, y) in data["modes"].items()],
                       ("Pareto front", front[0], front[1]) if front[0] else None,
                       "output tokens/s per user", "output tokens/s per device", data["title"])


def plot_pareto(result, max_points: int = 5000) -> bytes:
    """Feasible layouts and the Pareto front: tokens/s per device vs tokens/s per user."""
    return draw_pareto(pareto_data(result, max_points))


def plot_sweep(df: pd.DataFrame, x: str | None = None, y: str = "tokens_per_s_per_device") -> bytes:
    """One what-if sweep: the best layout's ``y`` against the swept parameter (first column)."""
    plt = _plt()
    x = x or df.columns[0]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = df[x].astype(str) if df[x].dtype == object else df[x]
    ax.plot(xs, df[y], "o-")
    ax.set_xlabel(x)
    ax.set_ylabel(y.replace("_", " "))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(plt, fig)


def plot_compare(df: pd.DataFrame, y: str = "tokens_per_s_per_device") -> bytes:
    """Side-by-side hardware comparison as bars (``compare_hardware`` output)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = df["hardware"].astype(str) if "hardware" in df else df.index.astype(str)
    ax.bar(labels, df[y].fillna(0.0))
    ax.set_ylabel(y.replace("_", " "))
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _png(plt, fig)
