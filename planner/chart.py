"""A scatter chart drawn straight to PNG with Pillow: the plan's Pareto figure without matplotlib.

``scatter_png`` draws what ``planner.plot.draw_pareto`` used to draw with matplotlib (points
per series with alpha, a marked line, axes with round ticks and a light grid, axis labels, a
title and a legend placed where it covers the fewest points), in ~0.05 s of CPU instead of
matplotlib's ~0.6 s (its import and its artists). The text is DejaVu Sans (matplotlib's own
font file when matplotlib is installed, found without importing it; else Pillow's default
font). Drawn at ``_SS`` times the size and scaled down, so edges are smooth.
"""

from __future__ import annotations

import importlib.util
import io
import math
from pathlib import Path

__all__ = ["scatter_png", "nice_ticks", "COLORS"]

#: matplotlib's default colour cycle ("tab10"), in its order
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
#: supersampling factor
_SS = 2
_DPI = 120


def _px(points: float) -> int:
    """Typographic points as pixels of the supersampled canvas."""
    return max(1, round(points * _DPI / 72.0 * _SS))


def _matplotlib_font() -> Path | None:
    """matplotlib's DejaVu Sans file, found without importing matplotlib (None without it)."""
    spec = importlib.util.find_spec("matplotlib")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return path
    return None


def _font(points: float):
    from PIL import ImageFont

    path = _matplotlib_font()
    if path is not None:
        return ImageFont.truetype(str(path), _px(points))
    try:
        return ImageFont.load_default(size=_px(points))
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def nice_ticks(lo: float, hi: float, most: int = 9) -> list[float]:
    """Round tick values within [lo, hi]: a step of 1, 2, 2.5 or 5 times a power of ten, the
    smallest giving at most ``most`` ticks."""
    span = hi - lo
    if not span > 0 or not math.isfinite(span):
        return [lo]
    mag = 10.0 ** math.floor(math.log10(span / most))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0, 20.0):
        step = m * mag
        first = math.ceil(lo / step - 1e-9)
        last = math.floor(hi / step + 1e-9)
        if last - first + 1 <= most:
            return [round(k * step, 12) for k in range(first, last + 1)]
    return [lo, hi]


def _label(v: float) -> str:
    return f"{v:.6g}"


def _limits(xs: list[float]) -> tuple[float, float]:
    """Data limits with matplotlib's 5% margins."""
    lo, hi = min(xs), max(xs)
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(lo) * 0.05, 0.5)
    return lo - pad, hi + pad


def _finite(xs, ys) -> tuple[list[float], list[float]]:
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    return [x for x, _ in pairs], [y for _, y in pairs]


def _rgba(color: str, alpha: float) -> tuple[int, int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), round(255 * alpha)


def _text_size(draw, text: str, font) -> tuple[int, int]:
    """(width of ``text``, the font's line height): heights never depend on the text."""
    box = draw.textbbox((0, 0), text, font=font)
    metrics = getattr(font, "getmetrics", None)
    return box[2] - box[0], (sum(metrics()) if metrics else draw.textbbox((0, 0), "Ag", font=font)[3])


def _text(draw, xy: tuple[float, float], text: str, font, anchor: str = "lt") -> None:
    """``text`` in black placed by ``anchor``: horizontal l/m/r, vertical t/m/d (top, middle,
    bottom of the font's line). Placed here rather than by Pillow's anchors, which a bitmap
    font (Pillow's fallback) does not support."""
    w, h = _text_size(draw, text, font)
    x = xy[0] - {"l": 0.0, "m": w / 2, "r": float(w)}[anchor[0]]
    y = xy[1] - {"t": 0.0, "m": h / 2, "d": float(h)}[anchor[1]]
    draw.text((x - draw.textbbox((0, 0), text, font=font)[0], y), text, fill="black", font=font)


