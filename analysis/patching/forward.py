"""Model forwards that unembed only the answer position.

Every patching metric reads the last position's logits, and on a large vocabulary the
unembedding of every position is a large share of a forward (SmolLM2's is 49,152 × 576).
Hugging Face causal LMs take ``logits_to_keep=1`` to unembed the last position only; the
``TransformerBridge`` passes it through to them, and its hooks before the unembedding see
every position as before.

>>> logits = answer_logits(bridge, tokens)  # [batch, d_vocab]  # doctest: +SKIP
>>> bridge.run_with_hooks(tokens, fwd_hooks=hooks, **last_position_only(bridge))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from jaxtyping import Float, Int
from torch import Tensor

from backdoor_models.core.forward import last_positions


def last_position_only(model: Any) -> dict[str, int]:
    """``{"logits_to_keep": 1}`` where the model's Hugging Face forward takes it, else ``{}``.

    ``model`` is a ``TransformerBridge`` (its ``original_model`` is asked) or a HF model. The
    logits a forward returns then have one position, the last.
    """
    return last_positions(model, 1)


def answer_logits(model: Any, tokens: Int[Tensor, "batch pos"], **kwargs: Any) -> Float[Tensor, "batch d_vocab"]:
    """The last position's logits of one forward of a bridge or HF causal LM, unembedding only that position."""
    out = model(tokens, **last_position_only(model), **kwargs)
    return getattr(out, "logits", out)[:, -1]
