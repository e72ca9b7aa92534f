"""Train probes, sweep them over layers and hooks, and measure transfer across models.

Protocol: fit on the ``train`` split (contrast probes on their own pair texts), choose the
best site by signed validation AUROC, report metrics with bootstrap CIs on ``test``.

>>> probe = train("meandiff", x_train, y_train)  # doctest: +SKIP
>>> evaluate(probe, x_test, y_test).auroc  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from probes.contrast_data import ContrastData
from probes.errors import ProbeInputError
from probes.extract import Activations
from probes.methods import Probe, make_probe, resolve_methods
from probes.metrics import (
    ArrayLike,
    ScoreMetrics,
    as_labels,
    auroc,
    score_metrics,
    threshold_at_fpr,
    threshold_youden,
)
from probes.sites import Site

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def train(method: str, x: Float[Tensor, "n d"], y: ArrayLike, **options: Any) -> Probe:
    """Fit a probe of ``method`` on activations and 0/1 labels.

    For ``contrast``, ``x`` are contrast-text activations and ``y`` marks the positive
    completion (see :func:`probes.contrast_data.extract_contrast`).

    >>> import torch
    >>> x = torch.randn(100, 8, generator=torch.Generator().manual_seed(0)); y = (x[:, 0] > 0).long()
    >>> train("meandiff", x, y).direction.argmax().item()
    0
    """
    return make_probe(method, **options).fit(x, y)


def evaluate(
    probe: Probe, x: Float[Tensor, "n d"], y: ArrayLike, *, n_boot: int = 1000, seed: int = 0
) -> ScoreMetrics:
    """Signed AUROC, AP and TPR at 1% FPR of ``probe`` on ``x``, with bootstrap 95% CIs."""
    return score_metrics(probe.score(x), y, n_boot=n_boot, seed=seed)


def split_indices(splits: Sequence[str], labels: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices per split; each split must exist and hold both classes."""
    split_arr = np.asarray(list(splits), dtype=object)
    if split_arr.size != labels.size:
        raise ProbeInputError(f"{split_arr.size} split names for {labels.size} prompts; give one per prompt")
    unknown = sorted(set(split_arr.tolist()) - set(SPLITS))
    if unknown:
        raise ProbeInputError(f"unknown split names {unknown}; use only {list(SPLITS)}")
    out: dict[str, np.ndarray] = {}
    for name in SPLITS:
        idx = np.flatnonzero(split_arr == name)
        counts = np.bincount(labels[idx], minlength=2)
        if counts.min() == 0:
            raise ProbeInputError(
                f"split {name!r} has {counts[1]} defecting and {counts[0]} non-defecting prompts; "
                "every split (train, val, test) needs both classes"
            )
        out[name] = idx
    return out


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """Which probes a sweep fits and how it measures them."""

    methods: tuple[str, ...] = ("contrast", "meandiff", "logistic", "lda")
    """Probe methods (names in :data:`probes.methods.PROBES`)."""
    n_boot: int = 1000
    """Bootstrap resamples for every CI."""
    seed: int = 0
    """Seed of bootstraps and of probes' internal randomness."""
    probe_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-method constructor options, e.g. ``{"lda": {"shrinkage": 0.1}}``."""

    def __post_init__(self) -> None:
        methods = self.methods if isinstance(self.methods, str) else list(self.methods)  # "all" is accepted
        object.__setattr__(self, "methods", tuple(resolve_methods(methods)))
        if self.n_boot < 10:
            raise ProbeInputError(f"n_boot must be >= 10 for a usable CI, got {self.n_boot}")
        unknown = set(self.probe_options) - set(self.methods)
        if unknown:
            raise ProbeInputError(f"probe_options for methods not swept: {sorted(unknown)}")


@dataclass(frozen=True, kw_only=True)
class SiteResult:
    """One probe at one site: validation AUROC and test metrics."""

    site: Site
    """Where the probe reads."""
    val_auroc: float
    """Signed AUROC on the validation split (used to choose the best site)."""
    test: ScoreMetrics
    """Metrics on the test split."""


@dataclass(frozen=True, kw_only=True)
class MethodSweep:
    """One method across sites; ``best`` chosen on validation."""

    method: str
    """Probe method name."""
    results: tuple[SiteResult, ...]
    """Per site, in sweep order."""
    best: Site
    """Site with the highest validation AUROC (earliest on ties)."""
    probes: dict[str, Probe] = field(repr=False)
    """Fitted probe per site key."""
    formulation: str | None = None
    """Contrast formulation (contrast probes only)."""

    @property
    def best_result(self) -> SiteResult:
        return next(r for r in self.results if r.site == self.best)

    @property
    def best_probe(self) -> Probe:
        return self.probes[self.best.key]

    def to_dict(self) -> dict[str, Any]:
        best = self.best_result
        return {
            "method": self.method,
            "formulation": self.formulation,
            "sites": [r.site.key for r in self.results],
            "layers": [r.site.layer for r in self.results],
            "val_auroc": [r.val_auroc for r in self.results],
            "auroc": [r.test.auroc for r in self.results],
            "auroc_ci": [list(r.test.auroc_ci) for r in self.results],
            "ap": [r.test.ap for r in self.results],
            "ap_ci": [list(r.test.ap_ci) for r in self.results],
            "tpr_at_1pct_fpr": [r.test.tpr_at_1pct_fpr for r in self.results],
            "tpr_at_1pct_fpr_ci": [list(r.test.tpr_at_1pct_fpr_ci) for r in self.results],
            "best_site": self.best.key,
            "best_layer": self.best.layer,
            "best_auroc": best.test.auroc,
            "best_auroc_ci": list(best.test.auroc_ci),
            "best_ap": best.test.ap,
            "best_tpr_at_1pct_fpr": best.test.tpr_at_1pct_fpr,
        }


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    """Every method's sweep over the same sites and splits."""

    methods: dict[str, MethodSweep]
    """By method name (a contrast formulation other than the first is ``contrast:<name>``)."""
    split_sizes: dict[str, int]
    """Prompts per split."""

    def to_dict(self) -> dict[str, Any]:
        return {"split_sizes": self.split_sizes, "methods": {k: v.to_dict() for k, v in self.methods.items()}}


