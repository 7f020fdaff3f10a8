"""A report page: sections of tables, figures and cards in one self-contained HTML file.

The page runs no script: its Content-Security-Policy allows only inline styles and `data:` images, so even text
that slipped past escaping could not execute or fetch anything. The numbers a test (or a person's script) checks are
embedded as JSON in `<script type="application/json" id="mmselect-data">`, with `<`, `>` and `&` written as
`\\u003c`... so no record text can close that element.
"""
from __future__ import annotations

import html as _html
import json
import math
from dataclasses import dataclass, field

from selector.app.report.cards import esc

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 18px 40px;color:#222}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}nav a{margin-right:12px}
table.t{border-collapse:collapse;margin:6px 0}table.t td,table.t th{border:1px solid #ddd;padding:2px 8px;
text-align:left}table.t td.n{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:8px 0}figure img{max-width:100%}figcaption{color:#555;font-size:13px;max-width:760px}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}.cell{max-width:560px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:10px}
.card{border:1px solid #ccc;border-radius:6px;padding:6px;font-size:12px;overflow-wrap:anywhere;overflow:hidden}
.card .thumbs img{width:96px;height:96px;object-fit:contain;background:#eee;margin-right:4px;image-rendering:pixelated}
.card .ph{display:inline-block;width:96px;height:96px;background:#f4e0e0;color:#900;font-size:11px;
text-align:center;vertical-align:top;overflow:hidden;margin-right:4px}
.card .rid{font-family:monospace;font-weight:bold}.card .note{color:#a60}.card table.sc td,.card table.sc th{
padding:0 6px 0 0;font-weight:normal;text-align:left}.q,.a{margin:3px 0;white-space:pre-wrap}
.empty,.muted{color:#777}
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass
class Section:
    """One `<h2>` section; `parts` are markup already escaped by this module's helpers."""

    key: str  # the element id (also what tests look for)
    title: str
    parts: list[str] = field(default_factory=list)

    def add(self, markup: str) -> "Section":
        self.parts.append(markup)
        return self


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:.3e}"
    return str(v)


def table(header: list[str], rows: list[list], key: str = "") -> str:
    """An HTML table; every cell is escaped (numbers right-aligned and formatted)."""
    attr = f' id="{esc(key)}"' if key else ""
    head = "".join(f"<th>{esc(h, 120)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{fmt(c)}</td>' if isinstance(c, (int, float)) and not isinstance(c, bool)
                         else f"<td>{esc(fmt(c), 300)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="t"{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def figure(uri: str, caption: str, alt: str) -> str:
    """A plot with the one sentence that says what it shows."""
    return (f'<figure><img src="{uri}" alt="{esc(alt)}"><figcaption>{esc(caption, 600)}</figcaption></figure>')


def heading(text: str) -> str:
    return f"<h3>{esc(text, 200)}</h3>"


def paragraph(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{esc(text, 2000)}</p>"


def data_block(data: dict) -> str:
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, default=str, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="mmselect-data">{text}</script>'


def page(title: str, subtitle: str, sections: list[Section], data: dict) -> str:
    nav = "".join(f'<a href="#{esc(s.key)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.key)}"><h2>{esc(s.title)}</h2>{"".join(s.parts)}</section>'
                   for s in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_html.escape(CSP)}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1>{paragraph(subtitle, 'muted')}<nav>{nav}</nav>{body}{data_block(data)}"
            f"</body></html>")


def read_data(text: str) -> dict:
    """The JSON block of a page written by `page` (for tests and scripts)."""
    start = text.index('<script type="application/json" id="mmselect-data">')
    start = text.index(">", start) + 1
    return json.loads(text[start:text.index("</script>", start)])
