"""Controls of the contrast probe: does it read more than the generic yes-minus-no answer direction?

For each formulation F (and its swapped twin, see :mod:`probes.methods.contrast`) and at every
layer, with N the neutral control of F (neutral questions, the same answer words in the same roles):

* the signed AUROC, on validation and on test, of projecting the labelled prompts on F, on N and
  on **F̂ − N̂** — both directions normalised to unit length *before* subtracting, so neither wins by
  its norm. Every sign is fixed a priori: positive = "yes, I am doing the bad thing"; for F̂ − N̂ that
  minus the same answer word after a neutral question. Nothing is flipped after seeing labels;
* the cosine of each direction with the labelled mean difference (mean activation of the defecting
  minus the non-defecting prompts of the train split), with N, and F's with its swapped twin;
* the percentile of each test AUROC among the random directions at that layer.

The verdict (:class:`ControlRule`). F *passes* when, at the layer L* where F̂ − N̂ has its highest
validation AUROC (earliest on ties), the test AUROC of F̂ − N̂ is at least ``margin`` above the test
AUROC of N at L*, **and** at least the ``min_percentile``-th percentile of the random directions at
L* (so that a noise residual, which a backdoor-dominated layer lets separate by chance, does not
pass). F reads something beyond the generic answer direction if it passes **and** (``require_twin``)
its swapped twin passes too, each at its own L*. A residual that follows the answer *word* rather
than the question's meaning flips sign under the swap, so it passes on one side only; and since the
twin's neutral control is exactly −N, a neutral direction that separates the prompts with the
opposite sign cannot carry both sides over the margin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from probes.contrast_data import ContrastData
from probes.errors import ProbeInputError
from probes.evaluate import train
from probes.extract import Activations
from probes.labelled import LabelledPrompts
from probes.methods.contrast import SWAPPED, ContrastFormulation, neutral_name
from probes.metrics import RandomBaseline, curve_metrics
from probes.sites import Site

BEYOND = "beyond the answer direction"
"""Verdict: the formulation minus its neutral control separates the prompts, and better than the control."""
GENERIC = "generic answer direction"
"""Verdict: nothing shown beyond what the neutral yes/no questions' direction already reads."""
Row = tuple[float, float, float, float, float]
"""One direction at one site: validation AUROC, test AUROC, random percentile, cos labelled, cos neutral."""
NORMALISED = "F̂ − N̂: each direction normalised to unit length before subtracting"
"""How (formulation − neutral) is formed, as stated in ``probes.json``."""


