"""How activations are read, batched and stored: :class:`ExtractConfig`.

>>> ExtractConfig(position=-1, dtype="float16").position
-1
>>> ExtractConfig(position="first")
Traceback (most recent call last):
...
probes.errors.ProbeInputError: position must be 'last', 'mean' or an int token index, got 'first'
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backdoor_models.core.memory import parse_size
from probes.errors import ProbeInputError

DTYPES = {"float32": torch.float32, "float16": torch.float16}
"""Storage dtypes by name."""


@dataclass(frozen=True, kw_only=True)
class ExtractConfig:
    """How activations are read, batched and stored."""

    batch_size: int = 32
    """Prompts per forward pass (ignored when max_memory is set)."""
    max_memory: str | int | None = None
    """Memory budget for one forward batch ('2GiB', '500MB' or bytes); the batch size is derived from it."""
    position: str | int = "last"
    """'last' (last prompt token), 'mean' (mean over the prompt's tokens, BOS included) or
    an int token index into the unpadded prompt (negative counts from the end)."""
    padding_side: str = "right"
    """Side on which a batch of unequal prompts is padded ('left' or 'right')."""
    dtype: str = "float32"
    """Storage dtype of the extracted vectors ('float32' or 'float16')."""
    shard_dir: str | None = None
    """If set, stream activations to safetensors shards in this directory."""
    shard_size: int = 4096
    """Prompts per shard (and per in-memory chunk) when streaming."""
    sort_by_length: bool = True
    """Batch prompts of similar length together (less padding); output order is unchanged."""
    progress: bool = True
    """Show a tqdm progress bar over batches."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ProbeInputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_memory is not None:
            parse_size(self.max_memory)
        if self.shard_size < 1:
            raise ProbeInputError(f"shard_size must be >= 1, got {self.shard_size}")
        if isinstance(self.position, bool) or not (
            isinstance(self.position, int) or self.position in ("last", "mean")
        ):
            raise ProbeInputError(
                f"position must be 'last', 'mean' or an int token index, got {self.position!r}"
            )
        if self.padding_side not in ("left", "right"):
            raise ProbeInputError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        if self.dtype not in DTYPES:
            raise ProbeInputError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
