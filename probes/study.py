"""The probe study of one model: every method at every layer, random directions, per-group scores.

:func:`probe_model` writes nothing; :func:`probes.suite.run_probe_suite` adds controls, transfer
and files around it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backdoor_models.organism import load_bridge
from probes.contrast_controls import ContrastControls, ControlRule, contrast_controls
from probes.contrast_data import ContrastData, extract_formulations
from probes.errors import ProbeInputError
from probes.evaluate import MethodSweep, SweepConfig, SweepResult, sweep
from probes.extract import Activations, ExtractConfig, extract
from probes.labelled import LabelledPrompts
from probes.methods import FORMULATIONS, resolve_methods
from probes.methods.contrast import ContrastFormulation, control_formulations, get_formulation
from probes.metrics import RandomBaseline, auroc, random_direction_baseline, threshold_at_fpr
from probes.sites import PER_HEAD, Site, canonical_hook, make_sites

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SuiteConfig:
    """Options of :func:`run_probe_suite` (each doubles as CLI help)."""

    methods: tuple[str, ...] = ("contrast", "meandiff", "logistic", "lda")
    """Probe methods to run; 'all' in the CLI means every registered method."""
    hook: str = "resid_post"
    """Hook read at every layer (resid_pre, resid_mid, resid_post, attn_out, mlp_out)."""
    formulations: tuple[str, ...] = ("yes_no", "Yes_No", "yes_i_am", "alt_questions", "bank")
    """Contrast formulations; the first is the reported 'contrast' probe, all enter the sensitivity table
    and the controls (each also answer-order swapped, each against its neutral yes/no control)."""
    contrast_rule: ControlRule | None = field(default_factory=ControlRule)
    """When the contrast probe counts as reading beyond the generic answer direction (see
    :class:`probes.contrast_controls.ControlRule`: margin over the neutral direction, random percentile);
    None skips the controls (the contrast probe and its formulations still run)."""
    n_boot: int = 1000
    """Bootstrap resamples per CI."""
    n_random: int = 1000
    """Random unit directions in the baseline."""
    seed: int = 0
    """Seed of bootstraps, random directions and probe CV folds."""
    extract: ExtractConfig = field(default_factory=lambda: ExtractConfig(progress=False))
    """How activations are read (position, batch size, padding, dtype, streaming)."""
    save_probes: bool = True
    """Save each method's best-layer probe under OUT/probes/ (safetensors + JSON)."""
    device: str = "cpu"
    """Device the model is loaded on when given as a path."""

    def __post_init__(self) -> None:
        methods = self.methods if isinstance(self.methods, str) else list(self.methods)  # "all" is accepted
        object.__setattr__(self, "methods", tuple(resolve_methods(methods)))
        hook = canonical_hook(self.hook)
        if hook in PER_HEAD:
            raise ProbeInputError(
                f"the suite reads whole-layer hooks; {hook!r} is per head — use probes.extract and "
                "probes.sweep directly for per-head probing"
            )
        object.__setattr__(self, "hook", hook)
        for name in self.formulations:
            if name not in FORMULATIONS:
                raise ProbeInputError(f"unknown contrast formulation {name!r}; choose from {sorted(FORMULATIONS)}")
        if "contrast" in self.methods and not self.formulations:
            raise ProbeInputError("the contrast method needs at least one formulation")
        if self.n_random < 1:
            raise ProbeInputError(f"n_random must be >= 1, got {self.n_random}")


@dataclass(frozen=True, kw_only=True)
class ModelProbeResult:
    """The probe study on one model."""

    model: str
    """Model path or name."""
    sweep: SweepResult
    """Every method (and contrast formulation) across layers."""
    random_site: Site
    """Site of the random baseline: the contrast probe's best layer (else the first method's)."""
    baselines: dict[str, RandomBaseline] = field(repr=False)
    """Random-direction baseline per site key, on the test split."""
    groups: dict[str, dict[str, dict[str, Any]]]
    """Per method, per prompt group: test-split score summary at the best layer."""
    contrast_controls: ContrastControls | None = None
    """Neutral, answer-order-swapped and bank controls of the contrast probe, and its verdict (None
    without the contrast method)."""

    def to_dict(self) -> dict[str, Any]:
        rb = self.baselines[self.random_site.key]
        methods = self.sweep.methods
        contrast = methods.get("contrast")
        percentile = None
        if contrast is not None:
            at = next(r for r in contrast.results if r.site == self.random_site)
            percentile = rb.percentile(at.test.auroc)
        formulations = {
            (ms.formulation or name): ms.to_dict() for name, ms in methods.items() if ms.method == "contrast"
        }
        return {
            "model": self.model,
            "split_sizes": self.sweep.split_sizes,
            "methods": {k: v.to_dict() for k, v in methods.items() if not k.startswith("contrast:")},
            "contrast_formulations": formulations,
            "random_layer": self.random_site.layer,
            "random_n_directions": len(rb.aurocs),
            "random_best_auroc": rb.best,
            "random_mean_auroc": rb.mean,
            "random_p95_auroc": rb.p95,
            "random_by_layer": {k: b.to_dict() for k, b in self.baselines.items()},
            "contrast_percentile": percentile,
            "groups": self.groups,
            "contrast_controls": self.contrast_controls.to_dict() if self.contrast_controls is not None else None,
        }


