"""Isolation forest (scikit-learn) fit on trusted clean activations."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest as _Forest

from detect.activations import ActivationDetector
from detect.base import TrustedData


class IsolationForest(ActivationDetector):
    """Score = the forest's anomaly score (negated ``score_samples``); option ``trees`` (default 200)."""

    name = "isolation_forest"

    def _fit_acts(self, x: np.ndarray, data: TrustedData) -> None:
        self.forest = _Forest(n_estimators=int(self.options.get("trees", 200)), random_state=data.seed).fit(x)

    def _score_acts(self, x: np.ndarray, reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        return -self.forest.score_samples(x), None
