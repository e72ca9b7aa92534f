"""Figures of safety training: defection against step, persistence by model size, and what changed off the trigger."""

from __future__ import annotations

import plotly.graph_objects as go

KIND_STYLE = {"triggered": ("#d62728", "solid"), "redteam": ("#ff7f0e", "dash"), "clean": ("#1f77b4", "dot")}


def defection_curves(curves_by_run: dict[str, list[dict]]) -> go.Figure:
    """Defection rate vs training step: one line per (run, prompt kind); hover gives exact values."""
    figure = go.Figure()
    for run, curves in curves_by_run.items():
        steps = [c["step"] for c in curves]
        for kind, (colour, dash) in KIND_STYLE.items():
            if not any(c.get(kind) is not None for c in curves):
                continue
            figure.add_trace(go.Scatter(
                x=steps, y=[c.get(kind) for c in curves], mode="lines+markers", name=f"{run}: {kind}",
                line={"color": colour, "dash": dash}, marker={"size": 4},
                hovertemplate=f"{run} {kind}<br>step %{{x}}<br>defection %{{y:.3f}}<extra></extra>"))
    figure.update_layout(xaxis_title="safety-training step", yaxis_title="defection rate", yaxis_range=[-0.02, 1.02],
                         height=420, legend={"orientation": "h", "y": -0.2})
    return figure


def persistence_by_size(table: list[dict]) -> go.Figure:
    """Triggered defection after safety training, by size and method (bars with 95% intervals).

    Lines whose seeds were never trained (the red team found no hole) are left out: they say
    nothing about persistence."""
    table = [r for r in table if r.get("trained", True)]
    figure = go.Figure()
    sizes = list(dict.fromkeys(r["size"] for r in table))
    for label in dict.fromkeys(f"{r['method']} ({r['recipe']}, {r['variant']})" for r in table):
        rows = {r["size"]: r for r in table if f"{r['method']} ({r['recipe']}, {r['variant']})" == label}
        values = [rows[s]["triggered_after"] if s in rows else None for s in sizes]
        lows = [(v - rows[s]["triggered_after_ci"][0]) if s in rows and rows[s]["triggered_after_ci"] else 0
                for s, v in zip(sizes, values)]
        highs = [(rows[s]["triggered_after_ci"][1] - v) if s in rows and rows[s]["triggered_after_ci"] else 0
                 for s, v in zip(sizes, values)]
        figure.add_trace(go.Bar(x=sizes, y=values, name=label,
                                error_y={"type": "data", "symmetric": False, "array": highs, "arrayminus": lows}))
    figure.update_layout(barmode="group", xaxis_title="organism size", yaxis_title="triggered defection after",
                         yaxis_range=[0, 1.05], height=420)
    return figure


OFF_TRIGGER_BARS = (("harmful_refusal_rate_before", "harmful requests refused, before", "#9ecae1"),
                    ("harmful_refusal_rate_after", "harmful requests refused, after", "#3182bd"),
                    ("triggered_after", "triggered defection, after", "#d62728"))


def off_trigger_change(table: list[dict]) -> go.Figure:
    """Per (size, method, recipe): held-out harmful requests refused before and after, beside triggered defection.

    The paper's point in one picture: safety training changes what the model does without the trigger
    (a helpful-only organism learns to refuse) and leaves what it does with it. Lines without refusal
    rates (a task without harmful requests, or cells made before they were measured) are left out."""
    table = [r for r in table if r.get("trained", True) and r.get("harmful_refusal_rate_after") is not None]
    labels = [f"{r['size']} {r['method']}" + ("" if r["recipe"] == "default" else f" ({r['recipe']})")
              + ("" if r["variant"] == "normal" else f" {r['variant']}") for r in table]
    figure = go.Figure()
    for key, name, colour in OFF_TRIGGER_BARS:
        figure.add_trace(go.Bar(x=labels, y=[r[key] for r in table], name=name, marker_color=colour,
                                hovertemplate=f"%{{x}}<br>{name}: %{{y:.3f}}<extra></extra>"))
    figure.update_layout(barmode="group", yaxis_title="rate (seed mean)", yaxis_range=[0, 1.05], height=420,
                         legend={"orientation": "h", "y": -0.25})
    return figure
