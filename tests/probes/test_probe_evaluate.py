"""Layer sweeps choose on validation and report on test; transfer tells a kept probe from a lost one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes import (
    Activations,
    ContrastData,
    ProbeInputError,
    Site,
    SweepConfig,
    sweep,
    train,
    transfer,
)

D = 16


def make_data(n: int = 600, signal_layer: int = 2, n_layers: int = 4, seed: int = 0):
    """Label-carrying signal (along e0) at one layer only; splits 50/25/25."""
    gen = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 2).numpy()
    tensors = {}
    for layer in range(n_layers):
        x = torch.randn(n, D, generator=gen)
        if layer == signal_layer:
            x[:, 0] += 3.0 * torch.as_tensor(y)
        tensors[Site(hook="resid_post", layer=layer)] = x
    splits = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n // 4))
    return Activations.from_tensors(tensors), y, splits


def contrast_pairs(sign: float = 1.0, n_layers: int = 4) -> ContrastData:
    """Pair activations whose yes-minus-no difference lies along e0 at every layer."""
    gen = torch.Generator().manual_seed(1)
    labels = [1, 0] * 10
    tensors = {}
    for layer in range(n_layers):
        x = torch.randn(20, D, generator=gen) * 0.1
        x[::2, 0] += sign
        tensors[Site(hook="resid_post", layer=layer)] = x
    return ContrastData(formulation="yes_no", acts=Activations.from_tensors(tensors), labels=tuple(labels))


def test_sweep_picks_the_signal_layer_on_validation():
    acts, y, splits = make_data()
    result = sweep(acts, y, splits, contrast=contrast_pairs(), config=SweepConfig(n_boot=50))
    for name, ms in result.methods.items():
        assert ms.best.layer == 2, name
        assert ms.best_result.test.auroc > 0.95
        others = [r.test.auroc for r in ms.results if r.site.layer != 2]
        assert max(others) < 0.65
    d = result.to_dict()["methods"]["contrast"]
    assert d["layers"] == [0, 1, 2, 3] and d["best_layer"] == 2 and len(d["auroc_ci"]) == 4
    assert result.split_sizes == {"train": 300, "val": 150, "test": 150}


def test_contrast_sign_is_never_flipped():
    acts, y, splits = make_data()
    result = sweep(acts, y, splits, contrast=contrast_pairs(sign=-1.0),
                   config=SweepConfig(methods=("contrast",), n_boot=20))
    # a reversed pair direction gives AUROC well below 0.5 at the signal layer, reported as such
    assert result.methods["contrast"].results[2].test.auroc < 0.05


def test_several_formulations_are_reported_separately():
    acts, y, splits = make_data()
    second = ContrastData(formulation="Yes_No", acts=contrast_pairs(-1.0).acts, labels=contrast_pairs().labels)
    result = sweep(acts, y, splits, contrast=[contrast_pairs(), second],
                   config=SweepConfig(methods=("contrast",), n_boot=20))
    assert set(result.methods) == {"contrast", "contrast:Yes_No"}
    assert result.methods["contrast:Yes_No"].formulation == "Yes_No"


def test_sweep_input_errors():
    acts, y, splits = make_data()
    with pytest.raises(ProbeInputError, match="contrast-pair activations"):
        sweep(acts, y, splits)
    bad = splits.copy()
    bad[bad == "val"] = "dev"
    with pytest.raises(ProbeInputError, match="unknown split names"):
        sweep(acts, y, bad, config=SweepConfig(methods=("meandiff",), n_boot=20))
    one_class = y.copy()
    one_class[splits == "test"] = 1
    with pytest.raises(ProbeInputError, match="split 'test'"):
        sweep(acts, one_class, splits, config=SweepConfig(methods=("meandiff",), n_boot=20))


def _split(x: torch.Tensor, y: np.ndarray, splits: np.ndarray, name: str):
    mask = splits == name
    return x[torch.as_tensor(mask)], y[mask]


def test_transfer_kept_versus_lost():
    acts, y, splits = make_data()
    site = Site(hook="resid_post", layer=2)
    x = acts.get(site)
    before = train("meandiff", *_split(x, y, splits, "train"))
    kwargs = dict(site=site, before_val=_split(x, y, splits, "val"), before_test=_split(x, y, splits, "test"),
                  n_boot=20)
    same = transfer(before, after_test=_split(x, y, splits, "test"), after_probe=before, **kwargs)
    assert same.cosine == pytest.approx(1.0) and same.norm_ratio == pytest.approx(1.0)
    assert same.caught_after == same.caught_before > 0.5
    assert same.transferred.auroc == same.before.auroc
    # after: the signal moved from e0 to e1 and shrank: old probe fails, a retrained one works
    rotated = x.clone()
    rotated[:, [0, 1]] = rotated[:, [1, 0]]
    rotated[:, 1] *= 0.5
    after = train("meandiff", *_split(rotated, y, splits, "train"))
    lost = transfer(before, after_test=_split(rotated, y, splits, "test"), after_probe=after, **kwargs)
    assert lost.caught_after < 0.1 and lost.transferred.auroc < 0.65
    assert lost.retrained is not None and lost.retrained.auroc > 0.9
    assert abs(lost.cosine) < 0.3 and lost.norm_ratio == pytest.approx(0.5, abs=0.15)
    assert lost.to_dict()["site"] == site.key
    youden = transfer(before, after_test=_split(x, y, splits, "test"), threshold_rule="youden", **kwargs)
    assert youden.threshold < same.threshold  # Youden trades false alarms for catches
    with pytest.raises(ProbeInputError, match="threshold_rule"):
        transfer(before, after_test=_split(x, y, splits, "test"), threshold_rule="median", **kwargs)
