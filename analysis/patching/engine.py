"""The exact patching engine: which patched runs can change anything, batched and resumed.

A sweep cell patches one site of one layer in every pair of the batch. Each (cell, pair) is a
*row*. Planning works out, per row, the positions where the patch actually changes the
activation (source ≠ target there): a row with none is the unpatched run (its score is the
baseline, as in the reference, so it is never recomputed), and a row whose first change is at
position ``p`` leaves positions ``< p`` untouched in every later layer (causal attention).
Evaluators then compute only the rows and positions that can differ:

- :class:`FastEvaluator` resumes each row at the patched layer from cached activations,
  reuses the unpatched keys/values of positions ``< p`` and recomputes positions ``>= p``,
  many rows packed into one batched forward (``torch.inference_mode``).
- :class:`analysis.patching.hook_engine.HookEvaluator` runs the bridge with hooks, many rows
  per forward (any architecture).

>>> table = run_rows(evaluator, metric, target, "resid_pre", plans, chunk_tokens=8192)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from analysis.patching.kernels import Kernels, row_stable, visible
from analysis.patching.metrics import Metric
from analysis.patching.sites import BOUNDARY_SITES, HEAD_SITES, TRACE_FIELD, Cells
from analysis.patching.trace import Trace


@dataclass(frozen=True)
class Rows:
    """Patched runs to evaluate at one layer: which cell, which pair, which positions change."""

    cell_index: Int[Tensor, " rows"]
    """Index of the row's cell in its layer's cell list."""
    cells: Cells
    """The row's cell (position / head / source position, -1 = all)."""
    example: Int[Tensor, " rows"]
    """Which pair of the batch."""
    start: Int[Tensor, " rows"]
    """First position the patch changes at its layer."""
    stop: Int[Tensor, " rows"]
    """One past the last position it changes there (``n_pos`` for keys/values and resid_pre)."""

    def __len__(self) -> int:
        return int(self.example.shape[0])

    def take(self, index: Tensor) -> Rows:
        return Rows(self.cell_index[index], self.cells.take(index), self.example[index], self.start[index], self.stop[index])


@dataclass(frozen=True)
class LayerPlan:
    """The rows of one layer of a sweep that need computing."""

    layer: int
    n_cells: int
    rows: Rows


def _differs(site: str, source: Trace, target: Trace, layer: int) -> Tensor:
    field = TRACE_FIELD[site]
    a, b = source.site(field)[layer], target.site(field)[layer]
    if site == "pattern":
        return a != b  # [batch, head, dest, src]
    return (a != b).any(-1)  # [batch, pos] or [batch, pos, head]


def _with_any(d: Tensor, dim: int) -> Tensor:
    """Append an "any" slot along ``dim`` so that index -1 selects all entries."""
    return torch.cat([d, d.any(dim, keepdim=True)], dim=dim)


def changed_positions(
    site: str, layer: int, cells: Cells, source: Trace, target: Trace, *, skip_identical: bool
) -> Bool[Tensor, "cells batch pos"]:
    """Where each cell's patch changes the patched activation, per pair and position."""
    n_batch, n_pos = target.tokens.shape
    pos_mask = cells.pos_mask(n_pos)[:, None, :]
    if not skip_identical:
        return pos_mask.expand(len(cells), n_batch, n_pos)
    d = _differs(site, source, target, layer)
    if site in BOUNDARY_SITES:
        return pos_mask & d[None]
    if site in HEAD_SITES:
        head = torch.where(cells.head < 0, d.shape[-1], cells.head)
        return pos_mask & _with_any(d, -1)[:, :, head].permute(2, 0, 1)
    head = torch.where(cells.head < 0, d.shape[1], cells.head)
    src = torch.where(cells.src < 0, d.shape[-1], cells.src)
    return pos_mask & _with_any(_with_any(d, -1), 1)[:, head, :, src]


def plan_layer(
    site: str, layer: int, cells: Cells, source: Trace, target: Trace, *, skip_identical: bool
) -> LayerPlan:
    """Rows of this layer whose patch can change the answer, with their changed position range.

    In the last layer only the answer position is read afterwards: a patch there matters only
    if it changes that position's output (a key or value at any position does, via attention).
    """
    changed = changed_positions(site, layer, cells, source, target, skip_identical=skip_identical)
    n_pos = changed.shape[-1]
    last_layer = layer == target.resid_pre.shape[0] - 1
    if last_layer and site != "resid_pre":
        reach = changed.any(-1) if site in ("k", "v") else changed[..., -1]
        changed = torch.zeros_like(changed)
        changed[..., -1] = reach
    cell_index, example = changed.any(-1).nonzero(as_tuple=True)
    hits = changed[cell_index, example].int()
    start = hits.argmax(-1)
    stop = n_pos - hits.flip(-1).argmax(-1)
    if site in ("resid_pre", "k", "v"):
        stop = torch.full_like(stop, n_pos)  # every later query reads the changed key/value
    rows = Rows(cell_index, cells.take(cell_index), example, start, stop)
    return LayerPlan(layer=layer, n_cells=len(cells), rows=rows)