@dataclass(frozen=True, kw_only=True)
class ControlRule:
    """When a contrast formulation reads something beyond the generic answer direction."""

    margin: float = 0.2
    """Test AUROC of F̂ − N̂ at the validation-chosen layer must be >= the neutral direction's + this."""
    min_percentile: float = 95.0
    """... and at least this percentile of the random directions' AUROCs at that layer."""
    require_twin: bool = True
    """A formulation with a swapped twin is judged beyond only if the twin passes as well."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin <= 1.0:
            raise ProbeInputError(f"margin is an AUROC difference in [0, 1], got {self.margin}")
        if not 0.0 <= self.min_percentile <= 100.0:
            raise ProbeInputError(f"min_percentile must be in [0, 100], got {self.min_percentile}")

    def holds(self, *, auroc: float, neutral_auroc: float, percentile: float) -> bool:
        """The rule on the numbers at the chosen layer."""
        return auroc >= neutral_auroc + self.margin - 1e-12 and percentile >= self.min_percentile

    def describe(self) -> str:
        both = " - for the formulation and for its answer-order-swapped twin alike" if self.require_twin else ""
        return (f"beyond the answer direction iff, at the layer where (formulation - neutral) has its best "
                f"validation AUROC, its test AUROC >= the neutral direction's + {self.margin:g} and >= the "
                f"{self.min_percentile:g}th percentile of random directions there{both}")


@dataclass(frozen=True, kw_only=True)
class DirectionProfile:
    """One direction's signed AUROCs and cosines at every layer."""

    name: str
    """Formulation, control or ``<formulation> - neutral``."""
    sites: tuple[Site, ...]
    """Where it was read, in sweep order."""
    val_auroc: tuple[float, ...]
    """Signed AUROC of the projection on the validation split, per site."""
    auroc: tuple[float, ...]
    """Signed AUROC on the test split, per site."""
    random_percentile: tuple[float, ...]
    """Percent of random directions at the site with a lower test AUROC (ties half)."""
    cos_labelled: tuple[float, ...]
    """Cosine with the labelled mean difference (train split), per site."""
    cos_neutral: tuple[float, ...]
    """Cosine with the neutral control's direction, per site (1 for a neutral direction itself)."""

    @property
    def best_index(self) -> int:
        """Site with the highest validation AUROC (earliest on ties)."""
        return max(range(len(self.sites)), key=lambda i: (self.val_auroc[i], -i))

    def to_dict(self) -> dict[str, Any]:
        i = self.best_index
        return {"layers": [s.layer for s in self.sites], "val_auroc": list(self.val_auroc), "auroc": list(self.auroc),
                "random_percentile": list(self.random_percentile), "cos_labelled": list(self.cos_labelled),
                "cos_neutral": list(self.cos_neutral), "best_layer": self.sites[i].layer,
                "best_auroc": self.auroc[i], "best_random_percentile": self.random_percentile[i],
                "best_cos_labelled": self.cos_labelled[i], "best_cos_neutral": self.cos_neutral[i]}


@dataclass(frozen=True, kw_only=True)
class ControlTest:
    """One direction's numbers at the layer where its F̂ − N̂ has the best validation AUROC."""

    layer: int
    """Layer where F̂ − N̂ has its best validation AUROC."""
    auroc: float
    """Test AUROC of F̂ − N̂ there."""
    neutral_auroc: float
    """Test AUROC of the neutral direction N there."""
    formulation_auroc: float
    """Test AUROC of the formulation's own direction F there."""
    random_percentile: float
    """Percentile of ``auroc`` among the random directions there."""
    passes: bool
    """Margin over N and random percentile both met (:meth:`ControlRule.holds`)."""

    def describe(self, name: str) -> str:
        return (f"at layer {self.layer} (chosen on validation) ({name} - neutral) has signed test AUROC "
                f"{self.auroc:.3f}, {self.auroc - self.neutral_auroc:+.3f} over the neutral direction's "
                f"{self.neutral_auroc:.3f}, at the {self.random_percentile:.1f}th percentile of random directions "
                f"({'passes' if self.passes else 'fails'}); {name} alone has {self.formulation_auroc:.3f} there")


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """Does one formulation read beyond the generic answer direction (:class:`ControlRule`)?"""

    formulation: str
    """The formulation judged."""
    test: ControlTest
    """Its own numbers."""
    twin: str | None
    """Its answer-order-swapped twin (None if it has none)."""
    twin_test: ControlTest | None
    """The twin's numbers, at the twin's own validation-chosen layer."""
    beyond: bool
    """The rule's answer."""
    rule: ControlRule
    """The rule applied."""

    @property
    def layer(self) -> int:
        return self.test.layer

    @property
    def auroc(self) -> float:
        return self.test.auroc

    @property
    def neutral_auroc(self) -> float:
        return self.test.neutral_auroc

    @property
    def label(self) -> str:
        return BEYOND if self.beyond else GENERIC

    def sentence(self) -> str:
        """The verdict with its numbers, for the report."""
        head = ("reads something beyond the generic answer direction" if self.beyond
                else "is not shown to read anything beyond the generic answer direction")
        text = (f"The contrast probe ({self.formulation}) {head} (each direction unit-normalised before "
                f"subtracting; rule: >= +{self.rule.margin:g} over the neutral direction and >= the "
                f"{self.rule.min_percentile:g}th random percentile): {self.test.describe(self.formulation)}")
        if self.twin is not None and self.twin_test is not None:
            text += f"; with the answer order swapped, {self.twin_test.describe(self.twin)}"
        return text + "."

    def to_dict(self) -> dict[str, Any]:
        twin = asdict(self.twin_test) if self.twin_test is not None else None
        return {"formulation": self.formulation, **asdict(self.test), "twin": self.twin, "twin_test": twin,
                "beyond": self.beyond, "verdict": self.label, "sentence": self.sentence()}


