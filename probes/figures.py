"""Plotly figures of probe results. Every function returns a ``go.Figure``; none shows it.

>>> import torch
>>> from probes.evaluate import SweepConfig, sweep
>>> from probes.extract import Activations
>>> y = [0, 1] * 30
>>> x = torch.randn(60, 8, generator=torch.Generator().manual_seed(0)) + 2 * torch.tensor(y)[:, None]
>>> acts = Activations.from_tensors({Site(hook="resid_post", layer=layer): x for layer in (0, 1)})
>>> result = sweep(acts, y, ["train", "val", "test"] * 20, config=SweepConfig(methods=("meandiff",), n_boot=10))
>>> fig = auroc_by_layer(result)  # fig.show() in a notebook, fig.write_html(path) for a page
>>> [trace.name for trace in fig.data if trace.showlegend is not False], fig.layout.xaxis.title.text
(['meandiff'], 'layer (resid_post)')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from probes.evaluate import SweepResult
from probes.methods.contrast import SWAPPED
from probes.metrics import ArrayLike, RandomBaseline
from probes.sites import Site

if TYPE_CHECKING:
    from probes.contrast_controls import ContrastControls
    from probes.suite import SuiteResult
    from probes.transfer_suite import TransferReport

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _x_axis(sites: Sequence[Site]) -> tuple[list, str]:
    """Layer numbers when sites differ only by layer, else site keys."""
    if len({(s.hook, s.head) for s in sites}) == 1:
        return [s.layer for s in sites], f"layer ({sites[0].hook})"
    return [s.key for s in sites], "site"


def _random_band(fig: go.Figure, x: list, sites: Sequence[Site], baselines: Mapping[str, RandomBaseline]) -> None:
    """Grey band from the random directions' mean to their 95th percentile, dotted line at their best."""
    keyed = [baselines.get(s.key) for s in sites]
    if not all(b is not None for b in keyed):
        return
    rb = [b for b in keyed if b is not None]
    fig.add_trace(go.Scatter(x=x, y=[b.p95 for b in rb], mode="lines", line={"width": 0},
                             showlegend=False, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=[b.mean for b in rb], mode="lines", line={"width": 0},
                             fill="tonexty", fillcolor="rgba(128,128,128,0.25)",
                             name="random directions (mean-p95)"))
    fig.add_trace(go.Scatter(x=x, y=[b.best for b in rb], mode="lines",
                             line={"color": "grey", "dash": "dot"}, name="random best"))


def auroc_by_layer(
    result: SweepResult,
    *,
    baselines: Mapping[str, RandomBaseline] | None = None,
    title: str = "Probe AUROC by layer (test split)",
) -> go.Figure:
    """One line per method with its bootstrap 95% band; grey band = random directions
    (mean to 95th percentile), dotted grey line = best of the random directions."""
    fig = go.Figure()
    first = next(iter(result.methods.values()))
    sites = [r.site for r in first.results]
    x, x_title = _x_axis(sites)
    if baselines:
        _random_band(fig, x, sites, baselines)
    for i, (name, ms) in enumerate(result.methods.items()):
        colour = COLOURS[i % len(COLOURS)]
        lo = [r.test.auroc_ci[0] for r in ms.results]
        hi = [r.test.auroc_ci[1] for r in ms.results]
        fig.add_trace(go.Scatter(x=x, y=hi, mode="lines", line={"width": 0}, showlegend=False,
                                 hoverinfo="skip", legendgroup=name))
        fig.add_trace(go.Scatter(x=x, y=lo, mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=_rgba(colour, 0.15), showlegend=False, hoverinfo="skip",
                                 legendgroup=name))
        fig.add_trace(go.Scatter(x=x, y=[r.test.auroc for r in ms.results], mode="lines+markers",
                                 line={"color": colour}, name=name, legendgroup=name))
    fig.add_hline(y=0.5, line={"color": "black", "width": 1, "dash": "dash"})
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title="signed AUROC",
                      yaxis_range=[-0.02, 1.02], template="plotly_white")
    return fig


def contrast_controls_by_layer(
    controls: ContrastControls,
    baselines: Mapping[str, RandomBaseline] | None = None,
    *,
    title: str = "Contrast probe and its controls: signed AUROC by layer (test split)",
) -> go.Figure:
    """Per formulation: its direction (solid), its answer-order-swapped twin (dashed) and
    (formulation - neutral), each unit-normalised first (thick dotted); the neutral directions in black;
    the random band in grey. The default formulation, the bank and the default's neutral are shown;
    the rest are one legend click away."""
    fig = go.Figure()
    first = next(iter(controls.formulations.values()))
    sites = list(first.direction.sites)
    x, x_title = _x_axis(sites)
    if baselines:
        _random_band(fig, x, sites, baselines)
    shown = {controls.default, "bank", controls.formulations[controls.default].neutral}
    originals = [n for n in controls.formulations if not n.endswith(SWAPPED)]
    for i, name in enumerate(originals):
        fc = controls.formulations[name]
        colour, visible = COLOURS[i % len(COLOURS)], True if name in shown else "legendonly"
        lines = [(name, fc.direction.auroc, {"color": colour}),
                 (f"{name} - neutral", fc.minus_neutral.auroc, {"color": colour, "dash": "dot", "width": 4})]
        if fc.twin is not None:
            twin = controls.formulations[fc.twin].direction.auroc
            lines.insert(1, (fc.twin, twin, {"color": colour, "dash": "dash"}))
        for label, y, line in lines:
            fig.add_trace(go.Scatter(x=x, y=list(y), mode="lines+markers", line=line, name=label,
                                     legendgroup=name, visible=visible))
    for name, profile in controls.neutrals.items():
        fig.add_trace(go.Scatter(x=x, y=list(profile.auroc), mode="lines+markers", name=name,
                                 line={"color": "black", "dash": "dashdot"},
                                 visible=True if name in shown else "legendonly"))
    fig.add_hline(y=0.5, line={"color": "black", "width": 1, "dash": "dash"})
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title="signed AUROC",
                      yaxis_range=[-0.02, 1.02], template="plotly_white")
    return fig


