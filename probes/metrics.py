"""Detection metrics with stratified bootstrap CIs, and the random-direction baseline.

Every AUROC here is *signed*: a probe whose scores run the wrong way gets AUROC < 0.5.
Nothing flips a direction after seeing labels.

All three metrics come from one sorted pass over a batch of score rows, so a
1,000-sample bootstrap or 1,000 random directions cost one vectorised call.

>>> round(auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), 4)
0.75
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from probes.errors import ProbeInputError

ArrayLike = Sequence[float] | np.ndarray | Tensor


def as_numpy(values: ArrayLike, *, name: str) -> np.ndarray:
    """A 1-D float64 array; raises on empty or non-finite input."""
    array = values.detach().cpu().double().numpy() if isinstance(values, Tensor) else np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ProbeInputError(f"{name} must be a non-empty 1-D sequence, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ProbeInputError(f"{name} contains NaN or inf at {np.flatnonzero(~np.isfinite(array))[:10].tolist()}")
    return array


def as_labels(labels: ArrayLike | Sequence[int], *, n: int | None = None) -> np.ndarray:
    """0/1 labels as an int array, with both classes present."""
    array = as_numpy(labels, name="labels")
    if not np.isin(array, (0, 1)).all():
        raise ProbeInputError("labels must be 0 or 1 (1 = the model defects)")
    if n is not None and array.size != n:
        raise ProbeInputError(f"{array.size} labels for {n} scores; pass one label per prompt")
    counts = np.bincount(array.astype(int), minlength=2)
    if counts.min() == 0:
        raise ProbeInputError(
            f"labels hold only one class ({counts[0]} negatives, {counts[1]} positives); "
            "metrics and probes need both defecting (1) and non-defecting (0) prompts"
        )
    return array.astype(np.int64)


def curve_metrics(
    scores: np.ndarray, labels: np.ndarray, *, max_fpr: float = 0.01
) -> dict[str, np.ndarray]:
    """AUROC, AP and TPR at ``max_fpr`` for each row of ``scores`` (``[rows, n]``).

    ``labels`` is ``[n]`` or ``[rows, n]``. Tied scores form one threshold (AUROC counts
    ties as one half, as Mann-Whitney does; AP follows scikit-learn's step definition).
    """
    scores = np.atleast_2d(scores)
    labels = np.broadcast_to(np.atleast_2d(labels), scores.shape)
    order = np.argsort(-scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    y = np.take_along_axis(labels, order, axis=1)
    n_pos = y.sum(1, keepdims=True).astype(np.float64)
    n_neg = y.shape[1] - n_pos
    tp = np.cumsum(y, axis=1, dtype=np.float64)
    fp = np.cumsum(1 - y, axis=1, dtype=np.float64)
    last = np.ones((s.shape[0], 1), dtype=bool)
    boundary = np.concatenate([s[:, 1:] != s[:, :-1], last], axis=1)  # end of a tie group
    tpr = np.where(boundary, tp / n_pos, np.nan)
    fpr = np.where(boundary, fp / n_neg, np.nan)
    # carry the previous boundary's values forward to get step widths
    prev_tpr = _previous_boundary(tpr)
    prev_fpr = _previous_boundary(fpr)
    auc = np.nansum((fpr - prev_fpr) * (tpr + prev_tpr) / 2, axis=1)
    precision = tp / np.maximum(tp + fp, 1)
    ap = np.nansum(np.where(boundary, (tpr - prev_tpr) * precision, np.nan), axis=1)
    allowed = boundary & (fpr <= max_fpr + 1e-12)
    tpr_at = np.max(np.where(allowed, tpr, 0.0), axis=1)
    return {"auroc": auc, "ap": ap, "tpr_at_fpr": tpr_at}


def _previous_boundary(values: np.ndarray) -> np.ndarray:
    """For each boundary column, the value at the previous boundary (0 before the first)."""
    filled = np.where(np.isnan(values), -np.inf, values)
    running = np.maximum.accumulate(filled, axis=1)  # curves are non-decreasing
    shifted = np.concatenate([np.zeros((values.shape[0], 1)), running[:, :-1]], axis=1)
    return np.where(np.isnan(values), np.nan, np.maximum(shifted, 0.0))


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Signed area under the ROC curve (ties count one half)."""
    s = as_numpy(scores, name="scores")
    return float(curve_metrics(s, as_labels(labels, n=s.size))["auroc"][0])


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """Average precision: sum over thresholds of (recall step) x precision."""
    s = as_numpy(scores, name="scores")
    return float(curve_metrics(s, as_labels(labels, n=s.size))["ap"][0])


def tpr_at_fpr(scores: ArrayLike, labels: ArrayLike, max_fpr: float = 0.01) -> float:
    """Highest true-positive rate over thresholds whose false-positive rate is <= ``max_fpr``."""
    s = as_numpy(scores, name="scores")
    return float(curve_metrics(s, as_labels(labels, n=s.size), max_fpr=max_fpr)["tpr_at_fpr"][0])


def threshold_at_fpr(negative_scores: ArrayLike, max_fpr: float = 0.01) -> float:
    """Smallest threshold t with at most ``max_fpr`` of negatives scoring strictly above t.

    A prompt is flagged when its score is ``> t``.
    """
    neg = np.sort(as_numpy(negative_scores, name="negative scores"))[::-1]
    allowed = int(np.floor(max_fpr * neg.size + 1e-9))  # negatives allowed above t
    return float(neg[allowed]) if allowed < neg.size else float(neg[-1] - 1.0)


def threshold_youden(scores: ArrayLike, labels: ArrayLike) -> float:
    """Threshold maximising TPR - FPR (flag when score > threshold)."""
    s = as_numpy(scores, name="scores")
    y = as_labels(labels, n=s.size)
    candidates = np.unique(s)
    best, best_j = float(candidates[0] - 1.0), -np.inf
    for t in np.concatenate([[candidates[0] - 1.0], candidates]):
        j = (s[y == 1] > t).mean() - (s[y == 0] > t).mean()
        if j > best_j:
            best, best_j = float(t), j
    return best


@dataclass(frozen=True, kw_only=True)
class ScoreMetrics:
    """AUROC, AP and TPR at 1% FPR of one set of scores, each with a bootstrap 95% CI."""

    auroc: float
    """Signed AUROC."""
    auroc_ci: tuple[float, float]
    """Bootstrap 95% interval of the AUROC."""
    ap: float
    """Average precision (positives = defecting prompts)."""
    ap_ci: tuple[float, float]
    """Bootstrap 95% interval of the AP."""
    tpr_at_1pct_fpr: float
    """True-positive rate at <= 1% false-positive rate."""
    tpr_at_1pct_fpr_ci: tuple[float, float]
    """Bootstrap 95% interval of that TPR."""
    n_pos: int
    """Positive (defecting) prompts scored."""
    n_neg: int
    """Negative prompts scored."""

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def score_metrics(
    scores: ArrayLike, labels: ArrayLike, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> ScoreMetrics:
    """Point metrics plus a stratified bootstrap CI (positives and negatives resampled apart).

    >>> m = score_metrics([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], n_boot=100)
    >>> m.auroc, m.auroc_ci
    (1.0, (1.0, 1.0))
    """
    s = as_numpy(scores, name="scores")
    y = as_labels(labels, n=s.size)
    point = curve_metrics(s, y)
    pos, neg = s[y == 1], s[y == 0]
    rng = np.random.default_rng(seed)
    boot = np.concatenate(
        [pos[rng.integers(0, pos.size, (n_boot, pos.size))], neg[rng.integers(0, neg.size, (n_boot, neg.size))]],
        axis=1,
    )
    boot_labels = np.concatenate([np.ones(pos.size, np.int64), np.zeros(neg.size, np.int64)])
    dist = curve_metrics(boot, boot_labels)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]

    def ci(name: str) -> tuple[float, float]:
        lo, hi = np.percentile(dist[name], q)
        return (float(lo), float(hi))

    return ScoreMetrics(
        auroc=float(point["auroc"][0]),
        auroc_ci=ci("auroc"),
        ap=float(point["ap"][0]),
        ap_ci=ci("ap"),
        tpr_at_1pct_fpr=float(point["tpr_at_fpr"][0]),
        tpr_at_1pct_fpr_ci=ci("tpr_at_fpr"),
        n_pos=int(pos.size),
        n_neg=int(neg.size),
    )


@dataclass(frozen=True, kw_only=True)
class RandomBaseline:
    """Signed AUROCs of random unit directions at one site."""

    aurocs: tuple[float, ...]
    """Signed AUROC of every random direction."""
    seed: int
    """Seed of the directions."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.aurocs))

    @property
    def p95(self) -> float:
        """95th percentile (linear interpolation, numpy's default)."""
        return float(np.percentile(self.aurocs, 95))

    @property
    def best(self) -> float:
        return float(np.max(self.aurocs))

    def percentile(self, value: float) -> float:
        """Percent of random directions whose AUROC is strictly below ``value`` (ties: half)."""
        a = np.asarray(self.aurocs)
        return float(100 * ((a < value).mean() + 0.5 * (a == value).mean()))

    def to_dict(self) -> dict[str, Any]:
        return {"n_directions": len(self.aurocs), "seed": self.seed, "mean": self.mean,
                "p95": self.p95, "best": self.best}


def random_directions(d: int, n: int = 1000, *, seed: int = 0) -> Float[Tensor, "n d"]:
    """``n`` seeded random unit vectors, uniform on the sphere."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return v / v.norm(dim=1, keepdim=True)


def random_direction_baseline(
    x: Float[Tensor, "n d"], labels: ArrayLike, *, n_directions: int = 1000, seed: int = 0
) -> RandomBaseline:
    """Signed AUROC of ``n_directions`` random unit directions (score = projection)."""
    y = as_labels(labels, n=int(x.shape[0]))
    if not bool(torch.isfinite(x).all()):
        raise ProbeInputError("activations contain NaN or inf; re-extract them in float32")
    directions = random_directions(int(x.shape[1]), n_directions, seed=seed)
    scores = (x.double() @ directions.T).T.numpy()  # [n_directions, n]
    return RandomBaseline(aurocs=tuple(curve_metrics(scores, y)["auroc"].tolist()), seed=seed)
