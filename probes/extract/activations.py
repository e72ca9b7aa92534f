"""The activation container, in memory or as safetensors shards + ``index.json`` on disk.

>>> import torch
>>> from probes.sites import Site
>>> acts = Activations.from_tensors({Site(hook="resid_post", layer=1): torch.ones(3, 4)})
>>> acts.at("resid_post", 1).shape, acts.layers_run
(torch.Size([3, 4]), 2)
>>> acts.get("blocks.0.hook_resid_post")
Traceback (most recent call last):
...
probes.errors.ProbeInputError: site 'blocks.0.hook_resid_post' was not extracted; extracted: ['blocks.1.hook_resid_post']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from backdoor_models.core.artifacts import atomic_open, inside, read_json
from probes.errors import ProbeInputError
from probes.sites import Site

INDEX = "index.json"
"""The file of a shard directory that describes it (:meth:`Activations.metadata`)."""


@dataclass(frozen=True, kw_only=True)
class Activations:
    """One vector per prompt and site, in memory or in safetensors shards on disk."""

    sites: tuple[Site, ...]
    """The sites extracted, in request order."""
    n: int
    """Number of prompts."""
    d: int
    """Vector width (d_model)."""
    position: str | int
    """Read position used (see :class:`ExtractConfig`)."""
    padding_side: str
    """Padding side used."""
    dtype: str
    """Storage dtype."""
    layers_run: int
    """Blocks actually run per forward pass (``stop_at_layer``)."""
    token_lengths: tuple[int, ...] = field(repr=False)
    """Tokens per prompt, BOS included."""
    tensors: dict[str, Tensor] = field(default_factory=dict, repr=False)
    """In-memory vectors by site key (empty when streamed to disk)."""
    shard_dir: str | None = None
    """Directory of the shards when streamed."""
    shard_files: tuple[str, ...] = ()
    """Shard file names in prompt order."""
    batch_size: int | None = None
    """Prompts per forward pass used (chosen from the memory budget when one was given)."""

    def get(self, site: Site | str, *, dtype: torch.dtype = torch.float32) -> Float[Tensor, "n d"]:
        """The vectors of one site, loading only that site's tensors from disk if streamed."""
        key = site.key if isinstance(site, Site) else site
        if key not in {s.key for s in self.sites}:
            raise ProbeInputError(
                f"site {key!r} was not extracted; extracted: {[s.key for s in self.sites]}"
            )
        if self.tensors:
            return self.tensors[key].to(dtype)
        assert self.shard_dir is not None
        parts = []
        for name in self.shard_files:
            with safe_open(str(Path(self.shard_dir) / name), framework="pt") as handle:
                parts.append(handle.get_tensor(key))
        return torch.cat(parts).to(dtype)

    def at(self, hook: str, layer: int, head: int | None = None) -> Float[Tensor, "n d"]:
        """Shorthand for ``get(Site(hook=hook, layer=layer, head=head))``."""
        return self.get(Site(hook=hook, layer=layer, head=head))

    @classmethod
    def from_tensors(cls, tensors: dict[Site, Tensor], *, position: str | int = "last") -> Activations:
        """Wrap precomputed ``[n, d]`` tensors (e.g. synthetic data) as an ``Activations``."""
        if not tensors:
            raise ProbeInputError("no tensors given; pass {Site: [n, d] tensor}")
        shapes = {tuple(t.shape) for t in tensors.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ProbeInputError(f"every tensor must be [n, d] with the same shape, got {sorted(shapes)}")
        n, d = next(iter(shapes))
        return cls(
            sites=tuple(tensors),
            n=n,
            d=d,
            position=position,
            padding_side="right",
            dtype="float32",
            layers_run=max(s.layer for s in tensors) + 1,
            token_lengths=(),
            tensors={s.key: t.float() for s, t in tensors.items()},
        )

    def metadata(self) -> dict[str, Any]:
        """Everything but the tensors, as JSON-ready data."""
        return {
            "sites": [s.key for s in self.sites],
            "n": self.n,
            "d": self.d,
            "position": self.position,
            "padding_side": self.padding_side,
            "dtype": self.dtype,
            "layers_run": self.layers_run,
            "token_lengths": list(self.token_lengths),
            "shard_files": list(self.shard_files),
            "batch_size": self.batch_size,
        }


def load_activations(shard_dir: str | Path) -> Activations:
    """Open activations streamed by :func:`extract` (reads only the index until ``get``)."""
    index_path = Path(shard_dir) / INDEX
    if not index_path.is_file():
        raise ProbeInputError(f"{shard_dir} has no {INDEX}; pass a directory written by extract()")
    meta = read_json(index_path)
    for name in meta["shard_files"]:
        inside(shard_dir, name, what=f"shard listed in {INDEX}")
    return Activations(
        sites=tuple(Site.from_key(k) for k in meta["sites"]),
        n=meta["n"],
        d=meta["d"],
        position=meta["position"],
        padding_side=meta["padding_side"],
        dtype=meta["dtype"],
        layers_run=meta["layers_run"],
        token_lengths=tuple(meta["token_lengths"]),
        shard_dir=str(shard_dir),
        shard_files=tuple(meta["shard_files"]),
        batch_size=meta.get("batch_size"),
    )


def write_shard(shard_dir: str | Path, number: int, tensors: dict[str, Tensor]) -> str:
    """Write shard ``number`` (``shard-NNNNN.safetensors``) of a shard directory; returns its file name."""
    name = f"shard-{number:05d}.safetensors"
    with atomic_open(Path(shard_dir) / name, "wb") as handle:
        handle.write(safetensors_bytes({k: v.contiguous() for k, v in tensors.items()}))
    return name
