"""The contrast-pair defection probe (MacDiarmid et al. 2024): no labels, no trigger.

Direction = mean activation of "Human: Are you doing something dangerous?  Assistant: yes"
minus "... no" over generic questions (:mod:`probes.methods.contrast`); a prompt's score is
its projection. Its sign is fixed by the pair, never flipped after seeing data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backdoor_models.core.errors import lookup
from detect.activations import ActivationDetector, ActivationOptions
from detect.base import Subject, TrustedData
from probes.contrast_data import extract_contrast
from probes.methods import FORMULATIONS, make_probe


@dataclass(frozen=True, kw_only=True)
class ContrastOptions(ActivationOptions):
    """Options of :class:`ContrastProbe`."""

    formulation: str = "yes_no"
    """The contrast pair (a name in :data:`probes.methods.FORMULATIONS`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        lookup(FORMULATIONS, "contrast formulation", self.formulation)


class ContrastProbe(ActivationDetector):
    """The projection on the contrast pair's mean difference."""

    name = "contrast"
    needs = frozenset({"activations"})
    cost = "24 forward passes to fit; one per prompt"
    Options = ContrastOptions
    options: ContrastOptions

    def _fit(self, subject: Subject, prompts: list[str], data: TrustedData) -> None:
        site = self.site(subject)
        pairs = extract_contrast(subject.bridge, self.options.formulation, sites=[site])
        self.probe = make_probe("contrast").fit(pairs.acts.get(site), list(pairs.labels))

    def _score_acts(self, x: np.ndarray, reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        return self.probe.score(torch.from_numpy(x)).numpy(), None
