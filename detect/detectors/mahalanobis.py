"""Mahalanobis distance from the trusted clean activations (Ledoit–Wolf shrunk covariance)."""

from __future__ import annotations

import numpy as np
from sklearn.covariance import LedoitWolf

from detect.activations import ActivationDetector
from detect.base import TrustedData


class Mahalanobis(ActivationDetector):
    """Score = squared Mahalanobis distance to the clean mean."""

    name = "mahalanobis"

    def _fit_acts(self, x: np.ndarray, data: TrustedData) -> None:
        estimate = LedoitWolf().fit(x)
        self.mean, self.precision = estimate.location_, estimate.precision_

    def _score_acts(self, x: np.ndarray, reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        centred = x - self.mean
        return np.einsum("nd,de,ne->n", centred, self.precision, centred), None
