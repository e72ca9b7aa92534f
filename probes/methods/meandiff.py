"""Difference of class means: ``weight = mean(x | y=1) - mean(x | y=0)``."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from probes.methods.base import Probe


class MeanDiffProbe(Probe):
    """Mean of positives minus mean of negatives; bias puts 0 halfway between the means.

    >>> import torch
    >>> x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [2.0, 0.0], [2.0, 1.0]])
    >>> MeanDiffProbe().fit(x, [0, 0, 1, 1]).direction.tolist()
    [1.0, 0.0]
    """

    name = "meandiff"
    centre = True
    """Subtract the midpoint of the two means (contrast probes score raw projections)."""

    def _fit(self, x: Tensor, y: np.ndarray) -> tuple[Tensor, float, dict[str, Tensor]]:
        labels = torch.as_tensor(y, dtype=torch.bool)
        mu_pos, mu_neg = x[labels].mean(0), x[~labels].mean(0)
        weight = mu_pos - mu_neg
        bias = -float(weight @ (mu_pos + mu_neg) / 2) if self.centre else 0.0
        return weight, bias, {"mean_pos": mu_pos, "mean_neg": mu_neg}
