"""Metrics against hand-computed cases and scikit-learn; the random baseline on constructed data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from probes import ProbeInputError, random_direction_baseline, score_metrics
from probes.metrics import (
    RandomBaseline,
    auroc,
    average_precision,
    curve_metrics,
    threshold_at_fpr,
    tpr_at_fpr,
)


def test_hand_computed_auroc_ap_and_tpr():
    # positives 0.35, 0.8; negatives 0.1, 0.4 -> pairs won: (0.8>0.1, 0.8>0.4, 0.35>0.1) = 3/4
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert auroc(scores, labels) == 0.75
    # ranked: 0.8(+) P=1 R=.5 ; 0.4(-) ; 0.35(+) P=2/3 R=1 -> AP = .5*1 + .5*2/3
    assert average_precision(scores, labels) == pytest.approx(0.5 + 1 / 3)
    # a threshold with FPR 0 catches only 0.8 -> TPR 0.5
    assert tpr_at_fpr(scores, labels, 0.01) == 0.5
    assert tpr_at_fpr(scores, labels, 0.5) == 1.0
    # signed: reversed scores give 1 - AUROC, never flipped
    assert auroc([-s for s in scores], labels) == 0.25
    # ties count one half
    assert auroc([1.0, 1.0], [0, 1]) == 0.5


def test_tpr_at_one_percent_fpr_on_hundred_negatives():
    neg = np.arange(100.0)  # one negative (99) may sit above the threshold
    pos = np.array([98.5, 99.5, 100.5, 50.0])
    scores = np.concatenate([neg, pos])
    labels = np.r_[np.zeros(100), np.ones(4)]
    assert tpr_at_fpr(scores, labels, 0.01) == 0.75  # thresholds >= 98.5 (only 99 above) catch three
    assert threshold_at_fpr(neg, 0.01) == 98.0  # flag when > 98: only the negative 99 is above


def test_curve_metrics_match_sklearn_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(50):
        y = rng.integers(0, 2, 40)
        y[:2] = [0, 1]
        s = rng.integers(0, 5, 40).astype(float)
        m = curve_metrics(s, y)
        assert m["auroc"][0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert m["ap"][0] == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(100), np.zeros(100)]
    s = rng.normal(size=200) + y
    a = score_metrics(s, y, n_boot=500, seed=3)
    b = score_metrics(s, y, n_boot=500, seed=3)
    assert a == b
    assert a.auroc_ci[0] < a.auroc < a.auroc_ci[1] and a.auroc_ci[1] - a.auroc_ci[0] < 0.2
    assert a.ap_ci[0] <= a.ap <= a.ap_ci[1]
    assert a.to_dict()["auroc_ci"] == list(a.auroc_ci)
    perfect = score_metrics([0, 1, 2, 3], [0, 0, 1, 1], n_boot=50)
    assert perfect.auroc_ci == (1.0, 1.0) and perfect.tpr_at_1pct_fpr == 1.0


def test_metric_input_errors():
    with pytest.raises(ProbeInputError, match="only one class"):
        auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ProbeInputError, match="non-empty"):
        auroc([], [])
    with pytest.raises(ProbeInputError, match="NaN or inf"):
        auroc([0.1, float("nan")], [0, 1])
    with pytest.raises(ProbeInputError, match="one label per prompt"):
        auroc([0.1, 0.2, 0.3], [0, 1])


def test_random_baseline_summary_on_known_aurocs():
    rb = RandomBaseline(aurocs=tuple(np.arange(1000) / 1000), seed=0)
    assert rb.mean == pytest.approx(0.4995)
    assert rb.p95 == pytest.approx(0.94905)  # numpy linear interpolation
    assert rb.best == 0.999
    assert rb.percentile(0.5) == pytest.approx(50.05)  # 500 below, one tie counted half
    assert rb.percentile(1.0) == 100.0 and rb.percentile(-1.0) == 0.0


def test_random_baseline_in_one_dimension():
    # in 1-D a random unit direction is +1 or -1: AUROC is exactly 1 or 0
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    rb = random_direction_baseline(x, [0, 0, 1, 1], n_directions=1000, seed=0)
    values = np.asarray(rb.aurocs)
    assert set(values.tolist()) == {0.0, 1.0}
    assert rb.best == 1.0 and rb.p95 == 1.0
    assert rb.mean == pytest.approx((values == 1.0).mean()) and 0.4 < rb.mean < 0.6
    assert rb.percentile(1.0) == pytest.approx(100 * (1 - rb.mean / 2))
    again = random_direction_baseline(x, [0, 0, 1, 1], n_directions=1000, seed=0)
    assert again.aurocs == rb.aurocs


def test_random_directions_rarely_match_a_planted_probe():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 2
    x = torch.randn(400, 64, generator=gen)
    x[:, 0] += 2.0 * y
    rb = random_direction_baseline(x, y.numpy(), n_directions=1000, seed=1)
    probe_auroc = auroc(x[:, 0], y.numpy())
    assert abs(rb.mean - 0.5) < 0.02  # signed: random signs average out
    assert rb.p95 < probe_auroc and rb.percentile(probe_auroc) == 100.0
