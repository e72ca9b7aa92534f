"""GPT-2 kernels (``GPT2LMHeadModel``): pre-LayerNorm blocks, fused QKV, learned positions."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from analysis.patching.kernels.base import (
    Kernels,
    UnsupportedArchitectureError,
    activation,
    matmul_rows,
    own_linear,
    raw,
)


def _conv1d(x: Tensor, weight_bias: tuple[Tensor, Tensor]) -> Tensor:
    """HF ``Conv1D`` (``x @ W + b``) over the last axis of ``x``."""
    weight, bias = weight_bias
    return matmul_rows(lambda rows: torch.addmm(bias, rows, weight), x)


def _weight_bias(module: Any) -> tuple[Tensor, Tensor]:
    module = raw(module)
    return module.weight.detach(), module.bias.detach()


class Gpt2Kernels(Kernels):
    """GPT-2: every head has its own key and value (``n_kv_heads == n_heads``)."""

    def __init__(self, hf_model: Any) -> None:
        config = hf_model.config
        if getattr(config, "reorder_and_upcast_attn", False) or getattr(config, "add_cross_attention", False):
            raise UnsupportedArchitectureError(
                "GPT-2 with reorder_and_upcast_attn or cross-attention has no fast kernels; "
                "pass engine='hooks'"
            )
        transformer = hf_model.transformer
        self.n_layers = config.n_layer
        self.n_heads = self.n_kv_heads = config.n_head
        self.d_model = config.n_embd
        self.d_head = self.d_model // self.n_heads
        self.d_vocab = config.vocab_size
        self._eps = config.layer_norm_epsilon
        self._act = activation(config.activation_function)
        self._scale = [
            (self.d_head**-0.5 if config.scale_attn_weights else 1.0)
            / (float(i + 1) if config.scale_attn_by_inverse_layer_idx else 1.0)
            for i in range(self.n_layers)
        ]
        self._wte = raw(transformer.wte).weight.detach()
        self._wpe = raw(transformer.wpe).weight.detach()
        self._blocks = [self._block(block) for block in transformer.h]
        self._ln_f = _weight_bias(transformer.ln_f)
        self._w_u = raw(hf_model.lm_head).weight.detach()

    def _block(self, block: Any) -> dict[str, tuple[Tensor, Tensor]]:
        """One block's weights; the fused QKV projection split into its query, key and value thirds."""
        weight, bias = _weight_bias(block.attn.c_attn)
        d = self.d_model
        thirds = {name: (weight[:, i * d:(i + 1) * d].contiguous(), bias[i * d:(i + 1) * d])
                  for i, name in enumerate("qkv")}
        return {
            "ln1": _weight_bias(block.ln_1), "ln2": _weight_bias(block.ln_2), **thirds,
            "o": _weight_bias(block.attn.c_proj), "fc": _weight_bias(block.mlp.c_fc),
            "proj": _weight_bias(block.mlp.c_proj),
        }

    def _ln(self, x: Tensor, weight_bias: tuple[Tensor, Tensor]) -> Tensor:
        return F.layer_norm(x, (self.d_model,), weight_bias[0], weight_bias[1], self._eps)

    def _project(self, layer: int, name: str, x: Tensor) -> Tensor:
        out = _conv1d(x, self._blocks[layer][name])
        return out.view(*x.shape[:-1], self.n_heads, self.d_head)

    def embed(self, tokens):
        positions = torch.arange(tokens.shape[-1], device=tokens.device)
        return self._wte[tokens] + self._wpe[positions]

    def attn_in(self, layer, resid):
        return self._ln(resid, self._blocks[layer]["ln1"])

    def q(self, layer, x, positions):
        return self._project(layer, "q", x)

    def k(self, layer, x, positions):
        return self._project(layer, "k", x)

    def v(self, layer, x):
        return self._project(layer, "v", x)

    def _own(self, layer: int, name: str, x: Tensor) -> Tensor:
        weight, bias = self._blocks[layer][name]
        return own_linear(x, weight.T, bias)

    def q_own(self, layer, x, positions):
        return self._own(layer, "q", x)

    def k_own(self, layer, x, positions):
        return self._own(layer, "k", x)

    def v_own(self, layer, x):
        return self._own(layer, "v", x)

    def attn_scale(self, layer: int) -> float:
        return self._scale[layer]

    def attn_out(self, layer, z):
        return _conv1d(z.reshape(*z.shape[:-2], self.d_model), self._blocks[layer]["o"])

    def _head_writes(self, layer, z):
        weight, bias = self._blocks[layer]["o"]
        return torch.einsum("...he,hed->h...d", z, weight.view(self.n_heads, self.d_head, self.d_model)), bias

    def mlp(self, layer, resid_mid):
        block = self._blocks[layer]
        hidden = self._act(_conv1d(self._ln(resid_mid, block["ln2"]), block["fc"]))
        return _conv1d(hidden, block["proj"])

    def unembed(self, resid):
        return matmul_rows(lambda rows: rows @ self._w_u.T, self._ln(resid, self._ln_f))
