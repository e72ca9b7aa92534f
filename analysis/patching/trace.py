"""Every activation patching needs from one unpatched run, stacked by layer.

Two ways to fill it: :func:`trace_kernels` runs the plain-tensor kernels (fast engine);
:func:`trace_bridge` reads a ``TransformerBridge`` cache (hooks engine). Both give the
same fields with the same shapes.

>>> trace = trace_kernels(kernels, tokens)  # doctest: +SKIP
>>> trace.resid_pre.shape  # [n_layers, batch, pos, d_model]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from analysis.patching.forward import last_position_only
from analysis.patching.kernels import Kernels


@dataclass(frozen=True)
class Trace:
    """Activations of one run, ``[n_layers, ...]`` per site, plus its answer logits.

    Keys and values have the model's key/value heads (fewer than its query heads under
    grouped-query attention), as the bridge's ``hook_k`` / ``hook_v`` do.
    """

    tokens: Int[Tensor, "batch pos"]
    resid_pre: Float[Tensor, "layer batch pos d_model"]
    q: Float[Tensor, "layer batch pos head d_head"]
    k: Float[Tensor, "layer batch pos kv_head d_head"]
    v: Float[Tensor, "layer batch pos kv_head d_head"]
    pattern: Float[Tensor, "layer batch head dest src"]
    z: Float[Tensor, "layer batch pos head d_head"]
    attn_out: Float[Tensor, "layer batch pos d_model"]
    resid_mid: Float[Tensor, "layer batch pos d_model"]
    mlp_out: Float[Tensor, "layer batch pos d_model"]
    resid_post: Float[Tensor, "layer batch pos d_model"]
    answer_logits: Float[Tensor, "batch d_vocab"]

    def site(self, name: str) -> Tensor:
        return getattr(self, name)


_STACKED = ("resid_pre", "q", "k", "v", "pattern", "z", "attn_out", "resid_mid", "mlp_out", "resid_post")


def trace_kernels(kernels: Kernels, tokens: Int[Tensor, "batch pos"]) -> Trace:
    """Run the kernels' forward once, keeping every site (under ``inference_mode``)."""
    acts: dict[str, list[Tensor]] = {name: [] for name in _STACKED}
    positions = torch.arange(tokens.shape[1], device=tokens.device).expand(tokens.shape)
    with torch.inference_mode():
        resid = kernels.embed(tokens)
        for layer in range(kernels.n_layers):
            q, k, v = kernels.qkv(layer, resid, positions)
            pattern, z = kernels.attention(layer, q, k, v)
            attn_out = kernels.attn_out(layer, z)
            mid = resid + attn_out
            mlp_out = kernels.mlp(layer, mid)
            post = mid + mlp_out
            for name, value in zip(_STACKED, (resid, q, k, v, pattern, z, attn_out, mid, mlp_out, post)):
                acts[name].append(value)
            resid = post
        logits = kernels.unembed(resid[:, -1])
    return Trace(tokens, **{name: torch.stack(values) for name, values in acts.items()}, answer_logits=logits)


_HOOKS = {
    "resid_pre": "blocks.{}.hook_resid_pre",
    "q": "blocks.{}.attn.hook_q",
    "k": "blocks.{}.attn.hook_k",
    "v": "blocks.{}.attn.hook_v",
    "pattern": "blocks.{}.attn.hook_pattern",
    "z": "blocks.{}.attn.hook_z",
    "attn_out": "blocks.{}.hook_attn_out",
    "resid_mid": "blocks.{}.hook_resid_mid",
    "mlp_out": "blocks.{}.hook_mlp_out",
    "resid_post": "blocks.{}.hook_resid_post",
}
"""Trace field → bridge hook name (``{}`` is the layer)."""


def hook_name(site_field: str, layer: int) -> str:
    return _HOOKS[site_field].format(layer)


def trace_bridge(bridge: Any, tokens: Int[Tensor, "batch pos"]) -> Trace:
    """Fill a trace from one ``run_with_cache`` of the bridge."""
    n_layers = bridge.cfg.n_layers
    # Parallel-residual blocks (GPT-NeoX/Pythia, GPT-J) have no resid_mid: attention and MLP both
    # read resid_pre. The trace then holds resid_pre + attn_out there (what the block has summed
    # after attention); the bridge serves no resid_mid hook to patch on such models.
    fields = [f for f in _STACKED if f != "resid_mid" or hook_name(f, 0) in bridge.hook_dict]
    names = [hook_name(f, layer) for f in fields for layer in range(n_layers)]
    with torch.inference_mode():
        logits, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n in names, **last_position_only(bridge))
        stacked = {f: torch.stack([cache[hook_name(f, layer)] for layer in range(n_layers)]) for f in fields}
    if "resid_mid" not in stacked:
        stacked["resid_mid"] = stacked["resid_pre"] + stacked["attn_out"]
    return Trace(tokens, **stacked, answer_logits=logits[:, -1])