class Evaluator(Protocol):
    """Answer logits of patched runs, one per row."""

    def evaluate(self, site: str, layer: int, rows: Rows) -> Float[Tensor, "rows d_vocab"]: ...

    def row_tokens(self, rows: Rows) -> Int[Tensor, " rows"]:
        """Token positions each row costs (for chunking)."""
        ...


def chunks(costs: Int[Tensor, " rows"], *, n_pos: int, chunk_tokens: int) -> Iterator[Tensor]:
    """Split rows into index groups of at most ``chunk_tokens`` computed token positions
    (and at most ``4 * chunk_tokens / n_pos`` rows, which bounds the padded attention tensors)."""
    max_rows = max(1, 4 * chunk_tokens // n_pos)
    begin, total = 0, 0
    cost_list = costs.tolist()
    for i, cost in enumerate(cost_list):
        if i > begin and (total + cost > chunk_tokens or i - begin >= max_rows):
            yield torch.arange(begin, i)
            begin, total = i, 0
        total += cost
    if begin < len(cost_list):
        yield torch.arange(begin, len(cost_list))


def run_rows(
    evaluator: Evaluator,
    metric: Metric,
    target: Trace,
    site: str,
    plans: Sequence[LayerPlan],
    *,
    chunk_tokens: int,
    on_rows: Callable[[int], Any] | None = None,
) -> list[Float[Tensor, "cells batch"]]:
    """Per-pair scores of every cell of every planned layer; untouched rows keep the baseline."""
    n_batch, n_pos = target.tokens.shape
    examples = torch.arange(n_batch, device=target.tokens.device)
    baseline = metric.scores(target.answer_logits, examples)
    tables = []
    for plan in plans:
        table = baseline.expand(plan.n_cells, n_batch).clone()
        costs = evaluator.row_tokens(plan.rows)
        for index in chunks(costs, n_pos=n_pos, chunk_tokens=chunk_tokens):
            rows = plan.rows.take(index.to(plan.rows.example.device))
            logits = evaluator.evaluate(site, plan.layer, rows)
            table[rows.cell_index, rows.example] = metric.scores(logits, rows.example).to(table.dtype)
            if on_rows is not None:
                on_rows(len(rows))
        tables.append(table)
    return tables


@dataclass(frozen=True)
class Packing:
    """Rows' position ranges ``[start, stop)`` laid end to end as one token axis."""

    row: Int[Tensor, " tokens"]
    pos: Int[Tensor, " tokens"]
    offset: Int[Tensor, " rows"]
    start: Int[Tensor, " rows"]
    n_pos: int

    @staticmethod
    def of(start: Tensor, stop: Tensor | int, n_pos: int) -> Packing:
        stop = torch.as_tensor(stop, device=start.device).expand_as(start)
        lengths = stop - start
        row = torch.repeat_interleave(torch.arange(len(start), device=start.device), lengths)
        offset = torch.cumsum(lengths, 0) - lengths
        pos = torch.arange(len(row), device=start.device) - offset[row] + start[row]
        return Packing(row=row, pos=pos, offset=offset, start=start, n_pos=n_pos)

    @property
    def flat(self) -> Tensor:
        """Index into a ``[rows * n_pos]`` padded layout."""
        return self.row * self.n_pos + self.pos

    def index_of(self, row: Tensor, pos: Tensor) -> Tensor:
        """Packed index of (row, pos); the position must lie in the row's range."""
        return self.offset[row] + pos - self.start[row]


class FastEvaluator:
    """Resume patched runs from cached activations with the plain-tensor kernels."""

    def __init__(self, kernels: Kernels, source: Trace, target: Trace) -> None:
        self.kernels, self.source, self.target = kernels, source, target
        self.n_pos = int(target.tokens.shape[1])
        self.block_positions = 0
        """Positions run through a block so far (the reference runs every position of every block)."""

    def row_tokens(self, rows: Rows) -> Tensor:
        return self.n_pos - rows.start

    def evaluate(self, site: str, layer: int, rows: Rows) -> Tensor:
        with torch.inference_mode():
            if site == "resid_pre":
                full = Packing.of(rows.start, self.n_pos, self.n_pos)
                mask = rows.cells.pos_mask(self.n_pos)[full.row, full.pos, None]
                e = rows.example[full.row]
                resid = torch.where(
                    mask, self.source.resid_pre[layer][e, full.pos], self.target.resid_pre[layer][e, full.pos]
                )
                return self._resume(layer, rows.example, full, resid)
            changed = Packing.of(rows.start, rows.stop, self.n_pos)
            return self._continue(layer, rows, changed, self._entry(site, layer, rows, changed))

    def evaluate_head_outputs(
        self, layer: int, rows: Rows, head_outputs: Callable[[Packing], Tensor]
    ) -> Float[Tensor, "rows d_vocab"]:
        """Patched runs whose only change at ``layer`` is new head outputs ``z`` at ``[start, stop)``.

        ``head_outputs(at)`` returns ``z`` ``[tokens, head, d_head]`` for the packed positions
        ``at``; path patching uses this to feed a receiver head an edited input.
        """
        with torch.inference_mode():
            changed = Packing.of(rows.start, rows.stop, self.n_pos)
            self.block_positions += len(changed.row)
            post = self._block_from_z(layer, rows.example[changed.row], changed.pos, head_outputs(changed))
            return self._continue(layer, rows, changed, post)

    def _continue(self, layer: int, rows: Rows, changed: Packing, post: Tensor) -> Tensor:
        """Resume after block ``layer`` from new residuals at the changed positions."""
        full = Packing.of(rows.start, self.n_pos, self.n_pos)
        resid = self.target.resid_post[layer][rows.example[full.row], full.pos]
        resid[full.index_of(changed.row, changed.pos)] = post
        return self._resume(layer + 1, rows.example, full, resid)

    def _block_from_z(self, layer: int, example: Tensor, pos: Tensor, z: Tensor) -> Float[Tensor, "tokens d_model"]:
        mid = self.target.resid_pre[layer][example, pos] + self.kernels.attn_out(layer, z)
        return mid + self.kernels.mlp(layer, mid)

    def _entry(self, site: str, layer: int, rows: Rows, at: Packing) -> Float[Tensor, "tokens d_model"]:
        """The residual after block ``layer`` at the changed positions of each row."""
        self.block_positions += len(at.row)
        e, p = rows.example[at.row], at.pos
        mask = rows.cells.pos_mask(self.n_pos)[at.row, p, None]

        def src(field: str) -> Tensor:
            return self.source.site(field)[layer][e, p]

        def tgt(field: str) -> Tensor:
            return self.target.site(field)[layer][e, p]

        mlp = self.kernels.mlp
        if site == "resid_post":
            return torch.where(mask, src("resid_post"), tgt("resid_post"))
        if site == "mlp_out":
            return tgt("resid_mid") + torch.where(mask, src("mlp_out"), tgt("mlp_out"))
        if site == "mlp_in":
            return tgt("resid_mid") + mlp(layer, torch.where(mask, src("resid_mid"), tgt("resid_mid")))
        if site == "resid_mid":
            mid = torch.where(mask, src("resid_mid"), tgt("resid_mid"))
        elif site == "attn_out":
            mid = tgt("resid_pre") + torch.where(mask, src("attn_out"), tgt("attn_out"))
        else:
            return self._block_from_z(layer, e, p, self._patched_z(site, layer, rows, at))
        return mid + mlp(layer, mid)

    def _patched_z(self, site: str, layer: int, rows: Rows, at: Packing) -> Float[Tensor, "tokens head d_head"]:
        """Head outputs at the changed positions after patching z, q, k, v or the pattern."""
        if site in ("k", "v"):
            return self._patched_kv_z(site, layer, rows, at)
        kern, source, target, n_pos = self.kernels, self.source, self.target, self.n_pos
        e, p = rows.example[at.row], at.pos
        heads = rows.cells.head_mask(kern.n_heads)[at.row]  # [tokens, head]
        here = rows.cells.pos_mask(n_pos)[at.row, p][:, None] & heads  # patched (pos, head)
        z_target = target.z[layer][e, p]
        if site == "z":
            return torch.where(here[..., None], source.z[layer][e, p], z_target)
        if site == "q":
            queries = torch.where(here[..., None], source.q[layer][e, p], target.q[layer][e, p])
            keys = kern.expand_kv(target.k[layer])
            scores = self._per_example(e, lambda b: row_stable(
                lambda qs: torch.einsum("nhd,thd->nht", qs, keys[b]), queries[e == b]))
            hidden = ~visible(p, torch.arange(n_pos, device=p.device), kern.window(layer))
            pattern = (scores * kern.attn_scale(layer)).masked_fill(hidden[:, None, :], float("-inf")).softmax(-1)
        else:  # pattern
            src_ok = rows.cells.src_mask(n_pos)[at.row]
            patch = here[:, :, None] & src_ok[:, None, :]
            pattern = torch.where(patch, source.pattern[layer][e, :, p], target.pattern[layer][e, :, p])
        values = kern.expand_kv(target.v[layer])
        z = self._per_example(e, lambda b: row_stable(
            lambda ps: torch.einsum("nht,thd->nhd", ps, values[b]), pattern[e == b]))
        return torch.where(here[..., None], z, z_target)

    def _patched_kv_z(self, site: str, layer: int, rows: Rows, at: Packing) -> Float[Tensor, "tokens head d_head"]:
        """Head outputs after patching keys or values of key/value heads (each read by its query heads)."""
        kern, source, target = self.kernels, self.source, self.target
        ex, kv_heads = rows.example, rows.cells.head_mask(kern.n_kv_heads)
        where = (rows.cells.pos_mask(self.n_pos)[:, :, None] & kv_heads[:, None, :])[..., None]
        q, k, v = target.q[layer][ex], target.k[layer][ex], target.v[layer][ex]
        if site == "k":
            k = torch.where(where, source.k[layer][ex], k)
        else:
            v = torch.where(where, source.v[layer][ex], v)
        _, z = kern.attention(layer, q, k, v)
        readers = kern.query_heads(kv_heads)[at.row]  # [tokens, head]
        return torch.where(readers[..., None], z[at.row, at.pos], target.z[layer][ex[at.row], at.pos])

    @staticmethod
    def _per_example(e: Tensor, fn: Callable[[int], Tensor]) -> Tensor:
        """Apply ``fn(b)`` to the tokens of each pair ``b`` and put results back in token order."""
        out: Tensor | None = None
        for b in torch.unique(e).tolist():
            part = fn(b)
            if out is None:
                out = part.new_empty((len(e), *part.shape[1:]))
            out[e == b] = part
        assert out is not None
        return out

    def _resume(self, layer: int, example: Tensor, at: Packing, resid: Tensor) -> Float[Tensor, "rows d_vocab"]:
        """Run blocks ``layer..`` on each row's positions ``>= start``; unpatched K/V before that."""
        kern, target, n_pos = self.kernels, self.target, self.n_pos
        n_rows = len(example)
        last = at.index_of(torch.arange(n_rows, device=example.device), torch.full_like(example, n_pos - 1))
        flat = at.flat
        for layer_ in range(layer, kern.n_layers):
            self.block_positions += len(at.row)
            q, k, v = kern.qkv(layer_, resid, at.pos)
            keys, values = target.k[layer_][example], target.v[layer_][example]  # [rows, pos, kv_head, d_head]
            keys.view(n_rows * n_pos, *k.shape[1:])[flat] = k
            values.view(n_rows * n_pos, *v.shape[1:])[flat] = v
            if layer_ < kern.n_layers - 1:
                queries = q.new_zeros(n_rows * n_pos, *q.shape[1:])
                queries[flat] = q
                z = _attend(kern, layer_, queries.view(n_rows, n_pos, *q.shape[1:]), keys, values, causal=True)
                resid = resid + kern.attn_out(layer_, z.reshape(n_rows * n_pos, *q.shape[1:])[flat])
                resid = resid + kern.mlp(layer_, resid)
            else:  # only the answer position's output matters after the last block
                z = _attend(kern, layer_, q[last].unsqueeze(1), keys, values, causal=False).squeeze(1)
                answer = resid[last] + kern.attn_out(layer_, z)
                return kern.unembed(answer + kern.mlp(layer_, answer))
        return kern.unembed(resid[last])


def _attend(
    kern: Kernels, layer: int, queries: Tensor, keys: Tensor, values: Tensor, *, causal: bool
) -> Float[Tensor, "rows query head d_head"]:
    """Attention of queries ``[rows, query, head, d]`` over whole rows of keys/values ``[rows, pos, kv_head, d]``.

    ``causal``: query ``i`` is position ``i``; otherwise the queries are the last position.
    """
    n_query, n_pos = queries.shape[1], keys.shape[1]
    window = kern.window(layer)
    keys, values = (kern.expand_kv(t).transpose(1, 2) for t in (keys, values))
    key_pos = torch.arange(n_pos, device=keys.device)
    query_pos = key_pos if causal else torch.full((n_query,), n_pos - 1, device=keys.device)
    mask = None if window is None else visible(query_pos, key_pos, window)
    z = F.scaled_dot_product_attention(
        queries.transpose(1, 2), keys, values, attn_mask=mask, is_causal=causal and mask is None,
        scale=kern.attn_scale(layer),
    )
    return z.transpose(1, 2)
