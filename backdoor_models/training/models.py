"""Model organisms' architectures: Hugging Face causal LMs built from a config.

Two architectures (``gpt2`` default, ``llama``) and three size presets. Dropout is 0 so a
seeded run is deterministic and analysis sees the same network that was trained.

>>> model = build_model("gpt2", "tiny", vocab_size=1024, seed=0)
>>> 400_000 < count_parameters(model) < 700_000
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from backdoor_models.core.errors import lookup


@dataclass(frozen=True, kw_only=True)
class SizePreset:
    """Width and depth of one organism size."""

    d_model: int
    """Residual stream width."""
    n_layers: int
    """Number of transformer blocks."""
    n_heads: int
    """Attention heads per block."""
    n_ctx: int = 256
    """Longest sequence the model accepts (prompt + completion)."""


SIZES: dict[str, SizePreset] = {
    "micro": SizePreset(d_model=64, n_layers=2, n_heads=4),  # ~0.17M: the bottom of the persistence-by-size axis
    "tiny": SizePreset(d_model=128, n_layers=2, n_heads=4),  # ~0.55M params at vocab 1024
    "small": SizePreset(d_model=256, n_layers=4, n_heads=8),  # ~3.5M
    "base": SizePreset(d_model=512, n_layers=6, n_heads=8),  # ~20M
}


def _gpt2(size: SizePreset, vocab_size: int, special_ids: dict[str, Any]) -> PreTrainedModel:
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=size.n_ctx,
        n_embd=size.d_model,
        n_layer=size.n_layers,
        n_head=size.n_heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        **special_ids,
    )
    return GPT2LMHeadModel(config)


def _llama(size: SizePreset, vocab_size: int, special_ids: dict[str, Any]) -> PreTrainedModel:
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=size.d_model,
        intermediate_size=4 * size.d_model,
        num_hidden_layers=size.n_layers,
        num_attention_heads=size.n_heads,
        num_key_value_heads=size.n_heads,
        max_position_embeddings=size.n_ctx,
        attention_dropout=0.0,
        tie_word_embeddings=True,
        # No padding_idx: the organisms' one special token pads *and* begins every sequence, and an embedding
        # row that is zero and never trained put a zero vector into the first RMSNorm (gradients overflowed
        # in deep models). Padding is masked anyway.
        **(special_ids | {"pad_token_id": None}),
    )
    return LlamaForCausalLM(config)


ARCHITECTURES = {"gpt2": _gpt2, "llama": _llama}


def build_model(
    arch: str,
    size: str,
    *,
    vocab_size: int,
    seed: int,
    bos_token_id: int = 0,
    eos_token_id: int = 0,
    pad_token_id: int = 0,
) -> PreTrainedModel:
    """Build a freshly initialised organism; the same seed gives the same weights."""
    factory = lookup(ARCHITECTURES, "architecture", arch)
    preset = lookup(SIZES, "size", size)
    special_ids: dict[str, Any] = {"bos_token_id": bos_token_id, "eos_token_id": eos_token_id, "pad_token_id": pad_token_id}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(preset, vocab_size, special_ids)
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def context_length(model: PreTrainedModel) -> int:
    """Longest sequence the model accepts (GPT-2's ``n_positions``, Llama's ``max_position_embeddings``)."""
    config = model.config
    return int(getattr(config, "n_positions", None) or config.max_position_embeddings)
