"""A training killed with SIGKILL resumes from its checkpoint to bit-identical weights."""

import signal
import subprocess
import sys
import textwrap

import torch

from backdoor_models.training import lm_training
from backdoor_models.training.models import build_model

SETUP = """
import torch
from backdoor_models.training import lm_training
from backdoor_models.training.models import build_model
g = torch.Generator().manual_seed(0)
data = [lm_training.Encoded(ids=torch.randint(1, 200, (int(n),), generator=g).tolist(), n_prompt=int(n) // 2)
        for n in torch.randint(8, 30, (64,), generator=g)]
optim = lm_training.OptimConfig(steps=30, batch_size=8, lr=1e-3, warmup=5, checkpoint_every=10)
model = build_model("gpt2", "tiny", vocab_size=200, seed=0)
"""


def test_sigkill_then_resume_equals_uninterrupted_training(tmp_path):
    namespace: dict = {}
    exec(SETUP, namespace)
    reference = namespace["model"]
    lm_training.train(reference, namespace["data"], namespace["optim"], pad_id=0, progress=False)

    killer = SETUP + textwrap.dedent(f"""
        import os, signal
        def die(step, loss):
            if step == 25:
                os.kill(os.getpid(), signal.SIGKILL)
        lm_training.train(model, data, optim, pad_id=0, checkpoint_dir={str(tmp_path / "ckpt")!r},
                          on_step=die, progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", killer], check=False)
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / "ckpt" / "state.json").is_file()

    resumed_ns: dict = {}
    exec(SETUP, resumed_ns)
    resumed = build_model("gpt2", "tiny", vocab_size=200, seed=99)  # different init: all state must come back
    lm_training.train(resumed, resumed_ns["data"], resumed_ns["optim"], pad_id=0, checkpoint_dir=tmp_path / "ckpt",
                      resume=True, progress=False)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
