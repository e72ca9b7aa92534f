"""Supervised logistic probe on behaviour labels: an upper bound (it sees labels a defender lacks)."""

from __future__ import annotations

import numpy as np
import torch

from detect.activations import ActivationDetector
from detect.base import Subject, TrustedData
from probes.methods import make_probe


class LogisticProbe(ActivationDetector):
    """Cross-validated L2 logistic regression (:class:`probes.methods.LogisticProbe`) on labelled prompts."""

    name = "logistic"
    needs = frozenset({"labels", "activations"})
    cost = "one forward pass per labelled prompt to fit (plus a CV fit); one per prompt"
    upper_bound = True

    def _fit(self, subject: Subject, prompts: list[str], data: TrustedData) -> None:
        x = self.activations(list(data.labelled_prompts))
        self.probe = make_probe("logistic", seed=data.seed).fit(x, list(data.labels))

    def _score_acts(self, x: np.ndarray, reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        return self.probe.score(torch.from_numpy(x)).numpy(), None
