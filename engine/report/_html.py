"""HTML pieces of the report: one self-contained page, images inlined as data URIs.

Every value that reaches the page goes through ``html.escape``: segment names, feature names
and config paths are data, and data may hold markup.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Section", "card", "facts", "figure", "note", "page", "paragraph", "percent", "table"]

# Text that reads as a number (a formatted share, a signed value) is aligned like one.
_NUMERIC_TEXT = re.compile(r"[-+]?[\d,]*\.?\d+%?")

_CSS = """
:root { --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --accent: #2563eb; --warn: #b91c1c; --bg: #f9fafb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: var(--bg); }
header { background: #111827; color: #f9fafb; padding: 20px 32px 16px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #d1d5db; }
nav { position: sticky; top: 0; z-index: 1; background: white; border-bottom: 1px solid var(--line);
      padding: 8px 32px; display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 13px; }
nav a { color: var(--accent); text-decoration: none; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 32px 48px; }
section { background: white; border: 1px solid var(--line); border-radius: 8px; padding: 4px 24px 20px;
          margin: 20px 0; }
h2 { font-size: 18px; margin: 16px 0 8px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 4px; }
.card { background: white; border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 150px; }
.card .value { font-size: 20px; font-weight: 600; }
.card .label { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
table.facts th { background: none; color: var(--muted); font-weight: 500; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.flag td { color: var(--warn); font-weight: 600; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 12px; }
.note { color: var(--muted); font-style: italic; }
.grid { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: flex-start; }
code { background: #f3f4f6; padding: 0 4px; border-radius: 3px; font-size: 12px; }
"""


@dataclass
class Section:
    """One section of the report: an anchor, a title and its HTML body."""

    anchor: str
    title: str
    body: str

    def render(self) -> str:
        return f'<section id="{html.escape(self.anchor)}"><h2>{html.escape(self.title)}</h2>{self.body}</section>'


def percent(share: float | None, digits: int = 1) -> str | None:
    """A share (0..1) as a percentage, for a table cell."""
    return None if share is None else f"{100 * share:.{digits}f}%"


def _cell(value) -> tuple[str, bool]:
    if value is None:
        return "–", False
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, int):
        return f"{value:,}", True
    if isinstance(value, float):
        size = abs(value)
        text = f"{value:,.0f}" if size >= 1000 else f"{value:.1f}" if size >= 100 else f"{value:.3f}" if size >= 0.01 or value == 0 else f"{value:.3g}"
        return text, True
    text = str(value)
    return html.escape(text), bool(_NUMERIC_TEXT.fullmatch(text))


def table(headers: Sequence[str], rows: Iterable[Sequence], *, flagged: Sequence[bool] | None = None) -> str:
    """An HTML table; numbers right-aligned and formatted, ``flagged`` rows in red."""
    rows = [list(row) for row in rows]
    cells = [[_cell(value) for value in row] for row in rows]
    numeric = [bool(cells) and all(row[i][1] or row[i][0] == "–" for row in cells) for i in range(len(headers))]
    head = "".join(f'<th class="{"num" if numeric[i] else ""}">{html.escape(h)}</th>' for i, h in enumerate(headers))
    body = []
    for index, row in enumerate(cells):
        css = ' class="flag"' if flagged is not None and flagged[index] else ""
        tds = "".join(f'<td class="{"num" if numeric[i] else ""}">{text}</td>' for i, (text, _) in enumerate(row))
        body.append(f"<tr{css}>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def facts(pairs: Iterable[tuple[str, object]]) -> str:
    """A two-column table of labelled values, without a header row."""
    rows = "".join(f"<tr><th>{html.escape(label)}</th><td>{_cell(value)[0]}</td></tr>" for label, value in pairs)
    return f'<table class="facts"><tbody>{rows}</tbody></table>'


def figure(image: bytes, alt: str, caption: str | None = None) -> str:
    """A PNG inlined as a data URI, so the page is one file."""
    source = "data:image/png;base64," + base64.b64encode(image).decode("ascii")
    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{source}" alt="{html.escape(alt)}">{text}</figure>'


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def note(text: str) -> str:
    """A line saying why something is not shown."""
    return f'<p class="note">{html.escape(text)}</p>'


def card(label: str, value: str) -> str:
    return f'<div class="card"><div class="value">{html.escape(value)}</div><div class="label">{html.escape(label)}</div></div>'


def page(title: str, subtitle: str, cards: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole document."""
    links = "".join(f'<a href="#{html.escape(s.anchor)}">{html.escape(s.title)}</a>' for s in sections)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
        f"<nav>{links}</nav><main><div class=\"cards\">{''.join(cards)}</div>"
        f"{''.join(section.render() for section in sections)}</main></body></html>\n"
    )
