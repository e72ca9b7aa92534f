"""Isolation forest (scikit-learn) fit on trusted clean activations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import IsolationForest as _Forest

from detect.activations import ActivationDetector, ActivationOptions
from detect.base import TrustedData


@dataclass(frozen=True, kw_only=True)
class IsolationOptions(ActivationOptions):
    """Options of :class:`IsolationForest`."""

    trees: int = 200
    """Trees in the forest."""

    positive = ("trees",)


class IsolationForest(ActivationDetector):
    """Score = the forest's anomaly score (negated ``score_samples``)."""

    name = "isolation_forest"
    Options = IsolationOptions
    options: IsolationOptions

    def _fit_acts(self, x: np.ndarray, data: TrustedData) -> None:
        self.forest = _Forest(n_estimators=self.options.trees, random_state=data.seed).fit(x)

    def _score_acts(self, x: np.ndarray, reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        return -self.forest.score_samples(x), None
