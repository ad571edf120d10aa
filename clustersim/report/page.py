"""One self-contained HTML page: headline cards, sections of plotly figures, tables and text.

``Page.render()`` returns a single HTML string with plotly.js inlined (no network, opens
offline). Every figure is stored as JSON in the page and drawn by ``Plotly.newPlot`` on load;
when all are drawn the body gets ``data-plots-rendered`` (the count) and ``data-report-ready``;
any script error lands in ``data-report-errors`` (the browser test reads these).
plotly is the ``report`` extra, imported lazily (``require_plotly``).
"""

from __future__ import annotations

import html
import math
from typing import Any, Iterable, Sequence

__all__ = ["Page", "require_plotly", "esc", "fmt"]

PLOTLY_MISSING = "--report needs plotly: pip install 'clustersim[report]'"


def require_plotly() -> Any:
    """The plotly module, or a one-line ValueError naming the extra to install."""
    try:
        import plotly
        import plotly.graph_objects  # noqa: F401
    except ImportError:
        raise ValueError(PLOTLY_MISSING) from None
    return plotly


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table or card: thousands separators, ``digits`` significant figures."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 10 ** digits:
            return f"{value:,.0f}"
        if abs(value) < 1e-3:
            return f"{value:.3g}"
        return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


CSS = """
:root{--fg:#1f2933;--muted:#616e7c;--line:#e4e7eb;--bg:#f5f7fa;--accent:#2563eb;--ok:#15803d;--gap:#b45309;
--fail:#b91c1c}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);
background:var(--bg)}
header{background:#fff;border-bottom:1px solid var(--line);padding:18px 32px}
header h1{margin:0 0 4px;font-size:22px}
header .sub{color:var(--muted)}
main{max-width:1360px;margin:0 auto;padding:8px 32px 40px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;margin:18px 0;padding:14px 20px}
section h2{margin:0 0 4px;font-size:17px}
section p.intro{margin:0 0 10px;color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin:14px 0 0}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.card .v{font-size:20px;font-weight:600}
.card .k{color:var(--muted);font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:12px}
.fig{min-height:340px}
.cap{color:var(--muted);font-size:12px;margin:2px 6px 8px}
table{border-collapse:collapse;width:100%;font-size:12.5px}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{background:#f9fafb;position:sticky;top:0}
td.l,th.l{text-align:left;white-space:normal;min-width:110px;max-width:560px}
td.w{min-width:320px}
tr:nth-child(even) td{background:#fafbfc}
.scroll{max-height:520px;overflow:auto;border:1px solid var(--line);border-radius:6px}
pre{background:#f9fafb;border:1px solid var(--line);border-radius:6px;padding:10px;overflow:auto;font-size:12px;
max-height:520px}
.s-ok{color:var(--ok);font-weight:600}.s-gap{color:var(--gap);font-weight:600}.s-fail{color:var(--fail);font-weight:700}
.answer{font-size:16px;padding:10px 14px;border-left:4px solid var(--accent);background:#eff6ff;border-radius:4px}
footer{color:var(--muted);font-size:12px;text-align:center;padding:0 0 24px}
"""

BOOT = """
(function(){
  var body=document.body, errors=[];
  function fail(msg){errors.push(String(msg));body.setAttribute('data-report-errors',errors.join(' | '));}
  window.addEventListener('error',function(e){fail(e.message||e);});
  window.addEventListener('unhandledrejection',function(e){fail(e.reason||'promise rejected');});
  var specs=document.querySelectorAll('script[type="application/json"][data-fig]'), jobs=[];
  for(var i=0;i<specs.length;i++){
    try{
      var s=specs[i], spec=JSON.parse(s.textContent), div=document.getElementById(s.getAttribute('data-fig'));
      jobs.push(Plotly.newPlot(div,spec.data,spec.layout,{responsive:true,displaylogo:false,displayModeBar:false}));
    }catch(e){fail(e.message||e);}
  }
  Promise.all(jobs).then(function(){
    var drawn=0, plots=document.querySelectorAll('.js-plotly-plot');
    for(var j=0;j<plots.length;j++){ if(plots[j].querySelector('.main-svg')) drawn++; }
    body.setAttribute('data-plots-expected',String(specs.length));
    body.setAttribute('data-plots-rendered',String(drawn));
    body.setAttribute('data-report-ready','1');
  },function(e){fail(e&&e.message||e);});
})();
"""


