"""Metrics: 0 = corrupted and 1 = clean exactly; KL is 0 at the clean run; shapes are checked."""

from __future__ import annotations

import pytest
import torch
from beartype import beartype
from jaxtyping import TypeCheckError, jaxtyped

from analysis.patching.kernels import causal_attention
from analysis.patching.metrics import batch_metric, calibrate, logit_diff, on_full_logits
from backdoor_models.core.errors import UnknownNameError


@pytest.fixture
def logits(pair_batch):
    generator = torch.Generator().manual_seed(1)
    clean = torch.randn(pair_batch.n_pairs, 50, generator=generator)
    corrupted = clean.clone()
    rows = torch.arange(pair_batch.n_pairs)
    corrupted[rows, pair_batch.defect_ids % 50] -= 2.0
    return clean, corrupted


def test_normalised_logit_diff_is_exactly_zero_and_one(pair_batch, logits):
    batch = pair_batch.with_answers(3, 7)
    clean, corrupted = logits
    clean[:, 3] += 2.0
    metric = calibrate("logit_diff", batch, clean, corrupted, min_gap=0.1)
    assert float(batch_metric(metric, clean)) == 1.0
    assert float(batch_metric(metric, corrupted)) == 0.0
    halfway = (clean + corrupted) / 2
    assert float(batch_metric(metric, halfway)) == pytest.approx(0.5, abs=1e-6)
    full = torch.stack([corrupted, clean], dim=1)  # [batch, pos, vocab]: the answer is the last position
    assert float(on_full_logits(metric)(full)) == 1.0


def test_kl_to_clean(pair_batch, logits):
    clean, corrupted = logits
    metric = calibrate("kl", pair_batch.with_answers(3, 7), clean, corrupted + torch.randn_like(corrupted), min_gap=1e-3)
    assert float(batch_metric(metric, clean)) == pytest.approx(0.0, abs=1e-7)
    assert float(batch_metric(metric, corrupted)) > 0


def test_unknown_metric(pair_batch, logits):
    with pytest.raises(UnknownNameError, match="logit_diff"):
        calibrate("accuracy", pair_batch, *logits, min_gap=0.1)


def test_shapes_are_checked():
    checked = jaxtyped(typechecker=beartype)(logit_diff)
    checked(torch.zeros(2, 3, 10), torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(TypeCheckError):
        checked(torch.zeros(2, 10), torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long))
    attention = jaxtyped(typechecker=beartype)(causal_attention)
    q = torch.randn(1, 5, 2, 4)
    pattern, z = attention(q, q, q, 0.5)
    assert pattern.shape == (1, 2, 5, 5) and torch.allclose(pattern.sum(-1), torch.ones(1, 2, 5))
    assert (pattern.triu(1) == 0).all()
    with pytest.raises(TypeCheckError):
        attention(q, torch.randn(1, 6, 2, 4), q, 0.5)
