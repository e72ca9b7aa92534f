"""Result types shared by exact and attribution patching: labelled axes, values, timing.

>>> result.axes[0].name, result.values.shape  # doctest: +SKIP
('layer', torch.Size([4, 48]))
>>> result.to_dict()["metric"]  # doctest: +SKIP
'normalized_logit_diff'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from backdoor_models.core.errors import lookup

DIRECTIONS: dict[str, tuple[str, str]] = {
    "denoising": ("clean", "corrupted"),
    "noising": ("corrupted", "clean"),
    "identity_clean": ("clean", "clean"),
    "identity_corrupted": ("corrupted", "corrupted"),
}
"""Direction → (run the patched activations come from, run that is patched).

Denoising patches clean (triggered) activations into the corrupted run and asks which
components restore defection; noising patches corrupted activations into the clean run and
asks which break it. The identity directions patch a run into itself (a sanity check: every
cell equals the unpatched metric)."""


def direction_runs(direction: str) -> tuple[str, str]:
    """``(source, target)`` run names of a direction, or a clear error."""
    return lookup(DIRECTIONS, "direction", direction)


@dataclass(frozen=True, kw_only=True)
class Axis:
    """One labelled axis of a result."""

    name: str
    """``layer``, ``pos``, ``dest_pos``, ``src_pos``, ``head``, or ``cell`` (chosen cells, ``layer=0,pos=5,head=1``)."""
    labels: tuple[str, ...]
    """One label per index (positions carry their token text)."""

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    """The metric after each patch of one sweep, with everything needed to read it."""

    sweep: str
    """Sweep name, e.g. ``resid_pre`` or ``head_out_by_pos``."""
    method: str
    """``exact`` (activation patching) or ``attribution`` (gradient estimate)."""
    direction: str
    """``denoising``, ``noising`` or an identity check."""
    metric: str
    """Metric name."""
    axes: tuple[Axis, ...]
    """Labelled axes, in the order of ``values``' dimensions."""
    values: Tensor
    """Metric after each patch (float64, CPU); attribution stores ``baseline + estimate``."""
    baseline: float
    """Metric of the unpatched run that was patched (0 for denoising with the normalised logit diff)."""
    seconds: float
    """Wall-clock time of the sweep."""
    engine: str
    """What computed it: ``fast``, ``hooks`` or ``gradient``."""
    details: dict[str, Any] = field(default_factory=dict)
    """Counts and settings (cells, cells skipped as no-ops, ...)."""

    def __post_init__(self) -> None:
        if tuple(self.values.shape) != tuple(len(a) for a in self.axes):
            raise ValueError(
                f"values shape {tuple(self.values.shape)} does not match axes "
                f"{[(a.name, len(a)) for a in self.axes]}"
            )

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def effect(self) -> Tensor:
        """``values - baseline``: what each patch changed."""
        return self.values - self.baseline

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: axes with labels, nested values, metric, seconds."""
        return {
            "sweep": self.sweep,
            "method": self.method,
            "direction": self.direction,
            "metric": self.metric,
            "axes": [{"name": a.name, "labels": list(a.labels)} for a in self.axes],
            "values": self.values.tolist(),
            "baseline": self.baseline,
            "seconds": self.seconds,
            "engine": self.engine,
            "details": dict(self.details),
        }


def as_values(tensor: Tensor) -> Tensor:
    """Detached float64 CPU copy, the storage type of result values."""
    return tensor.detach().to(device="cpu", dtype=torch.float64).clone()
