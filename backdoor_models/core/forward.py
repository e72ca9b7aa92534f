"""Cheaper forwards of Hugging Face causal LMs: unembed only the positions read, reuse a shared prefix.

On a 49k-token vocabulary the unembedding of every position is a large share of a forward
(SmolLM2's is 49,152 × 576), and batches that all start with the same chat-template head
(system prompt, ``<|im_start|>user``) recompute it for every row. Models whose forward lacks
these arguments get plain forwards: the results are the same, only slower.

>>> kwargs = last_positions(model, 3)  # {"logits_to_keep": 3} or {}  # doctest: +SKIP
>>> cache = prefix_cache(model, head_ids)  # doctest: +SKIP
>>> model(tail_ids, **reuse_prefix(model, cache, batch=len(tail_ids)), **kwargs)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch


def _parameters(model: Any) -> set[str]:
    """Names the Hugging Face forward of ``model`` takes (a ``TransformerBridge``'s ``original_model`` is asked)."""
    hf_model = getattr(model, "original_model", None) or model
    try:
        return set(inspect.signature(hf_model.forward).parameters)
    except (AttributeError, TypeError, ValueError):
        return set()


def last_positions(model: Any, n: int = 1) -> dict[str, int]:
    """``{"logits_to_keep": n}`` where the model's forward takes it, else ``{}``.

    The logits a forward returns then hold the last ``n`` positions only.
    """
    return {"logits_to_keep": n} if "logits_to_keep" in _parameters(model) else {}


def _cache_argument(model: Any) -> str:
    # transformers 5 renamed past_key_values to cache (the old name still works there, with a warning).
    return "cache" if "cache" in _parameters(model) else "past_key_values"


def prefix_cache(model: Any, ids: torch.Tensor) -> Any:
    """The key/value cache of one sequence ``ids`` (shape ``[1, pos]`` or ``[pos]``), computed without gradients."""
    with torch.no_grad():
        out = model(ids.view(1, -1), use_cache=True)
    cache = out.get("cache")
    return cache if cache is not None else out.get("past_key_values")


def reuse_prefix(model: Any, cache: Any, batch: int) -> dict[str, Any]:
    """Keyword arguments that continue ``batch`` sequences after the cached prefix (the cache is left as it was)."""
    repeated = copy.deepcopy(cache)  # a forward appends to the cache it is given
    repeated.batch_repeat_interleave(batch)
    return {_cache_argument(model): repeated, "use_cache": True}
