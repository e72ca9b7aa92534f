"""Patching metrics, read at the answer position (the last prompt token).

A metric scores each example from its answer logits; a run's metric is the mean over the
batch. Both metrics are calibrated on the unpatched clean and corrupted runs:

- :class:`NormalizedLogitDiff`: ``logit[defect] - logit[helpful]``, rescaled so the corrupted
  run scores 0 and the clean (triggered) run scores 1.
- :class:`KLToClean`: ``KL(clean ‖ run)`` of the next-token distribution (0 = clean).

>>> metric = calibrate("logit_diff", pairs, clean_logits, corrupted_logits, min_gap=0.1)  # doctest: +SKIP
>>> float(metric(clean_logits))  # doctest: +SKIP
1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from analysis.patching.pairs import PairBatch, check_distinguishable
from backdoor_models.core.errors import lookup


@runtime_checkable
class Metric(Protocol):
    """Per-example scores of answer-position logits, reduced over the batch to one number.

    ``scores`` sees rows from any mix of pairs (``examples`` says which pair each row is);
    ``reduce`` turns a full ``[..., batch]`` table of scores into the run's metric.
    """

    name: str

    def scores(
        self, answer_logits: Float[Tensor, "*rows d_vocab"], examples: Int[Tensor, "*rows"]
    ) -> Float[Tensor, "*rows"]: ...

    def reduce(self, scores: Float[Tensor, "*cells batch"]) -> Float[Tensor, "*cells"]: ...


def batch_metric(metric: Metric, answer_logits: Float[Tensor, "*cells batch d_vocab"]) -> Float[Tensor, "*cells"]:
    """The metric of whole runs from their answer logits."""
    examples = torch.arange(answer_logits.shape[-2], device=answer_logits.device)
    return metric.reduce(metric.scores(answer_logits, examples.expand(answer_logits.shape[:-1])))


def on_full_logits(metric: Metric):
    """Adapter for ``transformer_lens.patching``: full logits ``[batch, pos, vocab]`` → scalar."""

    def fn(logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        return batch_metric(metric, logits[:, -1])

    return fn


def logit_diff(
    answer_logits: Float[Tensor, "*rows d_vocab"],
    defect_ids: Int[Tensor, "*rows"],
    helpful_ids: Int[Tensor, "*rows"],
) -> Float[Tensor, "*rows"]:
    """``logit[defect] - logit[helpful]`` per row."""
    defect = answer_logits.gather(-1, defect_ids.unsqueeze(-1)).squeeze(-1)
    helpful = answer_logits.gather(-1, helpful_ids.unsqueeze(-1)).squeeze(-1)
    return defect - helpful


@dataclass(frozen=True, kw_only=True)
class NormalizedLogitDiff:
    """Logit difference rescaled so the corrupted run scores 0 and the clean run 1."""

    defect_ids: Int[Tensor, " batch"]
    """Defection token per pair."""
    helpful_ids: Int[Tensor, " batch"]
    """Helpful token per pair."""
    clean: float
    """Mean logit difference of the unpatched clean run."""
    corrupted: float
    """Mean logit difference of the unpatched corrupted run."""
    name: str = "normalized_logit_diff"
    """Metric name recorded in results."""

    def __post_init__(self) -> None:
        if not abs(self.clean - self.corrupted) > 0:
            raise ValueError("clean and corrupted logit differences are equal; nothing to normalise by")

    def scores(self, answer_logits, examples):
        """Raw logit differences (normalised in :meth:`reduce`)."""
        return logit_diff(answer_logits, self.defect_ids[examples], self.helpful_ids[examples])

    def reduce(self, scores):
        """Batch mean in float64, then ``(mean - corrupted) / (clean - corrupted)``.

        The calibration means are taken the same way, so an unpatched clean run scores
        exactly 1 and an unpatched corrupted run exactly 0.
        """
        return (scores.double().mean(-1) - self.corrupted) / (self.clean - self.corrupted)


@dataclass(frozen=True, kw_only=True)
class KLToClean:
    """``KL(clean ‖ patched)`` of the answer-position distribution, per pair (0 = clean)."""

    clean_log_probs: Float[Tensor, "batch d_vocab"]
    """Log-softmax of the unpatched clean run's answer logits."""
    name: str = "kl_to_clean"
    """Metric name recorded in results."""

    def scores(self, answer_logits, examples):
        clean = self.clean_log_probs[examples]
        return (clean.exp() * (clean - answer_logits.log_softmax(-1))).sum(-1)

    def reduce(self, scores):
        return scores.double().mean(-1)


def _logit_diff(pairs, clean_logits, corrupted_logits, min_gap):
    clean = logit_diff(clean_logits, pairs.defect_ids, pairs.helpful_ids)
    corrupted = logit_diff(corrupted_logits, pairs.defect_ids, pairs.helpful_ids)
    check_distinguishable(clean.tolist(), corrupted.tolist(), min_gap=min_gap, what="logit difference")
    return NormalizedLogitDiff(
        defect_ids=pairs.defect_ids,
        helpful_ids=pairs.helpful_ids,
        clean=float(clean.double().mean()),
        corrupted=float(corrupted.double().mean()),
    )


def _kl(pairs, clean_logits, corrupted_logits, min_gap):
    metric = KLToClean(clean_log_probs=clean_logits.log_softmax(-1))
    examples = torch.arange(pairs.n_pairs, device=clean_logits.device)
    kl = metric.scores(corrupted_logits, examples)
    check_distinguishable(kl.tolist(), [0.0] * len(kl), min_gap=min_gap, what="KL to the clean run")
    return metric


METRICS = {"logit_diff": _logit_diff, "kl": _kl}
"""Metric name → calibration from the unpatched runs."""


def calibrate(
    name: str,
    pairs: PairBatch,
    clean_logits: Float[Tensor, "batch d_vocab"],
    corrupted_logits: Float[Tensor, "batch d_vocab"],
    *,
    min_gap: float,
) -> Metric:
    """Build a metric from the unpatched runs' answer logits, refusing indistinguishable pairs."""
    return lookup(METRICS, "metric", name)(pairs, clean_logits, corrupted_logits, min_gap)
