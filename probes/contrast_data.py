"""Activations of contrast-pair texts, the only data a contrast probe is fit on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from probes.extract import Activations, ExtractConfig, extract
from probes.methods.contrast import PROMPT_FORMAT, ContrastFormulation, get_formulation
from probes.sites import Site


@dataclass(frozen=True, kw_only=True)
class ContrastData:
    """Activations of one formulation's texts and their pair labels (1 = positive)."""

    formulation: str
    """Name in :data:`probes.methods.FORMULATIONS` (or of a control, see :func:`control_formulations`)."""
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
    named = {formulation: get_formulation(formulation)}
    return extract_formulations(bridge, named, sites=sites, config=config, prompt_format=prompt_format)[formulation]


def extract_formulations(
    bridge: Any,
    formulations: Mapping[str, ContrastFormulation],
    *,
    sites: Sequence[Site],
    config: ExtractConfig | None = None,
    prompt_format: str = PROMPT_FORMAT,
) -> dict[str, ContrastData]:
    """Extract several formulations' texts at ``sites`` in one pass, each distinct text once
    (a swapped twin's neutral control reads the same texts as the original's, relabelled).

    >>> from probes.methods.contrast import control_formulations
    >>> pairs = extract_formulations(bridge, control_formulations(["yes_no"]), sites=sites)  # doctest: +SKIP
    """
    texted = {name: f.texts(prompt_format) for name, f in formulations.items()}
    unique = list(dict.fromkeys(t for texts, _ in texted.values() for t in texts))
    base = config or ExtractConfig()
    cfg = replace(base, position="last", shard_dir=None, progress=False)
    acts = extract(bridge, unique, sites=sites, config=cfg)
    row = {text: i for i, text in enumerate(unique)}
    tensors = {site: acts.get(site) for site in acts.sites}
    out = {}
    for name, (texts, labels) in texted.items():
        rows = [row[t] for t in texts]
        subset = Activations.from_tensors({site: t[rows] for site, t in tensors.items()}, position="last")
        out[name] = ContrastData(formulation=name, acts=subset, labels=tuple(labels))
    return out
