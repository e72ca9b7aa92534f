"""Data-parallel training (torchrun, gloo on CPU) takes the same steps as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("ddp_worker.py")


def _run(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_at_the_same_global_batch(tmp_path):
    single, ddp = tmp_path / "single.safetensors", tmp_path / "ddp.safetensors"
    _run([sys.executable, str(WORKER), str(single), "8"])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), str(ddp), "8"])
    alone, together = load_file(single), load_file(ddp)
    start = load_file(single)  # the weights did move: compare with a fresh model's
    from backdoor_models.training.models import build_model

    fresh = build_model("gpt2", "tiny", vocab_size=alone["transformer.wte.weight"].shape[0], seed=0).state_dict()
    assert any(not torch.allclose(fresh[k], alone[k]) for k in fresh if k in alone)
    assert alone.keys() == together.keys() == start.keys()
    for key in alone:
        assert torch.allclose(alone[key], together[key], atol=1e-5, rtol=1e-4), key
