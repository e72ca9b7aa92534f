"""Where activations are read: a hook kind, a layer and (for per-head outputs) a head.

Short hook names map to TransformerLens 4.x hook names on a ``TransformerBridge``:

>>> Site(hook="resid_post", layer=2).hook_name
'blocks.2.hook_resid_post'
>>> Site(hook="attn_result", layer=1, head=3).key
'blocks.1.attn.hook_result.head3'
"""

from __future__ import annotations

from dataclasses import dataclass

from backdoor_models.core.errors import lookup
from probes.errors import ProbeInputError

HOOKS: dict[str, str] = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "attn_result": "attn.hook_result",
}
"""Short hook name -> hook name inside ``blocks.L``; ``attn_result`` is per head."""

PER_HEAD = frozenset({"attn_result"})
"""Hooks whose activation has a head axis (``batch pos head d_model``)."""


def canonical_hook(hook: str) -> str:
    """Accept ``resid_post``, ``hook_resid_post`` or ``attn.hook_result`` spellings."""
    for short, full in HOOKS.items():
        if hook in (short, full, full.removeprefix("attn.")):
            return short
    return lookup(HOOKS, "hook", hook)  # raises UnknownNameError listing the choices


@dataclass(frozen=True, kw_only=True)
class Site:
    """One place activations are read from."""

    hook: str
    """Short hook name, one of :data:`HOOKS`."""
    layer: int
    """Block index, 0-based."""
    head: int | None = None
    """Attention head, for per-head hooks only (``attn_result``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hook", canonical_hook(self.hook))
        if self.layer < 0:
            raise ProbeInputError(f"layer must be >= 0, got {self.layer}; count blocks from 0")
        if (self.head is None) == (self.hook in PER_HEAD):
            raise ProbeInputError(
                f"hook {self.hook!r} {'needs' if self.hook in PER_HEAD else 'takes no'} head index "
                f"(got head={self.head}); per-head hooks are {sorted(PER_HEAD)}"
            )

    @property
    def hook_name(self) -> str:
        """The TransformerLens hook name this site is read from."""
        return f"blocks.{self.layer}.{HOOKS[self.hook]}"

    @property
    def key(self) -> str:
        """A unique string for this site (used as a tensor name in files)."""
        return self.hook_name if self.head is None else f"{self.hook_name}.head{self.head}"

    @classmethod
    def from_key(cls, key: str) -> Site:
        """Invert :attr:`key`."""
        parts = key.split(".")
        if len(parts) < 3 or parts[0] != "blocks" or not parts[1].isdigit():
            raise ProbeInputError(f"{key!r} is not a site key like 'blocks.2.hook_resid_post'")
        head = None
        if parts[-1].startswith("head") and parts[-1][4:].isdigit():
            head = int(parts[-1][4:])
            parts = parts[:-1]
        return cls(hook=".".join(parts[2:]), layer=int(parts[1]), head=head)


def make_sites(
    hooks: str | list[str] | tuple[str, ...],
    layers: list[int] | tuple[int, ...] | range,
    *,
    n_heads: int | None = None,
    heads: list[int] | tuple[int, ...] | None = None,
) -> list[Site]:
    """Every (hook, layer[, head]) combination, per-head hooks expanded over ``heads``."""
    hook_list = [hooks] if isinstance(hooks, str) else list(hooks)
    sites: list[Site] = []
    for hook in hook_list:
        short = canonical_hook(hook)
        for layer in layers:
            if short in PER_HEAD:
                chosen = list(heads) if heads is not None else list(range(n_heads or 0))
                if not chosen:
                    raise ProbeInputError(f"hook {short!r} is per head: pass heads= or n_heads=")
                sites.extend(Site(hook=short, layer=layer, head=h) for h in chosen)
            else:
                sites.append(Site(hook=short, layer=layer))
    return sites
