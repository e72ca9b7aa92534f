"""Prompts to token ids, the token each prompt is read at, and padded batches.

>>> tokens, mask = pad_batch([[5, 6, 7], [8]], side="left", pad_id=0)
>>> tokens.tolist(), mask.tolist()
([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
>>> read_index([3, 1], -1), read_index([3, 1], "mean")
([2, 0], [2, 0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from backdoor_models.world.chat import encode_prompts
from probes.errors import ProbeInputError

TOKENIZE_CHUNK = 1024
"""Prompts tokenised per call (bounds the tokenizer's transient memory)."""


def tokenize_prompts(bridge: Any, prompts: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
    """Token ids per prompt: strings go through the bridge's tokenizer (BOS, or its chat template)."""
    if len(prompts) == 0:
        raise ProbeInputError("no prompts given; pass at least one prompt string or token list")
    if all(isinstance(p, str) for p in prompts):
        if bridge.tokenizer is None:
            raise ProbeInputError("the bridge has no tokenizer; pass token id lists instead of strings")
        tokenizer = getattr(bridge, "model_tokenizer", None) or bridge.tokenizer  # the model's own (load_bridge)
        # In chunks: a fast tokenizer's batch output holds ~4 KB per prompt (offsets, token
        # strings) until it is dropped, which is 80 MB at 20,000 prompts; the ids are ~0.3 KB.
        ids = [row for start in range(0, len(prompts), TOKENIZE_CHUNK)
               for row in encode_prompts(tokenizer, [str(p) for p in prompts[start : start + TOKENIZE_CHUNK]])]
    elif any(isinstance(p, str) for p in prompts):
        raise ProbeInputError("prompts mix strings and token lists; pass one kind")
    else:
        ids = [[int(t) for t in p] for p in prompts]
    empty = [i for i, p in enumerate(ids) if len(p) == 0]
    if empty:
        raise ProbeInputError(f"prompts {empty[:10]} tokenise to nothing; remove them")
    n_ctx = getattr(bridge.cfg, "n_ctx", None)
    too_long = [i for i, p in enumerate(ids) if n_ctx is not None and len(p) > n_ctx]
    if too_long:
        raise ProbeInputError(
            f"prompts {too_long[:10]} are longer than the model's context ({n_ctx} tokens); "
            "shorten or drop them"
        )
    return ids


def read_index(lengths: list[int], position: str | int) -> list[int]:
    """Per prompt, the token index (into the unpadded prompt) that is read ('mean' reads to the last)."""
    if position == "last" or position == "mean":
        return [n - 1 for n in lengths]
    assert isinstance(position, int)
    out = []
    for i, n in enumerate(lengths):
        index = position if position >= 0 else n + position
        if not 0 <= index < n:
            raise ProbeInputError(
                f"position {position} is outside prompt {i} ({n} tokens); pick a position "
                "every prompt has (e.g. -1 for the last token) or use 'last'/'mean'"
            )
        out.append(index)
    return out


def pad_batch(
    ids: list[list[int]], *, side: str, pad_id: int, width: int | None = None
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Pad token lists to ``width`` (default: the longest); returns ``(input_ids, attention_mask)``."""
    width = max(len(p) for p in ids) if width is None else width
    tokens = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, p in enumerate(ids):
        start = width - len(p) if side == "left" else 0
        tokens[row, start : start + len(p)] = torch.tensor(p, dtype=torch.long)
        mask[row, start : start + len(p)] = 1
    return tokens, mask
