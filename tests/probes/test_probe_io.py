"""Saved probes load back as the same linear map: identical scores, no pickle."""

from __future__ import annotations

import json

import pytest
import torch

from backdoor_models.core.errors import RunDirectoryError
from probes import PROBES, Site, load_probe, save_probe, train
from probes.io import probe_site


@pytest.mark.parametrize("method", sorted(PROBES))
def test_round_trip_scores_identically(method, tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=gen) * torch.linspace(0.1, 10, 8)  # unequal scales: the scaler matters
    y = (x[:, 2] / 5 + torch.randn(200, generator=gen) > 0).long()
    probe = train(method, x, y)
    site = Site(hook="resid_post", layer=3)
    json_path = save_probe(probe, tmp_path / f"{method}_L3", site=site, metadata={"note": "test"})
    loaded = load_probe(json_path)
    assert type(loaded) is type(probe)
    assert torch.equal(loaded.score(x), probe.score(x))
    assert torch.equal(loaded.direction, probe.direction)
    assert probe_site(json_path) == site
    meta = json.loads(json_path.read_text())
    assert meta["method"] == method and meta["metadata"] == {"note": "test"}
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".safetensors"]
    if method == "logistic":
        assert {"scaler_mean", "scaler_scale"} <= set(loaded.extras)


def test_tampered_tensors_are_refused(tmp_path):
    probe = train("meandiff", torch.randn(20, 4), [0, 1] * 10)
    save_probe(probe, tmp_path / "p")
    tensors = tmp_path / "p.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    with pytest.raises(RunDirectoryError, match="sha256"):
        load_probe(tmp_path / "p")
    with pytest.raises(RunDirectoryError, match="not found"):
        load_probe(tmp_path / "missing")
