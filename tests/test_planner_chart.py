"""planner.chart: the Pareto PNG drawn with Pillow (points, front, axes, legend), and its helper process."""

from __future__ import annotations

import io

import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from planner.chart import COLORS, nice_ticks, scatter_png  # noqa: E402
from planner.plot import draw_pareto  # noqa: E402


def _img(png: bytes) -> Image.Image:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(png)).convert("RGB")


def _pixels(img: Image.Image) -> list:
    flat = getattr(img, "get_flattened_data", None)  # Pillow >= 12.1; getdata() is deprecated there
    return list(flat() if flat else img.getdata())


def _near(px, rgb, tol=40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(px, rgb))


def _count(img: Image.Image, rgb, box=None, tol=40) -> int:
    part = img.crop(box) if box else img
    return sum(1 for px in _pixels(part) if _near(px, rgb, tol))


def _blend(color: str, alpha: float) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return tuple(round(alpha * int(c[i:i + 2], 16) + (1 - alpha) * 255) for i in (0, 2, 4))


def test_nice_ticks_are_round_and_inside():
    assert nice_ticks(17.1, 81.9) == [20, 30, 40, 50, 60, 70, 80]
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(42.0, 660.0) == [100, 200, 300, 400, 500, 600]
    assert nice_ticks(-0.03, 0.021) == [-0.03, -0.02, -0.01, 0.0, 0.01, 0.02]
    assert nice_ticks(5.0, 5.0) == [5.0]


def test_pareto_figure_has_the_points_front_axes_and_legend():
    data = {"modes": {"colocated": [[20.0, 30.0, 40.0], [100.0, 120.0, 110.0]],
                      "disaggregated": [[50.0 + i % 30 for i in range(300)], [300.0 + 7 * (i % 40) for i in range(300)]]},
            "front": [[40.0, 60.0, 79.0], [600.0, 450.0, 170.0]], "title": "t: m, TTFT<=2000 ms, TPOT<=50 ms"}
    png = draw_pareto(data)
    assert png == draw_pareto(data)  # deterministic
    img = _img(png)
    assert img.size == (840, 600)  # 7 x 5 in at 120 dpi, as before
    assert _count(img, _blend(COLORS[0], 0.35), tol=12) > 20  # colocated dots (blue, translucent)
    assert _count(img, _blend(COLORS[1], 0.35), tol=12) > 200  # disaggregated dots (orange)
    no_front = _img(draw_pareto({**data, "front": [[], []]}))
    assert _count(img, (0, 0, 0), tol=60) > _count(no_front, (0, 0, 0), tol=60) + 300  # the front's line
    other = _img(draw_pareto({**data, "title": "another title"}))  # the title is drawn at the top
    diff = [i for i, (a, b) in enumerate(zip(_pixels(img), _pixels(other))) if a != b]
    assert diff and max(diff) // 840 < 40


def test_legend_goes_where_it_covers_fewest_points():
    right = [(60.0 + i % 40, 100.0 + 5 * (i // 40)) for i in range(800)]  # the right half is full
    png = scatter_png([("a", [20.0] + [x for x, _ in right], [100.0] + [y for _, y in right])], None,
                      "x", "y", "title")
    img = _img(png)
    w, h = img.size
    frame = (204, 204, 204)  # the legend box's outline
    assert _count(img, frame, (0, 0, w // 2, h), tol=6) > _count(img, frame, (w // 2, 0, w, h), tol=6)


def test_plot_pareto_needs_no_matplotlib():
    import sys

    from planner import chart, plot  # noqa: F401

    data = {"modes": {"disaggregated": [[1.0, 2.0], [3.0, 4.0]]}, "front": [[1.0], [3.0]], "title": "t"}
    before = "matplotlib" in sys.modules
    draw_pareto(data)
    assert ("matplotlib" in sys.modules) == before


def test_drawn_without_matplotlibs_font_and_with_a_bitmap_font(monkeypatch):
    from PIL import ImageFont

    from planner import chart

    data = {"modes": {"disaggregated": [[1.0, 2.0, 3.0], [3.0, 4.0, 2.0]]}, "front": [[1.0, 2.0], [3.0, 4.0]],
            "title": "t"}
    monkeypatch.setattr(chart, "_matplotlib_font", lambda: None)  # no matplotlib: Pillow's font
    assert _img(draw_pareto(data)).size == (840, 600)
    bitmap = getattr(ImageFont, "load_default_imagefont", None)
    if bitmap is not None:  # Pillow's bitmap font (no anchors, no sizes): the text is still placed
        monkeypatch.setattr(chart, "_font", lambda points: bitmap())
        assert _img(draw_pareto(data)).size == (840, 600)


def test_non_finite_points_are_left_out():
    data = {"modes": {"disaggregated": [[1.0, float("nan"), 3.0, float("inf")], [3.0, 4.0, 2.0, 1.0]]},
            "front": [[1.0, 3.0], [3.0, 2.0]], "title": "t"}
    clean = {"modes": {"disaggregated": [[1.0, 3.0], [3.0, 2.0]]}, "front": [[1.0, 3.0], [3.0, 2.0]], "title": "t"}
    assert draw_pareto(data) == draw_pareto(clean)
    assert _img(draw_pareto({"modes": {"x": [[float("nan")], [1.0]]}, "front": [[], []], "title": "t"})).size == (840, 600)