def scatter_png(series: list[tuple[str, list[float], list[float]]], line: tuple[str, list[float], list[float]] | None,
                xlabel: str, ylabel: str, title: str, size_in: tuple[float, float] = (7.0, 5.0)) -> bytes:
    """PNG bytes of a scatter chart: ``series`` (label, xs, ys) as translucent dots in
    ``COLORS`` order, ``line`` (label, xs, ys) as a black line with dots over them."""
    from PIL import Image, ImageDraw

    series = [(lab, *_finite(xs, ys)) for lab, xs, ys in series]  # as matplotlib, NaN and inf points left out
    if line is not None:
        line = (line[0], *_finite(line[1], line[2]))
    w, h = round(size_in[0] * _DPI) * _SS, round(size_in[1] * _DPI) * _SS
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img, "RGBA")
    tick_font, label_font, title_font, legend_font = _font(10), _font(10), _font(9), _font(8)
    all_x = [x for _l, xs, _y in series for x in xs] + (list(line[1]) if line else [])
    all_y = [y for _l, _x, ys in series for y in ys] + (list(line[2]) if line else [])
    if not all_x:
        all_x, all_y = [0.0, 1.0], [0.0, 1.0]
    (x0, x1), (y0, y1) = _limits(all_x), _limits(all_y)
    xt, yt = nice_ticks(x0, x1), nice_ticks(y0, y1)
    ylabels = [_label(v) for v in yt]
    tw = max(_text_size(draw, s, tick_font)[0] for s in ylabels)
    th = _text_size(draw, "0", tick_font)[1]
    lh = _text_size(draw, xlabel + ylabel, label_font)[1]
    left = _px(6) + lh + _px(8) + tw + _px(6)
    right = w - _px(10)
    top = _px(8) + _text_size(draw, title, title_font)[1] + _px(10)
    bottom = h - (_px(6) + lh + _px(8) + th + _px(8))

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * (right - left)

    def sy(v: float) -> float:
        return bottom - (v - y0) / (y1 - y0) * (bottom - top)

    grid, tick = (176, 176, 176, 77), _px(3.5)
    for v, s in zip(xt, map(_label, xt)):
        X = sx(v)
        draw.line([(X, top), (X, bottom)], fill=grid, width=_px(0.8))
        draw.line([(X, bottom), (X, bottom + tick)], fill="black", width=_px(0.8))
        _text(draw, (X, bottom + tick + _px(3.5)), s, tick_font, "mt")
    for v, s in zip(yt, ylabels):
        Y = sy(v)
        draw.line([(left, Y), (right, Y)], fill=grid, width=_px(0.8))
        draw.line([(left - tick, Y), (left, Y)], fill="black", width=_px(0.8))
        _text(draw, (left - tick - _px(3.5), Y), s, tick_font, "rm")
    r = _px(1.7)
    for i, (_label_, xs, ys) in enumerate(series):
        fill = _rgba(COLORS[i % len(COLORS)], 0.35)
        for x, y in zip(xs, ys):
            X, Y = sx(x), sy(y)
            draw.ellipse([X - r, Y - r, X + r, Y + r], fill=fill)
    if line and line[1]:
        pts = [(sx(x), sy(y)) for x, y in zip(line[1], line[2])]
        draw.line(pts, fill="black", width=_px(1.5), joint="curve")
        m = _px(1.5)
        for X, Y in pts:
            draw.ellipse([X - m, Y - m, X + m, Y + m], fill="black")
    draw.rectangle([left, top, right, bottom], outline="black", width=_px(0.8))
    _text(draw, ((left + right) / 2, _px(8)), title, title_font, "mt")
    _text(draw, ((left + right) / 2, h - _px(6)), xlabel, label_font, "md")
    _vertical_text(img, ylabel, label_font, _px(6), (top + bottom) // 2)
    entries = [(lab, COLORS[i % len(COLORS)], False) for i, (lab, _x, _y) in enumerate(series)]
    if line and line[1]:
        entries.append((line[0], "#000000", True))
    _legend(draw, entries, legend_font, (left, top, right, bottom),
            [(sx(x), sy(y)) for x, y in zip(all_x, all_y)])
    img = img.resize((w // _SS, h // _SS), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", dpi=(_DPI, _DPI))
    return buf.getvalue()


def _vertical_text(img, text: str, font, x: int, yc: int) -> None:
    """``text`` rotated 90 degrees, its top at ``x``, centred on ``yc``."""
    from PIL import Image, ImageDraw

    d = ImageDraw.Draw(img)
    tw, th = _text_size(d, text, font)
    box = d.textbbox((0, 0), text, font=font)
    layer = Image.new("L", (tw + 4, th + 4), 0)
    ImageDraw.Draw(layer).text((2 - box[0], 2), text, fill=255, font=font)
    layer = layer.rotate(90, expand=True)
    img.paste((0, 0, 0), (x, yc - layer.size[1] // 2), layer)


def _legend(draw, entries: list[tuple[str, str, bool]], font, axes: tuple, points: list[tuple[float, float]]) -> None:
    """The legend box in the axes corner (or edge middle) that covers the fewest points."""
    left, top, right, bottom = axes
    pad, gap, mark = _px(4), _px(3), _px(20)
    th = max(_text_size(draw, lab, font)[1] for lab, _c, _l in entries)
    bw = pad * 3 + mark + max(_text_size(draw, lab, font)[0] for lab, _c, _l in entries)
    bh = pad * 2 + len(entries) * th + (len(entries) - 1) * gap * 2
    inset = _px(5)
    xs = (right - inset - bw, left + inset, (left + right - bw) / 2)
    ys = (top + inset, bottom - inset - bh, (top + bottom - bh) / 2)
    spots = [(xs[0], ys[0]), (xs[1], ys[0]), (xs[1], ys[1]), (xs[0], ys[1]), (xs[0], ys[2]), (xs[1], ys[2]),
             (xs[2], ys[1]), (xs[2], ys[0]), (xs[2], ys[2])]  # matplotlib's 'best' order

    def covered(spot) -> int:
        bx, by = spot
        return sum(1 for X, Y in points if bx <= X <= bx + bw and by <= Y <= by + bh)

    bx, by = min(spots, key=covered)  # the first of the least covered
    draw.rounded_rectangle([bx, by, bx + bw, by + bh], radius=_px(2), fill=(255, 255, 255, 204),
                           outline=(204, 204, 204, 255), width=_px(0.8))
    y = by + pad
    for lab, color, is_line in entries:
        cy = y + th / 2
        cx = bx + pad + mark / 2
        if is_line:
            draw.line([(bx + pad, cy), (bx + pad + mark, cy)], fill=color, width=_px(1.5))
            m = _px(1.5)
        else:
            m = _px(1.6)
        draw.ellipse([cx - m, cy - m, cx + m, cy + m], fill=_rgba(color, 1.0 if is_line else 0.5))
        _text(draw, (bx + pad * 2 + mark, cy), lab, font, "lm")
        y += th + gap * 2