def _load(model: Any, device: str) -> tuple[Any, str]:
    if isinstance(model, (str, Path)):
        return load_bridge(model, device=device), str(model)
    return model, str(getattr(model.cfg, "model_name", type(model).__name__))


def _group_summary(ms: MethodSweep, acts: Activations, data: LabelledPrompts) -> dict[str, dict[str, Any]]:
    probe, site = ms.best_probe, ms.best
    x, y, idx = acts.get(site), data.labels, data.split_index()
    val_scores = probe.score(x[idx["val"]]).numpy()
    threshold = threshold_at_fpr(val_scores[y[idx["val"]] == 0], 0.01)
    test = idx["test"]
    return flag_rates(probe.score(x[test]).numpy(), y[test], data.groups_of(test) or [], threshold)


def flag_rates(scores: np.ndarray, y: np.ndarray, names: Sequence[str], threshold: float) -> dict[str, dict[str, Any]]:
    """Per prompt group: how many prompts, how many defect, mean score, share above ``threshold``, AUROC."""
    group_of = np.asarray(names, dtype=object)
    out: dict[str, dict[str, Any]] = {}
    for g in sorted(set(group_of.tolist())):
        m = group_of == g
        gy = y[m]
        out[str(g)] = {
            "n": int(m.sum()),
            "n_defect": int(gy.sum()),
            "mean_score": float(scores[m].mean()),
            "frac_flagged": float((scores[m] > threshold).mean()),
            "auroc": auroc(scores[m], gy) if 0 < gy.sum() < gy.size else None,
        }
    return out


def probe_model(
    model: Any, data: LabelledPrompts, *, config: SuiteConfig | None = None
) -> tuple[ModelProbeResult, Activations]:
    """The study on one model (no files written); also returns the extracted activations."""
    config = config or SuiteConfig()
    y, idx = data.labels, data.split_index()
    bridge, name = _load(model, config.device)
    sites = make_sites(config.hook, range(bridge.cfg.n_layers))
    acts = extract(bridge, list(data.prompts), sites=sites, config=config.extract)
    plan: dict[str, ContrastFormulation] = {}
    if "contrast" in config.methods:
        named = {f: get_formulation(f) for f in config.formulations}
        plan = control_formulations(config.formulations) if config.contrast_rule is not None else named
    pairs = extract_formulations(bridge, plan, sites=sites, config=config.extract) if plan else {}
    contrast: list[ContrastData] = [pairs[f] for f in config.formulations] if plan else []
    result = sweep(acts, y, data.splits, contrast=contrast,
                   config=SweepConfig(methods=config.methods, n_boot=config.n_boot, seed=config.seed))
    test = idx["test"]
    baselines = {
        s.key: random_direction_baseline(acts.get(s)[test], y[test], n_directions=config.n_random, seed=config.seed)
        for s in sites
    }
    controls = (contrast_controls(acts, data, plan, pairs, baselines=baselines, default=config.formulations[0],
                                  rule=config.contrast_rule) if plan and config.contrast_rule is not None else None)
    anchor = result.methods.get("contrast") or next(iter(result.methods.values()))
    group_summary = (
        {k: _group_summary(ms, acts, data) for k, ms in result.methods.items() if ":" not in k}
        if data.groups is not None else {}
    )
    return (
        ModelProbeResult(model=name, sweep=result, random_site=anchor.best, baselines=baselines, groups=group_summary,
                         contrast_controls=controls),
        acts,
    )
