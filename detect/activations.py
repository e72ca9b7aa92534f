"""Shared base of the detectors that read the residual stream at the answer position.

Every one reads ``resid_post`` of one block at the last prompt token (where the model
decides its answer) through :func:`probes.extract`. The block is option ``layer``; by
default the last one, where the contrast probe separated triggered prompts best on 2-layer
organisms (docs/archive.md, "Numbers formerly in code docstrings and comments").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from detect.base import DetectError, Detector, DetectorOptions, Subject, TrustedData
from probes.extract import ExtractConfig, extract
from probes.sites import Site


@dataclass(frozen=True, kw_only=True)
class ActivationOptions(DetectorOptions):
    """Options of every detector that reads the residual stream."""

    layer: int | None = None
    """Block whose ``resid_post`` is read at the last prompt token (0-based; None = the last block)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layer is not None and (isinstance(self.layer, bool) or not isinstance(self.layer, int)
                                       or self.layer < 0):
            raise DetectError(f"layer must be a block index >= 0 (or None for the last block), got {self.layer!r}")


class ActivationDetector(Detector):
    """Fit and score on ``[n, d_model]`` activations; subclasses implement the two array steps."""

    needs = frozenset({"clean_data", "activations"})
    cost = "one forward pass per prompt (up to the read layer)"
    Options = ActivationOptions
    options: ActivationOptions

    def site(self, subject: Subject) -> Site:
        layer = self.options.layer
        return Site(hook="resid_post", layer=subject.n_layers - 1 if layer is None else layer)

    def activations(self, prompts: list[str]) -> Float[Tensor, "n d"]:
        """Residual stream at the answer position of each prompt."""
        subject = self._require_fit()
        site = self.site(subject)
        acts = extract(subject.bridge, prompts, sites=[site], config=ExtractConfig(progress=False, batch_size=64))
        return acts.get(site, dtype=torch.float64)

    def _fit(self, subject: Subject, prompts: list[str], data: TrustedData) -> None:
        self.seed = data.seed
        self._fit_acts(self.activations(prompts).numpy(), data)

    def _score(self, prompts: list[str], reference: list[str] | None) -> tuple[np.ndarray, np.ndarray | None]:
        x = self.activations(prompts).numpy()
        ref = self.activations(reference).numpy() if reference is not None else None
        return self._score_acts(x, ref)

    def _fit_acts(self, x: np.ndarray, data: TrustedData) -> None:
        raise NotImplementedError

    def _score_acts(self, x: np.ndarray, reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError
