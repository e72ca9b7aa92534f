"""What can be patched (sites) and the sweeps over them (which cells, which axes).

A *site* is one activation family (``resid_pre``, a head's ``z``, ...). A *sweep* patches a
site once per cell of a grid: every layer, times positions and/or heads. Cells are index
triples ``(pos, head, src)`` where ``-1`` means "all" (e.g. a head's output at every position).

>>> sorted(SWEEPS)[:3]
['attn_out', 'head_k', 'head_k_by_pos']
>>> grid_cells(SWEEPS["head_out_by_pos"], n_pos=3, n_heads=2).pos.tolist()
[0, 0, 1, 1, 2, 2]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from backdoor_models.core.errors import lookup

BOUNDARY_SITES = ("resid_pre", "resid_mid", "mlp_in", "resid_post", "attn_out", "mlp_out")
"""Residual-stream-shaped sites ``[batch, pos, d_model]``.

``resid_mid`` patches the residual stream between attention and MLP (the MLP input *and* the
skip connection). ``mlp_in`` patches only the MLP branch's input, which is what
``transformer_lens.patching.get_act_patch_resid_mid`` does on a ``TransformerBridge`` (its
``hook_resid_mid`` is ``ln2.hook_in``)."""
HEAD_SITES = ("z", "q", "k", "v")
"""Per-head vector sites ``[batch, pos, head, d_head]``; ``z`` is the head output before W_O."""
PATTERN_SITE = "pattern"
"""Attention pattern ``[batch, head, dest_pos, src_pos]``."""
SITES = BOUNDARY_SITES + HEAD_SITES + (PATTERN_SITE,)

TRACE_FIELD = {site: site for site in SITES} | {"mlp_in": "resid_mid"}
"""Site → the cached activation it replaces."""


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """A grid of patches: every layer × the listed cell axes."""

    name: str
    """Registry name."""
    site: str
    """Activation family patched."""
    cell_axes: tuple[str, ...]
    """Axes after ``layer``: ``pos`` / ``dest_pos`` / ``src_pos`` / ``head``; absent = all."""

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise ValueError(f"unknown site {self.site!r}; choose one of {SITES}")

    @property
    def axes(self) -> tuple[str, ...]:
        return ("layer", *self.cell_axes)


def _sweeps() -> dict[str, Sweep]:
    sweeps = [Sweep(name=site, site=site, cell_axes=("pos",)) for site in BOUNDARY_SITES]
    for short, site in (("out", "z"), ("q", "q"), ("k", "k"), ("v", "v"), ("pattern", "pattern")):
        sweeps.append(Sweep(name=f"head_{short}", site=site, cell_axes=("head",)))
        sweeps.append(Sweep(name=f"head_{short}_by_pos", site=site, cell_axes=("pos", "head")))
    sweeps.append(
        Sweep(name="head_pattern_dest_src", site="pattern", cell_axes=("dest_pos", "src_pos", "head"))
    )
    return {s.name: s for s in sweeps}


SWEEPS: dict[str, Sweep] = _sweeps()
"""Every sweep by name. ``head_*`` sweeps patch one head at all positions; ``*_by_pos`` one
(position, head); for patterns ``pos`` is the destination (query) position."""

DEFAULT_SWEEPS = ("resid_pre", "head_out", "head_out_by_pos")
"""The standard set: residual stream by layer × position, head outputs, head outputs by position."""


def get_sweep(name: str) -> Sweep:
    return lookup(SWEEPS, "sweep", name)


@dataclass(frozen=True)
class Cells:
    """Cells of one layer: position, head and source position per cell (``-1`` = all)."""

    pos: Int[Tensor, " cells"]
    head: Int[Tensor, " cells"]
    src: Int[Tensor, " cells"]

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    def take(self, index: Int[Tensor, " rows"]) -> Cells:
        return Cells(self.pos[index], self.head[index], self.src[index])

    def to(self, device: str | torch.device) -> Cells:
        return Cells(self.pos.to(device), self.head.to(device), self.src.to(device))

    def pos_mask(self, n_pos: int) -> Bool[Tensor, "cells n_pos"]:
        return _mask(self.pos, n_pos)

    def head_mask(self, n_heads: int) -> Bool[Tensor, "cells n_heads"]:
        return _mask(self.head, n_heads)

    def src_mask(self, n_pos: int) -> Bool[Tensor, "cells n_pos"]:
        return _mask(self.src, n_pos)


def _mask(index: Tensor, size: int) -> Tensor:
    return (index[:, None] == torch.arange(size, device=index.device)) | (index[:, None] < 0)


def grid_cells(sweep: Sweep, *, n_pos: int, n_heads: int) -> Cells:
    """All cells of one layer of ``sweep``, in C order of its cell axes."""
    sizes = {"pos": n_pos, "dest_pos": n_pos, "src_pos": n_pos, "head": n_heads}
    ranges = [torch.arange(sizes[a]) for a in sweep.cell_axes]
    grids = torch.meshgrid(*ranges, indexing="ij") if ranges else ()
    flat = {a: g.reshape(-1) for a, g in zip(sweep.cell_axes, grids)}
    n = int(torch.tensor([sizes[a] for a in sweep.cell_axes]).prod()) if ranges else 1
    all_ = torch.full((n,), -1, dtype=torch.long)
    return Cells(
        pos=flat.get("pos", flat.get("dest_pos", all_)),
        head=flat.get("head", all_),
        src=flat.get("src_pos", all_),
    )


def single_cell(*, pos: int | None = None, head: int | None = None, src: int | None = None) -> Cells:
    """One cell; ``None`` means all positions / heads / source positions."""

    def one(value: int | None) -> Tensor:
        return torch.tensor([-1 if value is None else int(value)])

    return Cells(one(pos), one(head), one(src))
