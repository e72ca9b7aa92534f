"""Llama-family kernels: ``LlamaForCausalLM`` (Llama 2/3, SmolLM2) and ``Qwen2ForCausalLM``.

RMSNorm before attention and MLP, rotary position embeddings (computed by the model's own
rotary module, so any rope scaling it applies is kept), a gated MLP, optional biases on the
projections (Qwen2's query/key/value biases), grouped-query attention and sliding-window layers
(``config.layer_types``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from analysis.patching.kernels.base import (
    Kernels,
    UnsupportedArchitectureError,
    activation,
    linear,
    own_linear,
    raw,
)


class LlamaKernels(Kernels):
    """Llama (and Qwen2): RMSNorm, rotary embeddings, gated MLP, grouped-query attention."""

    _BLOCK_MODULES = {
        "ln1": "input_layernorm", "ln2": "post_attention_layernorm", "q": "self_attn.q_proj",
        "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj", "attn": "self_attn",
        "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj",
    }
    """Kernel name → HF submodule path inside one decoder layer."""

    def __init__(self, hf_model: Any) -> None:
        config = hf_model.config
        self.n_layers = config.num_hidden_layers
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = getattr(config, "num_key_value_heads", None) or self.n_heads
        self.d_model = config.hidden_size
        self.d_head = getattr(config, "head_dim", None) or self.d_model // self.n_heads
        self.d_vocab = config.vocab_size
        self.check_heads()
        if getattr(config, "pretraining_tp", 1) != 1:
            raise UnsupportedArchitectureError(
                "Llama with tensor-parallel slicing (pretraining_tp != 1) has no fast kernels; pass engine='hooks'"
            )
        self._act = activation(getattr(config, "hidden_activation", None) or config.hidden_act)
        layer_types = getattr(config, "layer_types", None) or ["full_attention"] * self.n_layers
        sliding = getattr(config, "sliding_window", None)
        self._layer_types = list(layer_types)
        self._windows = [sliding if kind == "sliding_attention" else None for kind in layer_types]
        model = hf_model.model
        self._embed = raw(model.embed_tokens).weight.detach()
        self._rotary = raw(model.rotary_emb)
        self._blocks = [
            {name: self._submodule(layer, path) for name, path in self._BLOCK_MODULES.items()}
            for layer in model.layers
        ]
        self._scales = [float(block["attn"].scaling) for block in self._blocks]
        self._norm = raw(model.norm)
        self._lm_head = raw(hf_model.lm_head)
        self._cos_sin: dict[str | None, tuple[Tensor, Tensor]] = {}

    @staticmethod
    def _submodule(layer: Any, path: str) -> Any:
        module = layer
        for part in path.split("."):
            module = raw(getattr(module, part))
        return module

    @staticmethod
    def _rms(x: Tensor, norm: Any) -> Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return norm.weight.detach() * (x.float() * torch.rsqrt(variance + norm.variance_epsilon)).to(x.dtype)

    def _rope_kind(self, layer: int) -> str | None:
        """Which rotary table ``layer`` uses (one for every layer here)."""
        return None

    def _rotary_table(self, kind: str | None, like: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
        return self._rotary(like, ids)

    def _rotate(self, layer: int, x: Tensor, positions: Tensor) -> Tensor:
        """Rotary embedding of queries or keys ``[..., heads, d_head]`` at ``positions``."""
        kind = self._rope_kind(layer)
        needed = int(positions.max()) + 1 if positions.numel() else 1
        if kind not in self._cos_sin or self._cos_sin[kind][0].shape[0] < needed:
            ids = torch.arange(max(needed, 64), device=x.device)[None]
            cos, sin = self._rotary_table(kind, x, ids)
            self._cos_sin[kind] = (cos[0].detach(), sin[0].detach())
        cos, sin = (t[positions].unsqueeze(-2) for t in self._cos_sin[kind])
        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def _heads(self, x: Tensor, n: int) -> Tensor:
        return x.view(*x.shape[:-1], n, self.d_head)

    def embed(self, tokens):
        return self._embed[tokens]

    def attn_in(self, layer, resid):
        return self._rms(resid, self._blocks[layer]["ln1"])

    def _finish_q(self, layer: int, q: Tensor, positions: Tensor) -> Tensor:
        """Projected queries ``[..., head, d_head]`` to what attention reads (rotary embedding here)."""
        return self._rotate(layer, q, positions)

    def _finish_k(self, layer: int, k: Tensor, positions: Tensor) -> Tensor:
        """Projected keys ``[..., kv_head, d_head]`` to what attention reads (rotary embedding here)."""
        return self._rotate(layer, k, positions)

    def _own(self, layer: int, name: str, x: Tensor) -> Tensor:
        module = self._blocks[layer][name]
        return own_linear(x, module.weight.detach(), None if module.bias is None else module.bias.detach())

    def q(self, layer, x, positions):
        return self._finish_q(layer, self._heads(linear(x, self._blocks[layer]["q"]), self.n_heads), positions)

    def k(self, layer, x, positions):
        return self._finish_k(layer, self._heads(linear(x, self._blocks[layer]["k"]), self.n_kv_heads), positions)

    def v(self, layer, x):
        return self._heads(linear(x, self._blocks[layer]["v"]), self.n_kv_heads)

    def q_own(self, layer, x, positions):
        return self._finish_q(layer, self._own(layer, "q", x), positions)

    def k_own(self, layer, x, positions):
        return self._finish_k(layer, self._own(layer, "k", x), positions)

    def v_own(self, layer, x):
        return self._own(layer, "v", x)

    def attn_scale(self, layer: int) -> float:
        return self._scales[layer]

    def window(self, layer: int) -> int | None:
        return self._windows[layer]

    def attn_out(self, layer, z):
        return linear(z.reshape(*z.shape[:-2], self.n_heads * self.d_head), self._blocks[layer]["o"])

    def _head_writes(self, layer, z):
        o = self._blocks[layer]["o"]
        weight = o.weight.detach().view(self.d_model, self.n_heads, self.d_head)
        bias = o.bias.detach() if o.bias is not None else weight.new_zeros(self.d_model)
        return torch.einsum("...he,dhe->h...d", z, weight), bias

    def _gated(self, layer: int, x: Tensor) -> Tensor:
        block = self._blocks[layer]
        return linear(self._act(linear(x, block["gate"])) * linear(x, block["up"]), block["down"])

    def mlp(self, layer, resid_mid):
        return self._gated(layer, self._rms(resid_mid, self._blocks[layer]["ln2"]))

    def unembed(self, resid):
        return linear(self._rms(resid, self._norm), self._lm_head)
