"""The forward passes of an extraction: hooks that keep one vector per prompt and site.

Each hook reduces its activation ``[batch, pos, (head,) d]`` to ``[batch, d]`` at once — read
at each prompt's read index, or averaged over its real tokens — so nothing of prompt length
is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from probes.errors import ProbeInputError
from probes.extract.config import DTYPES, ExtractConfig
from probes.extract.plan import Job
from probes.extract.tokens import pad_batch
from probes.sites import PER_HEAD, Site

Store = Callable[[list[int], dict[str, Tensor]], None]
"""Receives a batch's prompt indices and its vectors by site key (storage dtype)."""


class _Reader:
    """Hook callbacks that reduce each captured activation to one vector per prompt."""

    def __init__(self, sites: list[Site], position: str | int) -> None:
        self.position = position
        self.by_hook: dict[str, list[Site]] = {}
        for site in sites:
            self.by_hook.setdefault(site.hook_name, []).append(site)
        self.read_at: Tensor | None = None  # [batch] padded index read per prompt
        self.mask: Tensor | None = None  # [batch, pos] real-token mask
        self.values: dict[str, Tensor] = {}

    def set_batch(self, read_at: Tensor, mask: Tensor) -> None:
        self.read_at, self.mask, self.values = read_at, mask, {}

    def hooks(self) -> list[tuple[str, Callable[..., None]]]:
        return [(name, self._make(name)) for name in self.by_hook]

    def _make(self, hook_name: str) -> Callable[..., None]:
        sites = self.by_hook[hook_name]

        def read(tensor: Tensor, hook: Any = None) -> None:
            assert self.read_at is not None and self.mask is not None
            if self.position == "mean":
                mask = self.mask.to(tensor.device, torch.float32)
                mask = mask.view(*mask.shape, *([1] * (tensor.dim() - 2)))
                picked = (tensor.float() * mask).sum(1) / mask.sum(1)
            else:
                rows = torch.arange(tensor.shape[0], device=tensor.device)
                picked = tensor[rows, self.read_at.to(tensor.device)].float()
            for site in sites:
                value = picked if site.head is None else picked[:, site.head]
                self.values[site.key] = value.detach().to("cpu")

        return read


def forward_batches(bridge: Any, job: Job, batches: list[list[int]], config: ExtractConfig, store: Store,
                    on_batch: Callable[[], None] | None = None) -> None:
    """Forward ``batches`` of prompt indices, handing each batch's vectors (storage dtype) to ``store``."""
    stop_arg = None if job.stop >= bridge.cfg.n_layers else job.stop
    pad_id = getattr(bridge.tokenizer, "pad_token_id", None) or 0
    device = next(bridge.parameters()).device
    store_dtype = DTYPES[config.dtype]
    reader = _Reader(job.sites, config.position)
    needs_heads = any(s.hook in PER_HEAD for s in job.sites)
    had_heads = bool(getattr(bridge.cfg, "use_attn_result", False))
    if needs_heads and not had_heads:
        bridge.set_use_attn_result(True)
    try:
        with bridge.hooks(fwd_hooks=reader.hooks()), torch.inference_mode():
            for batch in batches:
                tokens, mask = pad_batch([job.ids[i] for i in batch], side=config.padding_side, pad_id=pad_id,
                                         width=job.width)
                offsets = tokens.shape[1] - mask.sum(1) if config.padding_side == "left" else 0
                read_at = torch.tensor([job.read_index[i] for i in batch]) + offsets
                reader.set_batch(read_at, mask)
                padded = bool((mask == 0).any())
                bridge(
                    tokens.to(device),
                    attention_mask=mask.to(device) if padded else None,
                    stop_at_layer=stop_arg,
                    return_type=None,
                )
                values = {}
                for key, value in reader.values.items():
                    _check_finite(value, key, batch, config.dtype)
                    values[key] = value.to(store_dtype)
                    _check_finite(values[key], key, batch, config.dtype)
                store(batch, values)
                if on_batch is not None:
                    on_batch()
    finally:
        if needs_heads and not had_heads:
            bridge.set_use_attn_result(False)


def _check_finite(value: Tensor, key: str, batch: list[int], dtype: str) -> None:
    if bool(torch.isfinite(value).all()):
        return
    bad = [batch[i] for i in torch.nonzero(~torch.isfinite(value).all(-1)).flatten().tolist()]
    hint = (
        "values overflow float16; extract with dtype='float32'"
        if dtype == "float16"
        else "the model produces non-finite activations; check its weights"
    )
    raise ProbeInputError(f"non-finite activations at {key} for prompts {bad[:10]}: {hint}")
