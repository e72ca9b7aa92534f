"""Plotly figures of patching results: heatmaps with token labels, a head grid, estimate vs exact.

Every cell's hover shows the layer/position/head it stands for and its exact value.

>>> fig = sweep_heatmap(patcher.sweep("resid_pre"))  # doctest: +SKIP
>>> fig.write_html("resid_pre.html")  # doctest: +SKIP
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch

from analysis.patching.results import SweepResult

COLORSCALE = "RdBu"
"""Diverging: red where a patch raises the metric above the unpatched run, blue where it lowers it."""


def _exact(values: torch.Tensor) -> list[list[str]]:
    return [[repr(float(v)) for v in row] for row in values.tolist()]


def _heatmap(result: SweepResult, z: torch.Tensor, x: list[str], y: list[str], x_title: str, y_title: str) -> go.Figure:
    figure = go.Figure(
        go.Heatmap(
            z=z.tolist(),
            x=x,
            y=y,
            customdata=_exact(z),
            colorscale=COLORSCALE,
            reversescale=True,
            zmid=result.baseline,
            colorbar={"title": {"text": result.metric}},
            hovertemplate=f"{y_title} %{{y}}<br>{x_title} %{{x}}<br>{result.metric} = %{{customdata}}<extra></extra>",
        )
    )
    figure.update_layout(
        title=f"{result.method} patching: {result.sweep} ({result.direction}; unpatched = {result.baseline:.4g})",
        xaxis={"title": {"text": x_title}, "type": "category", "tickangle": -60},
        yaxis={"title": {"text": y_title}, "type": "category", "autorange": "reversed"},
    )
    return figure


def sweep_heatmap(result: SweepResult) -> go.Figure:
    """Layer (or layer × head, layer × head × destination) rows against positions or heads."""
    names = result.axis_names
    v = result.values
    labels = {a.name: list(a.labels) for a in result.axes}
    if len(names) == 2:
        return _heatmap(result, v, labels[names[1]], labels[names[0]], names[1], names[0])
    if names == ("layer", "pos", "head"):
        rows = [f"L{layer} H{head}" for layer in labels["layer"] for head in labels["head"]]
        z = v.permute(0, 2, 1).reshape(len(rows), -1)
        return _heatmap(result, z, labels["pos"], rows, "position", "layer, head")
    if names == ("layer", "dest_pos", "src_pos", "head"):
        rows = [f"L{layer} H{head} ← {dest}" for layer in labels["layer"] for head in labels["head"] for dest in labels["dest_pos"]]
        z = v.permute(0, 3, 1, 2).reshape(len(rows), -1)
        return _heatmap(result, z, labels["src_pos"], rows, "source position", "layer, head, destination")
    raise ValueError(f"no heatmap layout for axes {names}")


def head_grid(result: SweepResult) -> go.Figure:
    """Layer × head grid with each value written in its cell (for ``head_*`` all-position sweeps)."""
    if result.axis_names != ("layer", "head"):
        raise ValueError(f"head_grid needs a (layer, head) result, got {result.axis_names}")
    figure = sweep_heatmap(result)
    figure.update_traces(texttemplate="%{z:.3f}")
    figure.update_layout(xaxis={"title": {"text": "head"}, "tickangle": 0}, yaxis={"title": {"text": "layer"}})
    return figure


def estimate_scatter(exact: SweepResult, estimate: SweepResult) -> go.Figure:
    """Each cell's estimated effect against its exact effect, with the y = x line."""
    a, b = exact.effect().flatten(), estimate.effect().flatten()
    index = torch.cartesian_prod(*[torch.arange(len(ax)) for ax in exact.axes]).reshape(a.numel(), -1)
    text = [
        ", ".join(f"{ax.name} {ax.labels[i]}" for ax, i in zip(exact.axes, row.tolist()))
        for row in index
    ]
    low, high = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    figure = go.Figure(
        [
            go.Scatter(
                x=a.tolist(), y=b.tolist(), mode="markers", text=text,
                customdata=[[repr(float(p)), repr(float(q))] for p, q in zip(a, b)],
                hovertemplate="%{text}<br>exact %{customdata[0]}<br>estimate %{customdata[1]}<extra></extra>",
                name="cells",
            ),
            go.Scatter(x=[low, high], y=[low, high], mode="lines", line={"dash": "dot"}, name="y = x"),
        ]
    )
    figure.update_layout(
        title=f"{estimate.method} vs {exact.method}: {exact.sweep} ({exact.direction})",
        xaxis={"title": {"text": "exact effect"}},
        yaxis={"title": {"text": f"{estimate.method} estimate"}},
    )
    return figure


def sweep_figure(result: SweepResult, title: str | None = None) -> go.Figure:
    """The natural figure of a sweep: a head grid for (layer, head) results, else a token-labelled heatmap."""
    figure = head_grid(result) if result.axis_names == ("layer", "head") else sweep_heatmap(result)
    if title is not None:
        figure.update_layout(title=title)
    return figure