def sweep(
    acts: Activations,
    labels: ArrayLike,
    splits: Sequence[str],
    *,
    contrast: ContrastData | Sequence[ContrastData] = (),
    sites: Sequence[Site] | None = None,
    config: SweepConfig | None = None,
) -> SweepResult:
    """Fit each method at each site on ``train``, pick the best site on ``val``, report ``test``.

    ``contrast`` supplies the pair activations (same sites) for the ``contrast`` method;
    several formulations give entries ``contrast`` (first) and ``contrast:<name>`` (rest).
    """
    config = config or SweepConfig()
    y = as_labels(labels, n=acts.n)
    idx = split_indices(splits, y)
    site_list = list(sites) if sites is not None else list(acts.sites)
    contrast_list = [contrast] if isinstance(contrast, ContrastData) else list(contrast)
    if "contrast" in config.methods and not contrast_list:
        raise ProbeInputError(
            "the contrast method needs contrast-pair activations; pass contrast=extract_contrast(...) "
            "or drop 'contrast' from methods"
        )
    runs: list[tuple[str, str, ContrastData | None]] = []
    for method in config.methods:
        if method == "contrast":
            for i, pair in enumerate(contrast_list):
                runs.append(("contrast" if i == 0 else f"contrast:{pair.formulation}", method, pair))
        else:
            runs.append((method, method, None))
    results: dict[str, list[SiteResult]] = {name: [] for name, _, _ in runs}
    probes: dict[str, dict[str, Probe]] = {name: {} for name, _, _ in runs}
    for site in site_list:
        x = acts.get(site)
        for name, method, data in runs:
            options: dict[str, Any] = {"seed": config.seed} if method == "logistic" else {}
            options.update(config.probe_options.get(method, {}))
            if data is not None:
                options["formulation"] = data.formulation
                probe = train(method, data.acts.get(site), data.labels, **options)
            else:
                probe = train(method, x[idx["train"]], y[idx["train"]], **options)
            val = auroc(probe.score(x[idx["val"]]), y[idx["val"]])
            test = evaluate(probe, x[idx["test"]], y[idx["test"]], n_boot=config.n_boot, seed=config.seed)
            results[name].append(SiteResult(site=site, val_auroc=val, test=test))
            probes[name][site.key] = probe
        log.info("swept %s", site.key)
    out = {}
    for name, method, pair_data in runs:
        rows = results[name]
        best = max(range(len(rows)), key=lambda i: (rows[i].val_auroc, -i))
        out[name] = MethodSweep(
            method=method,
            results=tuple(rows),
            best=rows[best].site,
            probes=probes[name],
            formulation=pair_data.formulation if pair_data is not None else None,
        )
    return SweepResult(methods=out, split_sizes={k: int(v.size) for k, v in idx.items()})


