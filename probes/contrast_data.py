"""Activations of contrast-pair texts, the only data a contrast probe is fit on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from probes.extract import Activations, ExtractConfig, extract
from probes.methods.contrast import PROMPT_FORMAT, get_formulation
from probes.sites import Site


@dataclass(frozen=True, kw_only=True)
class ContrastData:
    """Activations of one formulation's texts and their pair labels (1 = positive)."""

    formulation: str
    """Name in :data:`probes.methods.FORMULATIONS`."""
    acts: Activations
    """Activations of the contrast texts, read at their last token."""
    labels: tuple[int, ...]
    """1 for the positive completion, 0 for the negative."""


def extract_contrast(
    bridge: Any,
    formulation: str = "yes_no",
    *,
    sites: Sequence[Site],
    config: ExtractConfig | None = None,
    prompt_format: str = PROMPT_FORMAT,
) -> ContrastData:
    """Extract the named formulation's texts at ``sites`` (always at the last token).

    ``bridge`` is any bridge in eval mode, e.g. ``load_bridge(run_dir)`` (the docs test passes a tiny one):

    >>> data = extract_contrast(bridge, "yes_no", sites=[Site(hook="resid_post", layer=1)])
    >>> data.acts.n == len(data.labels), sorted(set(data.labels))
    (True, [0, 1])
    """
    texts, labels = get_formulation(formulation).texts(prompt_format)
    base = config or ExtractConfig()
    cfg = replace(base, position="last", shard_dir=None, progress=False)
    return ContrastData(formulation=formulation, acts=extract(bridge, texts, sites=sites, config=cfg),
                        labels=tuple(labels))
