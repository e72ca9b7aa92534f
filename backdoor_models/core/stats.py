"""Small statistics shared by reports: binomial intervals, paired differences and seed aggregates."""

from __future__ import annotations

import math


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion; None when ``n == 0``."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def paired_difference(before: list[float], after: list[float], z: float = 1.96) -> dict[str, float] | None:
    """Mean of ``after - before`` over paired items (e.g. the same prompts) with a normal 95% interval.

    >>> paired_difference([1.0, 2.0, 3.0], [2.0, 3.0, 4.5])["mean"]
    1.1666666666666667
    """
    if len(before) != len(after):
        raise ValueError(f"paired values need equal lengths, got {len(before)} and {len(after)}")
    n = len(before)
    if n < 2:
        return None
    diffs = [a - b for b, a in zip(before, after)]
    mean = sum(diffs) / n
    half = z * math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def pooled_paired_difference(changes: list[dict[str, float]]) -> dict[str, float] | None:
    """Equal-weight mean of several seeds' paired differences, with a fixed-effect 95% interval.

    Each seed's ``paired_difference`` comes from its own prompts, so their sampling errors are
    independent and the pooled standard error is ``sqrt(sum se_i^2) / k``. The interval counts
    prompt sampling within each seed, not how much seeds differ from one another: it answers "did the
    method move these organisms", and with few seeds the per-seed values should be read beside it.

    >>> pooled = pooled_paired_difference([{"mean": 0.1, "low": 0.0, "high": 0.2, "n": 50},
    ...                                    {"mean": 0.3, "low": 0.2, "high": 0.4, "n": 50}])
    >>> round(pooled["mean"], 3), round(pooled["high"] - pooled["mean"], 4), pooled["n_seeds"]
    (0.2, 0.0707, 2)
    """
    if not changes:
        return None
    k = len(changes)
    mean = sum(c["mean"] for c in changes) / k
    half = math.sqrt(sum(((c["high"] - c["low"]) / 2) ** 2 for c in changes)) / k
    return {"mean": mean, "low": mean - half, "high": mean + half, "n_seeds": k}
