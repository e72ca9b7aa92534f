"""Fisher linear discriminant with Ledoit-Wolf (or fixed) covariance shrinkage."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from torch import Tensor

from probes.methods.base import Probe


class LDAProbe(Probe):
    """``weight = (shrunk within-class covariance)^-1 (mu_1 - mu_0)``.

    Option ``shrinkage``: ``"auto"`` (Ledoit-Wolf, default) or a float in [0, 1].
    The score is the discriminant's log-odds.
    """

    name = "lda"

    def _fit(self, x: Tensor, y: np.ndarray) -> tuple[Tensor, float, dict[str, Tensor]]:
        model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=self.options.get("shrinkage", "auto"))
        model.fit(x.numpy(), y)
        weight = torch.as_tensor(model.coef_[0], dtype=torch.float64)
        return weight, float(model.intercept_[0]), {"class_means": torch.as_tensor(model.means_)}
