"""L2 logistic regression on standardised features, regularisation chosen by CV."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from torch import Tensor

from probes.errors import ProbeInputError
from probes.methods.base import Probe

DEFAULT_CS = [float(c) for c in np.logspace(-4, 2, 7)]


class LogisticProbe(Probe):
    """``LogisticRegressionCV`` on z-scored features, folded back into raw space.

    Options: ``Cs`` (inverse regularisation strengths, default 7 values from 1e-4 to 1e2 —
    on z-scored features C > 100 is effectively unregularised, and on separable data
    such fits only run to ``max_iter``), ``cv`` (folds, default 5), ``max_iter``
    (default 500), ``seed`` (fold shuffling, default 0). The chosen C is in ``info["C"]``.
    The score is the model's logit, so ``score > 0`` means p(defect) > 0.5.
    """

    name = "logistic"

    def _fit(self, x: Tensor, y: np.ndarray) -> tuple[Tensor, float, dict[str, Tensor]]:
        from sklearn.model_selection import StratifiedKFold

        mean = x.mean(0)
        scale = x.std(0, unbiased=False)
        scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))
        z = ((x - mean) / scale).numpy()
        folds = min(int(self.options.get("cv", 5)), int(np.bincount(y).min()))
        if folds < 2:
            raise ProbeInputError(
                "logistic probe needs at least 2 examples of each class for cross-validation; "
                "add prompts of the rarer class to the training split"
            )
        model = LogisticRegressionCV(
            Cs=self.options.get("Cs", DEFAULT_CS),
            cv=StratifiedKFold(folds, shuffle=True, random_state=int(self.options.get("seed", 0))),
            max_iter=int(self.options.get("max_iter", 500)),
            scoring="neg_log_loss",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", FutureWarning)  # sklearn >= 1.8 default changes; l2 either way
            model.fit(z, y)
        coef = torch.as_tensor(model.coef_[0], dtype=torch.float64)
        weight = coef / scale
        bias = float(model.intercept_[0]) - float(weight @ mean)
        self.info["C"] = float(np.atleast_1d(model.C_)[0])
        return weight, bias, {"scaler_mean": mean, "scaler_scale": scale, "coef_standardised": coef}
