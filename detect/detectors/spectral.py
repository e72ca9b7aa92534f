"""Spectral signatures (Tran et al. 2018): outliers along the top singular direction of a batch.

Tran et al. centre a (possibly poisoned) set of representations, take its top right singular
vector and score each example by its squared projection. Here the centre is the trusted
clean mean and the batch is the scored stream, so the direction is the stream's own.
"""

from __future__ import annotations

import numpy as np

from detect.activations import ActivationDetector
from detect.base import TrustedData


class SpectralSignature(ActivationDetector):
    name = "spectral"
    cost = "one forward pass per prompt and an SVD of the scored batch"
    batch_dependent = True

    def _fit_acts(self, x: np.ndarray, data: TrustedData) -> None:
        self.mean = x.mean(0)

    def _score_acts(self, x: np.ndarray, reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        centred = x - self.mean
        direction = np.linalg.svd(centred, full_matrices=False)[2][0]
        ref = None if reference is None else ((reference - self.mean) @ direction) ** 2
        return (centred @ direction) ** 2, ref
