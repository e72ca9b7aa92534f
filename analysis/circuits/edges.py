"""The residual-stream edge graph and a forward pass that can cut any set of its edges.

*Writers* add to the residual stream: the embedding, every attention head (its output through
W_O), every MLP. *Readers* take from it: every head's query, key and value input, every MLP
input, and the logits. An edge joins a writer to each reader after it. Because the residual is
a sum, a reader's input is the sum of its writers; cutting an edge replaces that one writer's
term, for that one reader, by its value in another run (all positions at once).

>>> graph = EdgeGraph(n_layers=2, n_heads=4)
>>> graph.n_writers, graph.n_readers, int(graph.valid.sum())
(11, 27, 110)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from analysis.patching.kernels import Kernels, UnsupportedArchitectureError


@dataclass(frozen=True)
class EdgeGraph:
    """Writer and reader names in computation order, and which (writer, reader) pairs are edges.

    Under grouped-query attention a key/value head's input is read once for all the query heads
    it serves, so key and value readers are per key/value head, named ``L{layer}KV{g}.k`` /
    ``.v`` (``L{layer}H{g}.k`` when every head has its own keys and values, as in TL's graph).
    """

    n_layers: int
    n_heads: int
    n_kv_heads: int | None = None
    """Key/value heads per layer; None = ``n_heads`` (no grouped-query attention)."""
    writers: tuple[str, ...] = field(init=False)
    readers: tuple[str, ...] = field(init=False)
    valid: Bool[Tensor, "writer reader"] = field(init=False)

    def __post_init__(self) -> None:
        if self.n_heads % self.kv_heads:
            raise ValueError(f"{self.kv_heads} key/value heads do not divide {self.n_heads} query heads")
        kv_name = "H" if self.kv_heads == self.n_heads else "KV"
        writers, readers, w_time, r_time = ["embed"], [], [0.0], []
        for layer in range(self.n_layers):
            names = [f"L{layer}H{head}.q" for head in range(self.n_heads)]
            names += [f"L{layer}{kv_name}{g}.{c}" for c in "kv" for g in range(self.kv_heads)]
            readers += names
            r_time += [2 * layer + 0.5] * len(names)
            writers += [f"L{layer}H{head}" for head in range(self.n_heads)]
            w_time += [2 * layer + 1.0] * self.n_heads
            readers.append(f"L{layer}.mlp_in")
            r_time.append(2 * layer + 1.5)
            writers.append(f"L{layer}.mlp")
            w_time.append(2 * layer + 2.0)
        readers.append("logits")
        r_time.append(float("inf"))
        object.__setattr__(self, "writers", tuple(writers))
        object.__setattr__(self, "readers", tuple(readers))
        object.__setattr__(self, "valid", torch.tensor(w_time)[:, None] < torch.tensor(r_time)[None, :])

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def n_writers(self) -> int:
        return len(self.writers)

    @property
    def n_readers(self) -> int:
        return len(self.readers)

    @property
    def n_attn_readers(self) -> int:
        """Attention readers per layer: a query per head, a key and a value per key/value head."""
        return self.n_heads + 2 * self.kv_heads

    def head_writer(self, layer: int, head: int) -> int:
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_writer(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def attn_readers(self, layer: int) -> slice:
        """Readers ``q`` (all heads), then ``k``, then ``v`` (all key/value heads) of one layer."""
        start = layer * (self.n_attn_readers + 1)
        return slice(start, start + self.n_attn_readers)

    def mlp_reader(self, layer: int) -> int:
        return layer * (self.n_attn_readers + 1) + self.n_attn_readers

    @property
    def logits_reader(self) -> int:
        return self.n_readers - 1


@dataclass(frozen=True)
class EdgeRun:
    """One forward through the edge graph."""

    answer_logits: Float[Tensor, "batch d_vocab"]
    writes: Float[Tensor, "writer batch pos d_model"]
    """Every writer's contribution to the residual stream."""
    reader_inputs: tuple[Tensor, ...]
    """Per layer: the attention readers' inputs ``[3 * head, batch, pos, d_model]`` and the
    MLP input ``[batch, pos, d_model]``; last the logits reader's input."""


def _head_writes(kernels: Kernels, layer: int, z: Tensor) -> tuple[Tensor, Tensor]:
    """Per-head writes ``[head, batch, pos, d_model]`` (z through W_O alone) and the shared bias."""
    n_heads = z.shape[-2]
    bias = kernels.attn_out(layer, torch.zeros_like(z[:1, :1]))[0, 0]
    alone = torch.eye(n_heads, dtype=z.dtype, device=z.device)[:, None, None, :, None] * z
    return kernels.attn_out(layer, alone) - bias, bias


def edge_forward(
    kernels: Kernels,
    graph: EdgeGraph,
    resid0: Float[Tensor, "batch pos d_model"],
    *,
    cut: Bool[Tensor, "writer reader"] | None = None,
    replacement: Float[Tensor, "writer batch pos d_model"] | None = None,
) -> EdgeRun:
    """Run the model with every reader fed its own copy of the residual stream.

    With ``cut``, each cut edge's writer term is replaced by ``replacement`` (the writer's
    value in another run) in that reader's input only. Gradients flow (no inference mode), so
    ``torch.autograd.grad`` can be taken with respect to ``reader_inputs``.
    """
    if (cut is None) != (replacement is None):
        raise ValueError("pass both cut and replacement, or neither")
    if not kernels.heads_additive:
        raise UnsupportedArchitectureError(
            f"{type(kernels).__name__}: attention output is not a sum of per-head writes (a norm follows "
            "it), so the residual stream has no per-head edges; use exact or attribution patching of heads"
        )
    n_heads, n_kv = graph.n_heads, graph.kv_heads
    positions = torch.arange(resid0.shape[1], device=resid0.device)
    writes: list[Tensor] = [resid0]
    inputs: list[Tensor] = []

    def fed(resid: Tensor, readers: slice | int, copies: int | None) -> Tensor:
        x = resid.unsqueeze(0).repeat(copies, 1, 1, 1) if copies else resid.clone()
        if cut is not None and replacement is not None:
            available = len(writes)
            mask = cut[:available, readers].to(resid.dtype)  # [writer, reader(s)]
            delta = replacement[:available] - torch.stack(writes)
            x = x + (torch.einsum("wr,wbtd->rbtd", mask, delta) if copies else torch.einsum("w,wbtd->btd", mask, delta))
        inputs.append(x)
        return x

    def own(t: Tensor) -> Tensor:  # copy i's projection for head i: [batch, pos, head, d_head]
        heads = torch.arange(t.shape[0], device=t.device)
        return t[heads, :, :, heads].permute(1, 2, 0, 3)

    resid = resid0
    for layer in range(graph.n_layers):
        x = fed(resid, graph.attn_readers(layer), graph.n_attn_readers)  # [q, k, v copies, batch, pos, d_model]
        xq, xk, xv = (kernels.attn_in(layer, part) for part in x.split([n_heads, n_kv, n_kv]))
        q, k, v = kernels.q(layer, xq, positions), kernels.k(layer, xk, positions), kernels.v(layer, xv)
        _, z = kernels.attention(layer, own(q), own(k), own(v))
        head_writes, bias = _head_writes(kernels, layer, z)
        writes.extend(head_writes.unbind(0))
        resid = resid + head_writes.sum(0) + bias
        mlp_out = kernels.mlp(layer, fed(resid, graph.mlp_reader(layer), None))
        writes.append(mlp_out)
        resid = resid + mlp_out
    final = fed(resid, graph.logits_reader, None)
    return EdgeRun(kernels.unembed(final[:, -1]), torch.stack(writes), tuple(inputs))