@dataclass(frozen=True, kw_only=True)
class FormulationControls:
    """One formulation (or swapped twin) against its controls."""

    neutral: str
    """Name of its neutral control in :attr:`ContrastControls.neutrals`."""
    twin: str | None
    """Its swapped twin's name (each is the other's; None for a formulation without negations)."""
    direction: DirectionProfile
    """Its own direction F."""
    minus_neutral: DirectionProfile
    """F̂ − N̂."""
    cos_twin: tuple[float, ...] | None
    """Cosine of F with its swapped twin's direction per site (+1: follows meaning; -1: follows the word)."""
    verdict: Verdict
    """The rule's answer at the validation-chosen layer."""

    def to_dict(self) -> dict[str, Any]:
        return {"neutral": self.neutral, "twin": self.twin, "direction": self.direction.to_dict(),
                "minus_neutral": self.minus_neutral.to_dict(),
                "cos_twin": list(self.cos_twin) if self.cos_twin is not None else None,
                "verdict": self.verdict.to_dict()}


@dataclass(frozen=True, kw_only=True)
class ContrastControls:
    """Every formulation, swapped twin and neutral control on one model."""

    default: str
    """The reported formulation (the suite's first)."""
    rule: ControlRule
    """The verdict's rule."""
    formulations: dict[str, FormulationControls]
    """By name; swapped twins as ``<name>_swapped``."""
    neutrals: dict[str, DirectionProfile]
    """Neutral controls by name (``neutral:<positive> - <negative>``)."""

    @property
    def verdict(self) -> Verdict:
        """The default formulation's verdict, the one the report states."""
        return self.formulations[self.default].verdict

    def to_dict(self) -> dict[str, Any]:
        default = self.formulations[self.default]
        return {"default": self.default, "rule": {**asdict(self.rule), "text": self.rule.describe()},
                "normalised": NORMALISED, "verdict": self.verdict.to_dict(),
                "neutral": self.neutrals[default.neutral].to_dict() | {"name": default.neutral},
                "neutrals": {k: v.to_dict() for k, v in self.neutrals.items()},
                "formulations": {k: v.to_dict() for k, v in self.formulations.items()}}


def cosine(a: Float[Tensor, " d"], b: Float[Tensor, " d"]) -> float:
    """Cosine of two vectors in float64 (0 when either is zero)."""
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0, eps=1e-30))


def _site_rows(
    x: Tensor, y: np.ndarray, idx: dict[str, np.ndarray], directions: dict[str, Tensor],
    neutral_of: dict[str, str], baseline: RandomBaseline,
) -> dict[str, Row]:
    """Per direction at one site: (val AUROC, test AUROC, percentile, cos labelled, cos neutral)."""
    train_x, train_y = x[idx["train"]], y[idx["train"]]
    labelled = train_x[train_y == 1].mean(0) - train_x[train_y == 0].mean(0)
    names = list(directions)
    stacked = torch.stack([directions[n] for n in names])
    val = curve_metrics((x[idx["val"]] @ stacked.T).T.numpy(), y[idx["val"]])["auroc"]
    test = curve_metrics((x[idx["test"]] @ stacked.T).T.numpy(), y[idx["test"]])["auroc"]
    return {n: (float(val[i]), float(test[i]), baseline.percentile(float(test[i])),
                cosine(directions[n], labelled), cosine(directions[n], directions[neutral_of[n]]))
            for i, n in enumerate(names)}


