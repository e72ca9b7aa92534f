"""Patching, attribution and answer picking unembed only the answer position (the metric's only read).

A forward hook on the Hugging Face unembedding under the bridge records how many positions each
call unembeds; the results must still equal the reference's, which unembeds every position.
"""

from __future__ import annotations

import pytest
import torch
import transformer_lens.patching as tlp

from analysis.circuits.attribution import attribution_patch
from analysis.patching.forward import answer_logits, last_position_only
from analysis.patching.kernels.base import raw
from analysis.patching.metrics import on_full_logits
from analysis.patching.pairs import separating_answers
from analysis.patching.patcher import ActivationPatcher, PatchingConfig


@pytest.fixture
def unembedded(random_bridge):
    """Positions per unembedding call, recorded while the test runs."""
    seen: list[int] = []
    head = raw(random_bridge.original_model.lm_head)
    handle = head.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[-2]))
    yield seen
    handle.remove()


def test_the_bridge_takes_logits_to_keep(random_bridge, pair_batch, unembedded):
    assert last_position_only(random_bridge) == {"logits_to_keep": 1}
    full = random_bridge(pair_batch.clean_tokens)
    assert unembedded == [pair_batch.n_pos]
    assert (answer_logits(random_bridge, pair_batch.clean_tokens) - full[:, -1]).abs().max() <= 1e-5
    assert unembedded[1:] == [1]


def test_a_model_without_it_is_run_in_full():
    class Plain(torch.nn.Module):
        def forward(self, tokens):
            return tokens[..., None].float().expand(*tokens.shape, 3)

    assert last_position_only(Plain()) == {}
    assert answer_logits(Plain(), torch.tensor([[1, 2, 5]])).tolist() == [[5.0, 5.0, 5.0]]


@pytest.mark.parametrize("engine", ["fast", "hooks"])
def test_patching_unembeds_one_position_and_equals_the_reference(random_bridge, pair_batch, clean_cache, engine,
                                                                 unembedded):
    patcher = ActivationPatcher(random_bridge, pair_batch,
                                config=PatchingConfig(progress=False, min_gap=1e-3, engine=engine))
    ours = patcher.sweep("resid_pre")
    assert unembedded and set(unembedded) == {1}
    unembedded.clear()
    reference = tlp.get_act_patch_resid_pre(random_bridge, pair_batch.corrupted_tokens, clean_cache,
                                            on_full_logits(patcher.metric))
    assert set(unembedded) == {pair_batch.n_pos}  # the reference unembeds every position
    assert (ours.values - reference.double()).abs().max() <= 1e-4


def test_attribution_and_answer_picking_unembed_one_position(random_bridge, pair_batch, patcher, unembedded):
    estimates = attribution_patch(random_bridge, pair_batch, patcher.metric, sweeps=("head_out",))
    assert separating_answers(random_bridge, pair_batch) == (int(pair_batch.defect_ids[0]), int(pair_batch.helpful_ids[0]))
    assert len(unembedded) == 4 and set(unembedded) == {1}
    assert estimates[0].baseline == pytest.approx(patcher.baseline(), abs=1e-5)