class Page:
    """A report under construction: ``card``/``section``/``figure``/``table``/``pre``, then ``render``."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title, self.subtitle = title, subtitle
        self._cards: list[tuple[str, str]] = []
        self._body: list[str] = []
        self._figs = 0
        self._grid_open = False

    def card(self, label: str, value: Any) -> None:
        self._cards.append((label, value if isinstance(value, str) else fmt(value)))

    def section(self, title: str, intro: str = "") -> None:
        self._close()
        self._body.append(f"<section><h2>{esc(title)}</h2>" + (f"<p class=intro>{intro}</p>" if intro else ""))

    def grid(self) -> None:
        """Lay the following figures side by side (until the next section)."""
        self._close_grid()
        self._body.append("<div class=grid>")
        self._grid_open = True

    def figure(self, fig: Any, caption: str = "", height: int = 360) -> None:
        import plotly.io as pio

        fig.update_layout(template="plotly_white", height=height, margin=dict(l=60, r=20, t=46, b=50),
                          font=dict(size=12), title_font=dict(size=14), legend=dict(font=dict(size=11)))
        self._figs += 1
        fid = f"fig{self._figs}"
        spec = pio.to_json(fig, validate=False, pretty=False, remove_uids=True)
        spec = spec.replace("</", "<\\/")  # never close the script element early
        self._body.append(f"<div><div id={fid} class=fig style='height:{height}px'></div>"
                          + (f"<div class=cap>{caption}</div>" if caption else "")
                          + f"<script type='application/json' data-fig='{fid}'>{spec}</script></div>")

    def table(self, rows: Sequence[dict], columns: Sequence[tuple[str, str]], left: Iterable[str] = (),
              classes: dict | None = None, scroll: bool = True) -> None:
        """``columns``: (key, header); ``left``: keys aligned left; ``classes``: key -> fn(row) -> css class."""
        left, classes = set(left), classes or {}
        head = "".join(f"<th class={'l' if k in left else 'r'}>{esc(h)}</th>" for k, h in columns)
        body = []
        for r in rows:
            cells = []
            for k, _ in columns:
                v = r.get(k)
                css = ("l " if k in left else "") + (classes[k](r) if k in classes else "")
                text = v if isinstance(v, str) else fmt(v)
                cells.append(f"<td class='{css.strip()}'>{esc(text)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        t = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        self._body.append(f"<div class=scroll>{t}</div>" if scroll else t)

    def html(self, fragment: str) -> None:
        self._body.append(fragment)

    def pre(self, text: str) -> None:
        self._body.append(f"<pre>{esc(text)}</pre>")

    def _close_grid(self) -> None:
        if self._grid_open:
            self._body.append("</div>")
            self._grid_open = False

    def _close(self) -> None:
        self._close_grid()
        if self._body and not self._body[-1].endswith("</section>"):
            self._body.append("</section>")

    def render(self) -> str:
        """The whole page; deterministic for the same content (no dates, no random ids)."""
        from plotly.offline import get_plotlyjs

        self._close()
        cards = "".join(f"<div class=card><div class=v>{esc(v)}</div><div class=k>{esc(k)}</div></div>"
                        for k, v in self._cards)
        return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
                "<meta name=viewport content='width=device-width,initial-scale=1'>"
                f"<title>{esc(self.title)}</title><style>{CSS}</style>"
                f"<script>{get_plotlyjs()}</script></head><body data-report-ready=0>"
                f"<header><h1>{esc(self.title)}</h1><div class=sub>{esc(self.subtitle)}</div>"
                f"{f'<div class=cards>{cards}</div>' if cards else ''}</header>"
                f"<main>{''.join(self._body)}</main>"
                "<footer>clustersim report: one self-contained file (plotly.js inlined), no network needed</footer>"
                f"<script>{BOOT}</script></body></html>")