def score_histograms(
    scores: Mapping[str, ArrayLike],
    labels: ArrayLike,
    *,
    label_names: tuple[str, str] = ("no defection", "defection"),
    title: str = "Probe scores at the best layer (test split)",
) -> go.Figure:
    """One panel per method: overlaid histograms of negatives and positives."""
    y = np.asarray(labels)
    fig = make_subplots(rows=1, cols=max(1, len(scores)), subplot_titles=list(scores))
    for col, s in enumerate(scores.values(), start=1):
        s = np.asarray(s, dtype=np.float64)
        for cls, colour in ((0, COLOURS[0]), (1, COLOURS[1])):
            fig.add_trace(go.Histogram(x=s[y == cls], name=label_names[cls], marker_color=colour,
                                       opacity=0.6, showlegend=col == 1, legendgroup=str(cls)),
                          row=1, col=col)
    fig.update_layout(title=title, barmode="overlay", template="plotly_white")
    return fig


def pca_scatter(
    x: Float[Tensor, "n d"],
    labels: ArrayLike,
    *,
    groups: Sequence[str] | None = None,
    label_names: tuple[str, str] = ("no defection", "defection"),
    title: str = "PCA of activations at the best layer",
) -> go.Figure:
    """First two principal components. Coloured by label, or by group when ``groups`` is
    given (then circles = label 0, crosses = label 1)."""
    xs = x.double()
    centred = xs - xs.mean(0)
    _, sv, v = torch.linalg.svd(centred, full_matrices=False)
    pcs = (centred @ v[:2].T).numpy()
    if pcs.shape[1] == 1:
        pcs = np.concatenate([pcs, np.zeros_like(pcs)], axis=1)
    var = (sv**2 / (sv**2).sum()).numpy()
    y = np.asarray(labels)
    fig = go.Figure()
    if groups is None:
        for cls in (0, 1):
            mask = y == cls
            fig.add_trace(go.Scatter(x=pcs[mask, 0], y=pcs[mask, 1], mode="markers", name=label_names[cls],
                                     marker={"color": COLOURS[cls], "size": 5, "opacity": 0.7}))
    else:
        names = np.asarray(list(groups), dtype=object)
        for i, group in enumerate(dict.fromkeys(names.tolist())):
            mask = names == group
            fig.add_trace(go.Scatter(
                x=pcs[mask, 0], y=pcs[mask, 1], mode="markers", name=str(group),
                text=[label_names[int(c)] for c in y[mask]],
                marker={"color": COLOURS[i % len(COLOURS)], "size": 6, "opacity": 0.7,
                        "symbol": ["x" if c == 1 else "circle" for c in y[mask]]},
            ))
    fig.update_layout(title=title, template="plotly_white",
                      xaxis_title=f"PC1 ({100 * var[0]:.1f}%)",
                      yaxis_title=f"PC2 ({100 * var[1]:.1f}%)" if var.size > 1 else "PC2")
    return fig


def transfer_figure(report: TransferReport, target: str = "after") -> go.Figure:
    """Per method, at its best before-layer: AUROC of the before-probe on the before model, on ``target``
    (transferred) and of a probe refit on ``target`` (left); the share of defecting prompts the
    before-probe's threshold catches before and on ``target``, and its false alarms there (right)."""
    methods = [m for m, per in report.transfers.items() if target in per]
    rows = [report.transfers[m][target] for m in methods]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test AUROC", "at the before-probe's threshold"))
    aurocs = (("before model", lambda r: r["before"]["auroc"]),
              (f"{target} model (transferred)", lambda r: r["transferred"]["auroc"]),
              (f"refit on the {target} model", lambda r: (r["retrained"] or {}).get("auroc")))
    rates = (("caught before", lambda r: r["caught_before"]), (f"caught {target}", lambda r: r["caught_after"]),
             (f"false alarms {target}", lambda r: r["false_alarms_after"]))
    for col, bars in ((1, aurocs), (2, rates)):
        for i, (label, value) in enumerate(bars):
            fig.add_trace(go.Bar(x=methods, y=[value(r) for r in rows], name=label,
                                 marker_color=COLOURS[(3 * (col - 1) + i) % len(COLOURS)]), row=1, col=col)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(title=f"Probes fit before safety training, applied to the {target} model",
                      barmode="group", template="plotly_white")
    return fig


def suite_figures(result: SuiteResult) -> list[go.Figure]:
    """The probe study's figures: AUROC by layer with the random band, score histograms at each
    method's best layer and PCA of the activations there (test split), and the control's AUROC."""
    organism, data, acts = result.organism, result.data, result.activations
    test = data.split_index()["test"]
    y = data.labels
    main = {k: v for k, v in organism.sweep.methods.items() if ":" not in k}
    scores = {f"{k} (layer {ms.best.layer})": ms.best_probe.score(acts.get(ms.best)[test]).numpy()
              for k, ms in main.items()}
    anchor = organism.random_site
    figures = [
        auroc_by_layer(organism.sweep, baselines=organism.baselines),
        score_histograms(scores, y[test]),
        pca_scatter(acts.get(anchor)[test], y[test], groups=data.groups_of(test),
                    title=f"PCA of {anchor.key} (test split)"),
    ]
    if result.control is not None:
        figures.append(auroc_by_layer(result.control.sweep, baselines=result.control.baselines,
                                      title="Clean control model: probe AUROC by layer (test split)"))
    return figures
