"""Gemma 3 kernels (``Gemma3ForCausalLM``, the text-only model).

Gemma 3 is a Llama-family block with: the embedding scaled by ``sqrt(d_model)``; RMSNorms that
scale by ``1 + weight`` in float32; a per-head RMSNorm on queries and keys before the rotary
embedding; a norm *after* attention and after the MLP as well as before them; attention scaled
by ``query_pre_attn_scalar ** -0.5``; sliding-window layers with their own rotary table; and
optional soft-capping of the final logits.

Refused (:class:`UnsupportedArchitectureError`): ``attn_logit_softcapping`` (Hugging Face's
Gemma 3 attention ignores it while the TransformerLens bridge applies it, so there is no one
forward to reproduce; released Gemma 3 configs leave it unset) and bidirectional attention.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from analysis.patching.kernels.base import UnsupportedArchitectureError, raw
from analysis.patching.kernels.llama import LlamaKernels


class Gemma3Kernels(LlamaKernels):
    """Gemma 3: Llama kernels plus its norms, embedding scale, per-layer rotary tables and logit cap."""

    _BLOCK_MODULES = {
        **LlamaKernels._BLOCK_MODULES,
        "ln1_post": "post_attention_layernorm", "ln2": "pre_feedforward_layernorm",
        "ln2_post": "post_feedforward_layernorm", "q_norm": "self_attn.q_norm", "k_norm": "self_attn.k_norm",
    }
    heads_additive = False  # the norm after attention mixes the heads' outputs

    def __init__(self, hf_model: Any) -> None:
        config = hf_model.config
        missing = [
            what for what, present in (
                ("attn_logit_softcapping (the bridge applies it, Hugging Face's Gemma 3 attention does not)",
                 getattr(config, "attn_logit_softcapping", None) is not None),
                ("use_bidirectional_attention", bool(getattr(config, "use_bidirectional_attention", False))),
            ) if present
        ]
        if missing:
            raise UnsupportedArchitectureError(
                f"the fast Gemma 3 kernels do not implement {' or '.join(missing)}; pass engine='hooks'"
            )
        super().__init__(hf_model)
        if not hasattr(self._rotary, "layer_types"):
            raise UnsupportedArchitectureError(
                "this transformers version's Gemma 3 rotary module takes no layer type; pass engine='hooks'"
            )
        embedding = raw(hf_model.model.embed_tokens)
        self._embed_scale = embedding.embed_scale.to(embedding.weight.dtype)
        self._softcap = getattr(config, "final_logit_softcapping", None)

    @staticmethod
    def _rms(x: Tensor, norm: Any) -> Tensor:
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + norm.eps)
        return (y * (1.0 + norm.weight.detach().float())).type_as(x)

    def _rope_kind(self, layer: int) -> str | None:
        return self._layer_types[layer]

    def _rotary_table(self, kind: str | None, like: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
        return self._rotary(like, ids, kind)

    def embed(self, tokens):
        return self._embed[tokens] * self._embed_scale

    def _finish_q(self, layer, q, positions):
        return self._rotate(layer, self._rms(q, self._blocks[layer]["q_norm"]), positions)

    def _finish_k(self, layer, k, positions):
        return self._rotate(layer, self._rms(k, self._blocks[layer]["k_norm"]), positions)

    def attn_out(self, layer, z):
        return self._rms(super().attn_out(layer, z), self._blocks[layer]["ln1_post"])

    def mlp(self, layer, resid_mid):
        block = self._blocks[layer]
        return self._rms(self._gated(layer, self._rms(resid_mid, block["ln2"])), block["ln2_post"])

    def unembed(self, resid):
        logits = super().unembed(resid)
        if self._softcap is not None:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits
