"""Patched runs through the bridge's hooks: the engine for any architecture the kernels lack.

Each row of a plan (see :mod:`analysis.patching.engine`) is one bridge forward with a hook
that replaces the patched activation by the source run's, many rows per forward; only the
answer position is unembedded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from analysis.patching.engine import Rows
from analysis.patching.forward import last_position_only
from analysis.patching.sites import BOUNDARY_SITES, HEAD_SITES, TRACE_FIELD
from analysis.patching.trace import Trace, hook_name


class HookEvaluator:
    """Patched runs through ``TransformerBridge.run_with_hooks``, many rows per forward."""

    def __init__(self, bridge: Any, source: Trace, target: Trace) -> None:
        self.bridge, self.source, self.target = bridge, source, target
        self.n_pos = int(target.tokens.shape[1])

    def row_tokens(self, rows: Rows) -> Tensor:
        return torch.full_like(rows.start, self.n_pos)

    def evaluate(self, site: str, layer: int, rows: Rows) -> Tensor:
        ex, cells, n_pos = rows.example, rows.cells, self.n_pos
        field = TRACE_FIELD[site]
        replacement = self.source.site(field)[layer][ex]
        # key/value sites have the model's key/value heads (fewer under grouped-query attention)
        n_heads = int(replacement.shape[-2]) if site in HEAD_SITES else int(self.bridge.cfg.n_heads)
        name = hook_name(field, layer)
        pos = cells.pos_mask(n_pos)
        if site == "resid_mid":  # the residual itself: patch the attention output that builds it
            replacement = replacement - self.target.resid_pre[layer][ex]
            name = hook_name("attn_out", layer)
        if site in BOUNDARY_SITES:
            mask = pos[:, :, None]
        elif site in HEAD_SITES:
            mask = (pos[:, :, None] & cells.head_mask(n_heads)[:, None, :])[..., None]
        else:
            mask = cells.head_mask(n_heads)[:, :, None, None] & pos[:, None, :, None] & cells.src_mask(n_pos)[:, None, None, :]

        def patch(activation: Tensor, hook: Any) -> Tensor:
            return torch.where(mask, replacement.to(activation.dtype), activation)

        with torch.inference_mode():
            logits = self.bridge.run_with_hooks(
                self.target.tokens[ex], fwd_hooks=[(name, patch)], **last_position_only(self.bridge)
            )
        return logits[:, -1]
