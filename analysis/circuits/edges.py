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
from functools import cached_property

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from analysis.patching.kernels import Kernels


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
    write_groups: tuple[Tensor, ...]
    """The writers' contributions to the residual stream in writer order, in groups
    ``[writers, batch, pos, d_model]`` (the embedding, then each layer's heads and its MLP)."""
    reader_inputs: tuple[Tensor, ...]
    """Per layer: the attention readers' inputs ``[3 * head, batch, pos, d_model]`` and the
    MLP input ``[batch, pos, d_model]``; last the logits reader's input."""

    @cached_property
    def writes(self) -> Float[Tensor, "writer batch pos d_model"]:
        """Every writer's contribution to the residual stream (stacked when first asked for)."""
        return torch.cat(self.write_groups)


class _Cuts:
    """What cut edges add to their readers' inputs: each cut writer's ``replacement − write``.

    A reader's input is the residual plus the sum over its cut writers, or equivalently the
    residual plus the sum over *all* earlier writers minus the sum over its kept ones; each
    group of readers takes whichever sum has fewer writers (few kept edges in a small circuit,
    few cut ones in a large one).
    """

    def __init__(self, cut: Bool[Tensor, "writer reader"], replacement: Tensor, resid0: Tensor) -> None:
        self.cut, self.replacement = cut, replacement
        self.deltas: list[Tensor] = []
        self.total = torch.zeros_like(resid0)
        """Sum of every delta so far."""

    def add(self, writes: Float[Tensor, "new batch pos d_model"]) -> None:
        start = len(self.deltas)
        delta = self.replacement[start : start + len(writes)] - writes
        self.deltas.extend(delta.unbind(0))
        self.total = self.total + delta.sum(0)

    def into(self, x: Tensor, readers: slice | int) -> Tensor:
        """``x`` (one copy per reader, or one for a single reader) with the readers' cut terms added."""
        n = len(self.deltas)
        mask = self.cut[:n, readers].to(x.device)  # every writer so far precedes these readers
        by_writer = mask.reshape(n, -1)
        cut_rows = by_writer.any(1).nonzero().flatten().tolist()
        kept_rows = (~by_writer).any(1).nonzero().flatten().tolist()
        rows, sign = (kept_rows, -1.0) if len(kept_rows) < len(cut_rows) else (cut_rows, 1.0)
        if sign < 0:
            x = x + self.total
            mask = ~mask
        if not rows:
            return x
        picked = torch.stack([self.deltas[i] for i in rows])
        weights = sign * mask[rows].to(x.dtype)
        return x + (torch.einsum("wr,wbtd->rbtd", weights, picked) if weights.dim() == 2
                    else torch.einsum("w,wbtd->btd", weights, picked))


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
    n_heads, n_kv = graph.n_heads, graph.kv_heads
    positions = torch.arange(resid0.shape[1], device=resid0.device)
    cuts = None if cut is None or replacement is None else _Cuts(cut, replacement, resid0)
    writes: list[Tensor] = [resid0.unsqueeze(0)]
    inputs: list[Tensor] = []

    def fed(resid: Tensor, readers: slice | int, copies: int | None) -> Tensor:
        x = resid.unsqueeze(0).expand(copies, *resid.shape) if copies else resid
        x = x.clone() if cuts is None else cuts.into(x, readers)
        inputs.append(x)
        return x

    def wrote(new: Tensor) -> None:
        writes.append(new)
        if cuts is not None:
            cuts.add(new)

    if cuts is not None:
        cuts.add(writes[0])
    resid = resid0
    for layer in range(graph.n_layers):
        x = fed(resid, graph.attn_readers(layer), graph.n_attn_readers)  # [q, k, v copies, batch, pos, d_model]
        xq, xk, xv = (kernels.attn_in(layer, part) for part in x.split([n_heads, n_kv, n_kv]))
        q, k, v = kernels.q_own(layer, xq, positions), kernels.k_own(layer, xk, positions), kernels.v_own(layer, xv)
        _, z = kernels.attention(layer, q, k, v)
        head_writes, bias = kernels.head_writes(layer, z)
        wrote(head_writes)
        resid = resid + head_writes.sum(0) + bias
        mlp_out = kernels.mlp(layer, fed(resid, graph.mlp_reader(layer), None))
        wrote(mlp_out.unsqueeze(0))
        resid = resid + mlp_out
    final = fed(resid, graph.logits_reader, None)
    return EdgeRun(kernels.unembed(final[:, -1]), tuple(writes), tuple(inputs))
