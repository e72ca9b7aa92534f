"""Plotly figures of a detection benchmark: AUROC heatmap, ROC curves, model scores, runtime."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from detect.bench import BenchResult

UPPER = " (upper bound: sees labels)"
"""Appended to the name of a detector that sees labels a defender lacks."""


def detector_label(result: BenchResult, name: str) -> str:
    """A detector's name, marked when it is an upper bound rather than a detector a defender could run."""
    return name + (UPPER if result.detectors[name]["upper_bound"] else "")


def bench_figures(result: BenchResult) -> dict[str, Any]:
    """Heatmap, ROC curves, model scores and runtime (plotly figures)."""
    names = list(result.detectors)
    models = [m["name"] for m in result.models if not m["skipped"]]
    by_key = {(r["model"], r["detector"]): r for r in result.rows}
    z = [[(by_key.get((m, d)) or {}).get("auroc") for m in models] for d in names]
    heat = go.Figure(go.Heatmap(z=z, x=models, y=[detector_label(result, d) for d in names], zmin=0, zmax=1,
                                colorscale="RdBu", texttemplate="%{z:.2f}", colorbar={"title": "AUROC"}))
    heat.update_layout(title="Input-level AUROC (blank: clean model or model-level detector)", height=300 + 25 * len(names))
    rocs = []
    for m in result.models:
        if m["skipped"] or not m["backdoored"]:
            continue
        fig = go.Figure()
        for d in names:
            roc = (by_key.get((m["name"], d)) or {}).get("roc")
            if roc:
                fig.add_trace(go.Scatter(x=roc["fpr"], y=roc["tpr"], mode="lines", name=d))
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"}, name="chance"))
        fig.update_layout(title=f"ROC, {m['name']} (seed {result.config['seeds'][0]})", xaxis_title="false-positive rate",
                          yaxis_title="true-positive rate", height=380)
        rocs.append(fig)
    scores = go.Figure()
    for backdoored in (True, False):
        rows = [r for r in result.rows if r["backdoored"] == backdoored and r["model_score"] is not None]
        scores.add_trace(go.Box(x=[r["detector"] for r in rows], y=[r["model_score"] for r in rows], boxpoints="all",
                                name="backdoored" if backdoored else "clean", text=[r["model"] for r in rows]))
    scores.update_layout(title="Model scores: backdoored vs clean", boxmode="group", yaxis_title="model score")
    runtime = go.Figure(go.Bar(x=names, y=[result.input_summary[d]["mean_seconds"] for d in names]))
    runtime.update_layout(title="Seconds per model (fit + scoring every seed)", yaxis_title="seconds")
    return {"heatmap": heat, "roc": rocs, "scores": scores, "runtime": runtime}