THRESHOLD_RULES = ("fpr1", "youden")


@dataclass(frozen=True, kw_only=True)
class TransferResult:
    """A probe fit on the 'before' model, applied to the 'after' model's activations.

    The threshold is fixed on the before model's validation split: ``fpr1`` = the score
    that at most 1% of before-validation negatives exceed (default); ``youden`` = the
    point maximising TPR - FPR on before-validation data. A prompt is caught when its
    score is strictly above the threshold.
    """

    method: str
    """Probe method."""
    site: Site
    """Site of both probes."""
    threshold_rule: str
    """``fpr1`` or ``youden`` (see class docstring)."""
    threshold: float
    """Before-probe threshold, from before-model validation data."""
    before: ScoreMetrics
    """Before-probe on before-model test activations."""
    transferred: ScoreMetrics
    """Before-probe on after-model test activations."""
    retrained: ScoreMetrics | None
    """After-probe (same method, fit on the after model) on after-model test activations."""
    caught_before: float
    """Fraction of before-model test positives above the threshold."""
    caught_after: float
    """Fraction of after-model test positives above the before threshold."""
    false_alarms_after: float
    """Fraction of after-model test negatives above the before threshold."""
    score_gap_before: float
    """Mean positive minus mean negative before-probe score (logit for logistic/lda), before model."""
    score_gap_after: float
    """The same gap on the after model."""
    cosine: float | None
    """Cosine between before and after probe weights (None without an after-probe)."""
    norm_ratio: float | None
    """``|w_after| / |w_before|`` (for meandiff/contrast: ratio of class-mean separations)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            out[key] = value.to_dict() if hasattr(value, "to_dict") else value.key if isinstance(value, Site) else value
        return out


def transfer(
    before_probe: Probe,
    *,
    site: Site,
    before_val: tuple[Tensor, ArrayLike],
    before_test: tuple[Tensor, ArrayLike],
    after_test: tuple[Tensor, ArrayLike],
    after_probe: Probe | None = None,
    threshold_rule: str = "fpr1",
    n_boot: int = 1000,
    seed: int = 0,
) -> TransferResult:
    """Apply ``before_probe`` to after-model activations and compare it with ``after_probe``.

    Each pair is ``(activations [n, d], 0/1 labels)`` at ``site``.
    """
    if threshold_rule not in THRESHOLD_RULES:
        raise ProbeInputError(f"threshold_rule must be one of {THRESHOLD_RULES}, got {threshold_rule!r}")
    xv, yv = before_val[0], as_labels(before_val[1], n=int(before_val[0].shape[0]))
    val_scores = before_probe.score(xv).numpy()
    threshold = (
        threshold_at_fpr(val_scores[yv == 0], 0.01) if threshold_rule == "fpr1" else threshold_youden(val_scores, yv)
    )

    def caught_and_gap(x: Tensor, labels: ArrayLike) -> tuple[float, float, float, np.ndarray]:
        y = as_labels(labels, n=int(x.shape[0]))
        s = before_probe.score(x).numpy()
        pos, neg = s[y == 1], s[y == 0]
        return float((pos > threshold).mean()), float((neg > threshold).mean()), float(pos.mean() - neg.mean()), y

    caught_b, _, gap_b, _ = caught_and_gap(*before_test)
    caught_a, false_a, gap_a, _ = caught_and_gap(*after_test)
    cosine = norm_ratio = None
    retrained = None
    if after_probe is not None:
        wb, wa = before_probe._require_fit(), after_probe._require_fit()
        cosine = float(torch.nn.functional.cosine_similarity(wb, wa, dim=0))
        norm_ratio = float(wa.norm() / wb.norm())
        retrained = evaluate(after_probe, after_test[0], after_test[1], n_boot=n_boot, seed=seed)
    return TransferResult(
        method=before_probe.name,
        site=site,
        threshold_rule=threshold_rule,
        threshold=float(threshold),
        before=evaluate(before_probe, before_test[0], before_test[1], n_boot=n_boot, seed=seed),
        transferred=evaluate(before_probe, after_test[0], after_test[1], n_boot=n_boot, seed=seed),
        retrained=retrained,
        caught_before=caught_b,
        caught_after=caught_a,
        false_alarms_after=false_a,
        score_gap_before=gap_b,
        score_gap_after=gap_a,
        cosine=cosine,
        norm_ratio=norm_ratio,
    )
