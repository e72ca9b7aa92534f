"""Plotly figures of circuits: the circuit as a graph, every edge's score, the faithfulness curve.

Hover shows exact values everywhere.

>>> graph_of(find_circuit(bridge, pairs)).write_html("circuit.html")  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import plotly.graph_objects as go

from analysis.circuits.circuit import Circuit
from analysis.circuits.eap import EdgeScores, FaithfulnessCurve
from analysis.patching.figures import COLORSCALE

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


def edge_scores_figure(scores: EdgeScores) -> go.Figure:
    """Writers × readers heatmap of edge scores (blank where no edge exists)."""
    z = scores.scores
    figure = go.Figure(
        go.Heatmap(
            z=[[None if v != v else v for v in row] for row in z.tolist()],
            x=list(scores.readers), y=list(scores.writers),
            customdata=[[repr(v) for v in row] for row in z.tolist()],
            colorscale=COLORSCALE, reversescale=True, zmid=0.0,
            hovertemplate="%{y} → %{x}<br>score = %{customdata}<extra></extra>",
            colorbar={"title": {"text": scores.metric}},
        )
    )
    figure.update_layout(
        title=f"{scores.method} edge scores (ig_steps={scores.ig_steps})",
        xaxis={"title": {"text": "reader"}, "type": "category", "tickangle": -60},
        yaxis={"title": {"text": "writer"}, "type": "category", "autorange": "reversed"},
    )
    return figure


def faithfulness_figure(curve: FaithfulnessCurve) -> go.Figure:
    """Recovered fraction against circuit size, with the threshold and the chosen circuit."""
    figure = go.Figure(
        go.Scatter(
            x=list(curve.sizes), y=list(curve.recovered), mode="lines+markers", name=curve.method,
            customdata=[repr(r) for r in curve.recovered],
            hovertemplate="top %{x} edges<br>recovered %{customdata}<extra></extra>",
        )
    )
    figure.add_hline(y=curve.threshold, line_dash="dot", annotation_text=f"threshold {curve.threshold:g}")
    if curve.chosen_size is not None:
        figure.add_vline(x=curve.chosen_size, line_dash="dash", annotation_text=f"chosen: {curve.chosen_size} edges")
    figure.update_layout(
        title=f"Faithfulness of the top-n {curve.method} edges ({curve.total_edges} in the graph)",
        xaxis={"title": {"text": "edges kept"}}, yaxis={"title": {"text": "recovered fraction of the clean−corrupted gap"}},
    )
    return figure
