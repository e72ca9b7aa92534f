"""A labelled prompt set: the prompts a probe study reads, their labels, splits and groups.

They travel together everywhere (one per prompt, same order), so they are one value, checked
once: lengths agree, labels are 0/1, and each split holds both classes.

>>> data = LabelledPrompts(prompts=("a", "b", "c", "d", "e", "f"), labels=(0, 1, 0, 1, 0, 1),
...                        splits=("train", "train", "val", "val", "test", "test"))
>>> data.labels.tolist(), data.split_index()["test"].tolist()
([0, 1, 0, 1, 0, 1], [4, 5])
>>> data.with_labels([1, 0, 1, 0, 1, 0]).labels.tolist()
[1, 0, 1, 0, 1, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from probes.errors import ProbeInputError
from probes.evaluate import split_indices
from probes.metrics import as_labels


@dataclass(frozen=True, init=False)
class LabelledPrompts:
    """Prompts with one label, one split name and (optionally) one group name each."""

    prompts: tuple[str, ...]
    """Prompt strings in the model's format, ending where the answer starts."""
    labels: np.ndarray
    """Per prompt: 1 if the model defects on it (or it holds the trigger), else 0."""
    splits: tuple[str, ...]
    """Per prompt: ``train``, ``val`` or ``test``; each split needs both classes."""
    groups: tuple[str, ...] | None = None
    """Per prompt, a group name (``triggered``, ``clean``, ``near_trigger``, ``redteam``, ...), or None."""

    def __init__(self, *, prompts: Sequence[str], labels: Any, splits: Sequence[str],
                 groups: Sequence[str] | None = None) -> None:
        if len(prompts) == 0:
            raise ProbeInputError("no prompts given; pass the labelled prompt set")
        object.__setattr__(self, "prompts", tuple(prompts))
        object.__setattr__(self, "labels", as_labels(labels, n=len(prompts)))
        object.__setattr__(self, "splits", tuple(splits))
        object.__setattr__(self, "groups", None if groups is None else tuple(groups))
        if len(self.splits) != len(self.prompts):
            raise ProbeInputError(f"{len(self.splits)} split names for {len(self.prompts)} prompts; give one per prompt")
        if self.groups is not None and len(self.groups) != len(self.prompts):
            raise ProbeInputError(f"{len(self.groups)} group names for {len(self.prompts)} prompts; "
                                  "give one per prompt or None")
        self.split_index()  # each split must hold both classes

    def __len__(self) -> int:
        return len(self.prompts)

    def split_index(self) -> dict[str, np.ndarray]:
        """Prompt indices of each split (``train``, ``val``, ``test``)."""
        return split_indices(self.splits, self.labels)

    def with_labels(self, labels: Any) -> LabelledPrompts:
        """The same prompts with other labels (e.g. another model's behaviour on them)."""
        return replace(self, labels=labels)

    def groups_of(self, index: np.ndarray) -> list[str] | None:
        """The group names of the prompts at ``index`` (None without groups)."""
        return None if self.groups is None else [self.groups[i] for i in index]