def contrast_controls(
    acts: Activations,
    data: LabelledPrompts,
    formulations: Mapping[str, ContrastFormulation],
    pairs: Mapping[str, ContrastData],
    *,
    baselines: Mapping[str, RandomBaseline],
    default: str,
    rule: ControlRule | None = None,
    sites: Sequence[Site] | None = None,
) -> ContrastControls:
    """The controls of every formulation in ``formulations`` (see the module docstring).

    ``formulations`` and ``pairs`` hold every formulation, swapped twin and neutral control by
    name (:func:`probes.methods.contrast.control_formulations` and
    :func:`probes.contrast_data.extract_formulations` make them); ``baselines`` the random
    directions per site key (test split); ``acts`` the labelled prompts' activations.
    """
    rule = rule or ControlRule()
    site_list = list(sites) if sites is not None else list(acts.sites)
    missing = [s.key for s in site_list if s.key not in baselines]
    if missing or default not in formulations:
        raise ProbeInputError(f"no random baseline at {missing}" if missing else
                              f"default formulation {default!r} is not among {sorted(formulations)}")
    neutral_of = {n: neutral_name(f) for n, f in formulations.items()}
    judged = [n for n in formulations if not n.startswith("neutral:")]
    neutral_of |= {f"{n} - neutral": neutral_of[n] for n in judged}
    y, idx = data.labels, data.split_index()
    rows: list[dict[str, Row]] = []
    twin_of = {n: _twin(n, judged) for n in judged}
    twins: list[dict[str, float]] = []
    for site in site_list:
        own = {n: train("contrast", pairs[n].acts.get(site), pairs[n].labels).direction for n in formulations}
        minus = {f"{n} - neutral": own[n] - own[neutral_of[n]] for n in judged}
        rows.append(_site_rows(acts.get(site).double(), y, idx, own | minus, neutral_of, baselines[site.key]))
        twins.append({n: cosine(own[n], own[t]) for n, t in twin_of.items() if t is not None})
    profiles = {n: _profile(n, site_list, [r[n] for r in rows]) for n in rows[0]}
    tests = {n: _test(profiles[n], profiles[f"{n} - neutral"], profiles[neutral_of[n]], rule) for n in judged}
    out = {}
    for n in judged:
        twin = twin_of[n]
        twin_test = tests[twin] if twin is not None else None
        beyond = tests[n].passes and (twin_test is None or twin_test.passes or not rule.require_twin)
        out[n] = FormulationControls(
            neutral=neutral_of[n], twin=twin, direction=profiles[n], minus_neutral=profiles[f"{n} - neutral"],
            cos_twin=tuple(t[n] for t in twins) if twin else None,
            verdict=Verdict(formulation=n, test=tests[n], twin=twin, twin_test=twin_test, beyond=beyond, rule=rule))
    neutrals = {n: profiles[n] for n in formulations if n.startswith("neutral:")}
    return ContrastControls(default=default, rule=rule, formulations=out, neutrals=neutrals)


def _profile(name: str, sites: list[Site], rows: list[Row]) -> DirectionProfile:
    val, test, pct, cos_l, cos_n = (tuple(float(r[k]) for r in rows) for k in range(5))
    return DirectionProfile(name=name, sites=tuple(sites), val_auroc=val, auroc=test, random_percentile=pct,
                            cos_labelled=cos_l, cos_neutral=cos_n)


def _twin(name: str, names: Sequence[str]) -> str | None:
    """The answer-order-swapped twin of ``name`` among ``names`` (each is the other's)."""
    other = name.removesuffix(SWAPPED) if name.endswith(SWAPPED) else name + SWAPPED
    return other if other in names else None


def _test(own: DirectionProfile, minus: DirectionProfile, neutral: DirectionProfile, rule: ControlRule) -> ControlTest:
    i = minus.best_index
    passes = rule.holds(auroc=minus.auroc[i], neutral_auroc=neutral.auroc[i], percentile=minus.random_percentile[i])
    return ControlTest(layer=minus.sites[i].layer, auroc=minus.auroc[i], neutral_auroc=neutral.auroc[i],
                       formulation_auroc=own.auroc[i], random_percentile=minus.random_percentile[i], passes=passes)
