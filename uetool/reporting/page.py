"""The sweep report as one self-contained HTML page: inline CSS, relative <img> links, no JavaScript.

Every piece of text that comes from data (model keys, outcome descriptions, error messages) goes through
`html.escape`: an error message may hold anything, `<script>` included.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape

import pandas as pd

__all__ = ["SweepPage", "render_page", "table_html", "fmt_number"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; padding: 16px 28px;
       max-width: 1500px; color: #1a202c; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #cbd5e0; margin-top: 1.6em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #e2e8f0; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #edf2f7; } tr:nth-child(even) td { background: #f7fafc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.note, td.desc { max-width: 46em; }
.summary th { width: 14em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(620px, 1fr)); gap: 14px; }
figure { margin: 0; border: 1px solid #e2e8f0; padding: 6px; background: #fff; }
figure img { width: 100%; height: auto; display: block; }
figure.wide img { width: auto; max-width: 100%; }
figcaption { font-size: 0.8em; color: #4a5568; }
details { margin: 0.3em 0; border: 1px solid #e2e8f0; padding: 4px 10px; }
summary { cursor: pointer; font-weight: 600; }
.pair { display: flex; gap: 18px; flex-wrap: wrap; } .pair > div { flex: 1 1 560px; min-width: 0; }
pre.error { white-space: pre-wrap; word-break: break-word; max-height: 16em; overflow: auto; margin: 0;
            font-size: 0.85em; background: #fff5f5; padding: 4px; }
.muted { color: #718096; } .status-failed { color: #c53030; font-weight: 600; }
"""


def fmt_number(value: object, digits: int = 3) -> str:
    """NaN/None as an em dash, integers without decimals, other numbers with `digits` decimals."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{value:.{digits}f}" if math.isfinite(value) else "\u2014"
    return str(value)


Formatter = Callable[[object], str]


def table_html(frame: pd.DataFrame, formats: dict[str, Formatter] | None = None, css: str = "",
               raw: tuple[str, ...] = ()) -> str:
    """An HTML table; numbers right-aligned; cells escaped except the columns named in `raw` (pre-built HTML)."""
    formats = formats or {}
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, row, strict=True):
            numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
            text = formats[col](value) if col in formats else fmt_number(value) if numeric else str(value)
            cls = "num" if numeric else ("desc" if col in ("description", "note", "neighbours") else "")
            content = text if col in raw else escape(text)
            cells.append(f'<td class="{cls}">{content}</td>' if cls else f"<td>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


@dataclass
class SweepPage:
    """What the page shows; the frames are already reduced to the columns to display."""

    sweep_name: str
    summary: list[tuple[str, str]]
    trends: pd.DataFrame
    headline_plots: list[tuple[str, str]]  # (png file name, alt text)
    other_plots: list[tuple[str, str]]
    heatmap: str | None
    neighbour_plot: str | None
    convergence_note: str
    neighbours: pd.DataFrame
    models: pd.DataFrame
    rates: pd.DataFrame
    utilities: list[tuple[str, str, pd.DataFrame, pd.DataFrame | None]]  # (model, caption, top, bottom)
    failures: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    analyses: list[tuple[str, str, str]] = field(default_factory=list)  # (section id, title, html): one per experiment
    similarity_plot: str | None = None  # each model's mean similarity to the others against capability
    categories: str = ""  # the per-category view (html), empty when no model's outcomes have categories
    cost: str = ""  # tokens against the paper's method, predicted against measured (html); empty without either


def _figures(plots: list[tuple[str, str]]) -> str:
    return "<div class=\"grid\">" + "".join(
        f'<figure><img src="{escape(src)}" alt="{escape(alt)}"><figcaption>{escape(alt)}</figcaption></figure>'
        for src, alt in plots) + "</div>"


def _utility_tables(entries: list[tuple[str, str, pd.DataFrame, pd.DataFrame | None]]) -> str:
    if not entries:
        return '<p class="muted">No finished model has utilities.</p>'
    parts = []
    for model, caption, top, bottom in entries:
        if bottom is None:
            inner = f"<div><h4>All outcomes</h4>{table_html(top)}</div>"
        else:
            inner = (f"<div><h4>Top {len(top)}</h4>{table_html(top)}</div>"
                     f"<div><h4>Bottom {len(bottom)}</h4>{table_html(bottom)}</div>")
        parts.append(f"<details><summary>{escape(model)} <span class=\"muted\">{escape(caption)}</span></summary>"
                     f'<div class="pair">{inner}</div></details>')
    return "".join(parts)


def _failures(frame: pd.DataFrame) -> str:
    if frame.empty:
        return '<p class="muted">No model failed.</p>'
    shown = frame.copy()
    shown["error"] = [f'<pre class="error">{escape(str(e))}</pre>' for e in shown["error"]]
    return table_html(shown, raw=("error",))


def render_page(page: SweepPage) -> str:
    """The full HTML document."""
    sections = [
        ("summary", "Summary", table_html(pd.DataFrame(page.summary, columns=["", "value"]), css="summary")),
        ("trends", "Trends against capability", table_html(page.trends)),
        ("plots", "Metrics against capability",
         _figures(page.headline_plots) if page.headline_plots else '<p class="muted">No finished model to plot.</p>'),
    ]
    if page.other_plots:
        sections.append(("more-plots", "Other metrics", _figures(page.other_plots)))
    convergence = f'<p class="muted">{escape(page.convergence_note)}</p>' if page.convergence_note else ""
    if page.heatmap:
        convergence += (f'<figure class="wide"><img src="{escape(page.heatmap)}" alt="utility similarity heatmap">'
                        "<figcaption>cosine similarity of standardised utility vectors over shared outcomes"
                        "</figcaption></figure>")
    convergence_plots = [(page.neighbour_plot, "utility spread among capability neighbours")] if page.neighbour_plot \
        else []
    if page.similarity_plot:
        convergence_plots.append((page.similarity_plot, "each model's mean similarity to the other models"))
    if convergence_plots:
        convergence += _figures(convergence_plots)
    if not page.neighbours.empty:
        convergence += table_html(page.neighbours)
    sections.append(("convergence", "Utility convergence", convergence))
    if page.categories:
        sections.append(("categories", "Utilities and coherence per outcome category", page.categories))
    sections += page.analyses
    if page.cost:
        sections.append(("cost", "Cost: tokens, and the planner against the measurement", page.cost))
    sections += [
        ("models", "Models", table_html(page.models)),
        ("rates", "Refusal and position-bias rates", table_html(page.rates)),
        ("utilities", "Utilities per model (top and bottom outcomes)", _utility_tables(page.utilities)),
        ("failures", "Failures", _failures(page.failures)),
    ]
    if page.notes:
        sections.append(("notes", "Notes", "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in page.notes) + "</ul>"))
    nav = "<nav>" + "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title, _ in sections) + "</nav>"
    body = "".join(f'<section id="{key}"><h2>{escape(title)}</h2>{content}</section>'
                   for key, title, content in sections)
    title = f"Sweep report: {page.sweep_name}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>{nav}{body}</body></html>\n")
