"""Plan an extraction before any forward pass: sites, token ids, blocks to run, batches.

The batch size is ``config.batch_size``, or under a memory budget the largest that fits it
(:func:`backdoor_models.core.memory.extraction_footprint`), with every batch then padded to
the longest prompt so each prompt is computed exactly as in one unbounded batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from backdoor_models.core.memory import extraction_footprint, format_size, parse_size
from probes.errors import ProbeInputError
from probes.extract.config import ExtractConfig
from probes.extract.tokens import read_index, tokenize_prompts
from probes.sites import Site, make_sites

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """Everything one extraction needs, worked out before any forward pass."""

    sites: list[Site]
    """The sites read, without repeats, in request order."""
    ids: list[list[int]]
    """Token ids per prompt."""
    lengths: list[int]
    """Tokens per prompt."""
    read_index: list[int]
    """Per prompt, the token index (into the unpadded prompt) that is read."""
    stop: int
    """Blocks run per forward (``stop_at_layer``, or all of them)."""
    batch_size: int
    """Prompts per forward pass."""
    width: int | None
    """Every batch is padded to this many tokens (under a memory budget), else to its longest prompt."""
    chunks: list[list[list[int]]]
    """Per chunk of ``shard_size`` prompts (one chunk in memory): its batches of prompt indices."""


def plan(bridge: Any, prompts: Sequence[str] | Sequence[Sequence[int]], *, hooks: str | Sequence[str],
         layers: Sequence[int] | None, heads: Sequence[int] | None, sites: Sequence[Site] | None,
         config: ExtractConfig, stream: bool) -> Job:
    """The :class:`Job` of one :func:`extract` call (checks the sites against the bridge first)."""
    if sites is None:
        layer_list = list(range(bridge.cfg.n_layers)) if layers is None else list(layers)
        hook_list = [hooks] if isinstance(hooks, str) else list(hooks)
        sites = make_sites(
            hook_list, layer_list, n_heads=bridge.cfg.n_heads, heads=None if heads is None else list(heads)
        )
    site_list = list(dict.fromkeys(sites))
    if not site_list:
        raise ProbeInputError("no sites requested; pass at least one hook and layer")
    _check_bridge(bridge, site_list)
    ids = tokenize_prompts(bridge, prompts)
    lengths = [len(p) for p in ids]
    n = len(ids)
    # resid_pre of block L is block L's input: blocks 0..L-1 suffice (the bridge fires
    # blocks.L.hook_in before it stops there); every other hook needs block L itself.
    stop = max(s.layer if s.hook == "resid_pre" else s.layer + 1 for s in site_list)
    batch_size, width = config.batch_size, None
    if config.max_memory is not None:
        batch_size = _budget_batch(bridge, parse_size(config.max_memory), lengths, stop, len(site_list))
        # Every batch is padded to the longest prompt: the estimate holds for each batch, and each
        # prompt is computed exactly as in one unbounded batch (a row's numbers can depend on its padding).
        width = max(lengths)
    chunk = config.shard_size if stream else n
    chunks = []
    for start in range(0, n, chunk):
        rows = list(range(start, min(n, start + chunk)))
        if config.sort_by_length:
            rows.sort(key=lambda i: lengths[i])
        chunks.append([rows[i : i + batch_size] for i in range(0, len(rows), batch_size)])
    return Job(sites=site_list, ids=ids, lengths=lengths, read_index=read_index(lengths, config.position),
               stop=stop, batch_size=batch_size, width=width, chunks=chunks)


def _budget_batch(bridge: Any, budget: int, lengths: list[int], stop: int, n_sites: int) -> int:
    """The most prompts per batch whose forward pass fits ``budget`` bytes (padded to the longest prompt)."""
    cfg = bridge.cfg
    d = int(cfg.d_model)
    footprint = extraction_footprint(
        d_model=d, d_mlp=int(getattr(cfg, "d_mlp", None) or 4 * d), n_heads=int(cfg.n_heads),
        d_vocab=int(cfg.d_vocab), seq_len=max(lengths), n_layers_run=stop, n_sites=n_sites,
        runs_unembed=stop >= cfg.n_layers, bytes_per_float=_float_bytes(bridge))
    batch_size = footprint.batch(budget, cap=len(lengths))
    log.info("memory budget %s: %d prompts per batch (~%s each)", format_size(budget), batch_size,
             format_size(footprint.per_item))
    return batch_size


def _check_bridge(bridge: Any, sites: list[Site]) -> None:
    if getattr(bridge, "training", False):
        raise ProbeInputError("the bridge is in training mode; call bridge.eval() before extracting")
    n_layers = bridge.cfg.n_layers
    hook_names = set(bridge.hook_dict)
    for site in sites:
        if site.layer >= n_layers:
            raise ProbeInputError(
                f"layer {site.layer} requested but the model has {n_layers} blocks (0..{n_layers - 1})"
            )
        if site.head is not None and site.head >= bridge.cfg.n_heads:
            raise ProbeInputError(f"head {site.head} requested but blocks have {bridge.cfg.n_heads} heads")
        if site.hook_name not in hook_names:
            raise ProbeInputError(
                f"this model has no hook {site.hook_name!r}; check bridge.hook_dict for the names it serves"
            )


def _float_bytes(bridge: Any) -> int:
    """Bytes per activation value: the model's floating-point width (bf16/fp16 models: 2)."""
    return max((p.element_size() for p in bridge.parameters() if p.is_floating_point()), default=4)
