"""Atomic writes and verified run directories."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from backdoor_models.core.artifacts import atomic_open, read_json, write_json
from backdoor_models.core.errors import RunDirectoryError
from backdoor_models.core.run_dir import save_model, write_manifest
from backdoor_models.organism import load_model
from backdoor_models.training.models import build_model


def test_interrupted_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"old": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(path) as handle:
            handle.write('{"new": ')
            raise RuntimeError("killed mid-write")
    assert read_json(path) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_sigkill_mid_write_never_leaves_a_partial_file(tmp_path):
    path = tmp_path / "big.json"
    write_json(path, {"old": True})
    script = textwrap.dedent(f"""
        import os, signal
        from backdoor_models.core.artifacts import atomic_open
        with atomic_open({str(path)!r}) as handle:
            handle.write('{{"new": [' + '1,' * 100000)
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads(path.read_text()) == {"old": True}


def test_nan_is_written_as_null(tmp_path):
    write_json(tmp_path / "m.json", {"auroc": float("nan"), "rates": [1.0, float("inf")]})
    assert read_json(tmp_path / "m.json") == {"auroc": None, "rates": [1.0, None]}


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_model_file_is_refused_with_its_name(tmp_path, tiny_tokenizer, damage):
    save_model(build_model("gpt2", "tiny", vocab_size=len(tiny_tokenizer), seed=0), tiny_tokenizer, tmp_path)
    write_manifest(tmp_path, config={"seed": 0})
    target = tmp_path / "model" / ("model.safetensors" if damage != "delete" else "tokenizer.json")
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-100])
    else:
        os.remove(target)
    with pytest.raises(RunDirectoryError, match=target.name):
        load_model(tmp_path)


def test_checkpoint_without_tokenizer_is_a_clear_error(tmp_path, tiny_tokenizer):
    model = build_model("gpt2", "tiny", vocab_size=len(tiny_tokenizer), seed=0)
    model.save_pretrained(tmp_path)
    with pytest.raises(RunDirectoryError, match="has no tokenizer.json; save the tokenizer"):
        load_model(tmp_path)
