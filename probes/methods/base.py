"""The probe interface: a linear score ``x @ weight + bias`` learned by ``fit``.

Every probe, whatever it learns internally (a standardiser, a regularised logistic
regression, a shrunk covariance), ends as one effective linear map in raw activation
space. That map is what is saved, compared across models and scored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from probes.errors import ProbeInputError
from probes.metrics import ArrayLike, as_labels


def check_activations(x: Tensor, *, name: str = "activations") -> Float[Tensor, "n d"]:
    """A finite 2-D float64 tensor, or a clear error."""
    if not isinstance(x, Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ProbeInputError(
            f"{name} must be a non-empty [n, d] matrix, got shape {tuple(x.shape)}; "
            "check that prompts were extracted for this split"
        )
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite.all(1)).flatten()[:10].tolist()
        raise ProbeInputError(
            f"{name} contain NaN or inf in rows {rows}; re-extract in float32 or drop those prompts"
        )
    return x.detach().to("cpu", torch.float64)


class Probe(ABC):
    """Base class: ``fit`` learns ``weight``/``bias``; ``score`` is the linear map.

    Subclasses set ``name`` and implement :meth:`_fit`, which takes ``x`` (float64 ``[n, d]``)
    and ``y`` (int ``[n]``, 1 = defects) and returns ``(weight [d], bias, extras)``.
    """

    name: ClassVar[str] = ""
    uses_task_labels: ClassVar[bool] = True
    """False for probes fit on their own data (contrast pairs) rather than the labelled set."""

    def __init__(self, **options: Any) -> None:
        self.options: dict[str, Any] = dict(options)
        self.weight: Tensor | None = None
        self.bias: float = 0.0
        self.extras: dict[str, Tensor] = {}
        self.info: dict[str, Any] = {}

    def fit(self, x: Float[Tensor, "n d"], y: ArrayLike) -> Probe:
        """Learn the linear map from activations and 0/1 labels; returns ``self``."""
        xs = check_activations(x)
        labels = as_labels(y, n=int(xs.shape[0]))
        weight, bias, extras = self._fit(xs, labels)
        if not bool(torch.isfinite(weight).all()) or not np.isfinite(bias):
            raise ProbeInputError(
                f"{self.name} probe fit gave a non-finite direction; the activations may be "
                "constant or degenerate — try another layer or method"
            )
        self.weight, self.bias, self.extras = weight.double(), float(bias), extras
        return self

    @abstractmethod
    def _fit(self, x: Tensor, y: np.ndarray) -> tuple[Tensor, float, dict[str, Tensor]]:
        """The effective linear map ``(weight [d], bias, extras)`` of float64 ``x`` and 0/1 ``y``."""

    @property
    def fitted(self) -> bool:
        return self.weight is not None

    def _require_fit(self) -> Tensor:
        if self.weight is None:
            raise ProbeInputError(f"the {self.name} probe is not fitted; call fit() or load_probe() first")
        return self.weight

    def score(self, x: Float[Tensor, "n d"]) -> Float[Tensor, " n"]:
        """``x @ weight + bias`` in float64 (higher = more likely to defect)."""
        weight = self._require_fit()
        xs = check_activations(x)
        if xs.shape[1] != weight.shape[0]:
            raise ProbeInputError(
                f"activations have width {xs.shape[1]} but the probe was fit on width {weight.shape[0]}; "
                "score activations from the same model and hook"
            )
        return xs @ weight + self.bias

    @property
    def direction(self) -> Float[Tensor, " d"]:
        """Unit vector along ``weight``."""
        weight = self._require_fit()
        return weight / weight.norm()
