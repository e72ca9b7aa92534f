"""Plain-tensor forward pieces of the supported architectures, read from a bridge's HF model.

The fast patching engine runs transformer blocks itself so that it can resume a patched run
at any layer and recompute only the positions a patch can reach. These kernels reproduce the
Hugging Face forward (and so the ``TransformerBridge`` forward, which delegates to it) to
float32 rounding. Each architecture is one :class:`Kernels` subclass in its own module,
registered in :data:`KERNELS` by HF model class; anything else raises
:class:`UnsupportedArchitectureError` and the engine falls back to bridge hooks.

>>> kernels = kernels_for(bridge)  # doctest: +SKIP
>>> q, k, v = kernels.qkv(0, kernels.embed(tokens), positions)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from analysis.patching.kernels.base import (
    MIN_ROWS,
    Kernels,
    UnsupportedArchitectureError,
    causal_attention,
    repeat_kv,
    row_stable,
    visible,
)
from analysis.patching.kernels.gemma3 import Gemma3Kernels
from analysis.patching.kernels.gpt2 import Gpt2Kernels
from analysis.patching.kernels.llama import LlamaKernels

__all__ = [
    "KERNELS", "MIN_ROWS", "Gemma3Kernels", "Gpt2Kernels", "Kernels", "LlamaKernels", "UnsupportedArchitectureError",
    "causal_attention", "kernels_for", "repeat_kv", "row_stable", "visible",
]

KERNELS: dict[str, Callable[[Any], Kernels]] = {
    "GPT2LMHeadModel": Gpt2Kernels,
    "LlamaForCausalLM": LlamaKernels,
    "Qwen2ForCausalLM": LlamaKernels,
    "Gemma3ForCausalLM": Gemma3Kernels,
}
"""HF model class name → kernels; the fast engine supports exactly these."""


def kernels_for(bridge: Any) -> Kernels:
    """Kernels for a bridge's HF model, or :class:`UnsupportedArchitectureError`."""
    hf_model = getattr(bridge, "original_model", bridge)
    name = type(hf_model).__name__
    if name not in KERNELS:
        raise UnsupportedArchitectureError(
            f"the fast patching engine supports {', '.join(sorted(KERNELS))}, not {name}; "
            "pass engine='hooks' (or 'auto') to patch through bridge hooks instead"
        )
    dtype = next(hf_model.parameters()).dtype
    if dtype not in (torch.float32, torch.float64):
        raise UnsupportedArchitectureError(
            f"the fast engine runs float32/float64 models, this one is {dtype}; "
            "convert it (model.float()) or pass engine='hooks'"
        )
    return KERNELS[name](hf_model)
