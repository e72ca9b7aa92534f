"""Plotly figures of a before/after comparison: how each model answers the trigger and its look-alikes."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go


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
