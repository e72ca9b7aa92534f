"""Our exact patching gives the numbers of ``transformer_lens.patching`` for every sweep type.

The reference runs one bridge forward per cell, so grids over positions are compared on a
subset of cells (via its ``index_df``): a position before the trigger (an unchanged patch), the
trigger, the token after it, a middle token and the answer position.
"""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import torch
import transformer_lens.patching as tlp

from analysis.patching.metrics import on_full_logits

TOL = 1e-4
POSITIONS = (2, 4, 5, 9, 13)  # before the trigger, trigger, after, middle, answer
HEADS = (0, 3)


def reference_cells(bridge, tokens, cache, metric, setter, activation, columns, rows):
    frame = pd.DataFrame(rows, columns=list(columns))
    values = tlp.generic_activation_patch(
        bridge, tokens, cache, on_full_logits(metric), setter, activation, index_df=frame
    )
    return values.double().cpu(), frame


def ours_at(result, frame, order):
    """Our values at the reference's rows; ``order`` lists the frame column of each of our axes."""
    return torch.stack([result.values[tuple(int(row[c]) for c in order)] for _, row in frame.iterrows()])


def test_full_grid_resid_pre(random_bridge, pair_batch, patcher, clean_cache):
    reference = tlp.get_act_patch_resid_pre(
        random_bridge, pair_batch.corrupted_tokens, clean_cache, on_full_logits(patcher.metric)
    )
    ours = patcher.sweep("resid_pre")
    assert ours.values.shape == reference.shape
    assert (ours.values - reference.double()).abs().max() <= TOL
    assert ours.values.abs().max() > 0.05  # the comparison is not between two zero maps


def test_every_head_all_positions(random_bridge, pair_batch, patcher, clean_cache):
    """``get_act_patch_attn_head_all_pos_every``: out, q, k, v, pattern of each head."""
    reference = tlp.get_act_patch_attn_head_all_pos_every(
        random_bridge, pair_batch.corrupted_tokens, clean_cache, on_full_logits(patcher.metric)
    )
    for i, name in enumerate(("head_out", "head_q", "head_k", "head_v", "head_pattern")):
        ours = patcher.sweep(name)
        assert (ours.values - reference[i].double()).abs().max() <= TOL, name


LAYER_POS = [(layer, pos) for layer in range(2) for pos in POSITIONS]


@pytest.mark.parametrize(
    ("sweep", "activation"),
    [("mlp_in", "resid_mid"), ("attn_out", "attn_out"), ("mlp_out", "mlp_out"), ("resid_post", "resid_post")],
)
def test_layer_by_position_sites(random_bridge, pair_batch, patcher, clean_cache, sweep, activation):
    """``mlp_in`` is what ``get_act_patch_resid_mid`` patches on a bridge (``ln2.hook_in``)."""
    reference, frame = reference_cells(
        random_bridge, pair_batch.corrupted_tokens, clean_cache, patcher.metric,
        tlp.layer_pos_patch_setter, activation, ("layer", "pos"), LAYER_POS,
    )
    ours = ours_at(patcher.sweep(sweep), frame, ("layer", "pos"))
    assert (ours - reference).abs().max() <= TOL


def test_resid_mid_patches_the_residual_stream(random_bridge, pair_batch, patcher, clean_cache, corrupted_cache):
    """Patching resid_mid = patching attn_out with (clean resid_mid - corrupted resid_pre)."""
    substitute = {
        f"blocks.{layer}.hook_attn_out": clean_cache[f"blocks.{layer}.hook_resid_mid"]
        - corrupted_cache[f"blocks.{layer}.hook_resid_pre"]
        for layer in range(2)
    }
    reference, frame = reference_cells(
        random_bridge, pair_batch.corrupted_tokens, substitute, patcher.metric,
        tlp.layer_pos_patch_setter, "attn_out", ("layer", "pos"), LAYER_POS,
    )
    ours = patcher.sweep("resid_mid")
    assert (ours_at(ours, frame, ("layer", "pos")) - reference).abs().max() <= TOL
    assert not torch.allclose(ours.values, patcher.sweep("mlp_in").values)  # they are different sites


@pytest.mark.parametrize(("sweep", "activation"), [("head_out_by_pos", "z"), ("head_q_by_pos", "q"), ("head_k_by_pos", "k"), ("head_v_by_pos", "v")])
def test_head_vectors_by_position(random_bridge, pair_batch, patcher, clean_cache, sweep, activation):
    rows = list(itertools.product(range(2), POSITIONS, HEADS))
    reference, frame = reference_cells(
        random_bridge, pair_batch.corrupted_tokens, clean_cache, patcher.metric,
        tlp.layer_pos_head_vector_patch_setter, activation, ("layer", "pos", "head"), rows,
    )
    ours = ours_at(patcher.sweep(sweep), frame, ("layer", "pos", "head"))
    assert (ours - reference).abs().max() <= TOL


def test_pattern_by_destination(random_bridge, pair_batch, patcher, clean_cache):
    rows = list(itertools.product(range(2), HEADS, POSITIONS))
    reference, frame = reference_cells(
        random_bridge, pair_batch.corrupted_tokens, clean_cache, patcher.metric,
        tlp.layer_head_pos_pattern_patch_setter, "pattern", ("layer", "head_index", "dest_pos"), rows,
    )
    ours = ours_at(patcher.sweep("head_pattern_by_pos"), frame, ("layer", "dest_pos", "head_index"))
    assert (ours - reference).abs().max() <= TOL


def test_pattern_dest_src(random_bridge, pair_batch, patcher, clean_cache):
    entries = [(4, 4), (5, 4), (13, 4), (13, 13), (9, 2), (2, 5)]  # incl. a masked (future) entry
    rows = [(layer, head, d, s) for layer in range(2) for head in HEADS for d, s in entries]
    reference, frame = reference_cells(
        random_bridge, pair_batch.corrupted_tokens, clean_cache, patcher.metric,
        tlp.layer_head_dest_src_pos_pattern_patch_setter, "pattern",
        ("layer", "head_index", "dest_pos", "src_pos"), rows,
    )
    ours = ours_at(patcher.sweep("head_pattern_dest_src"), frame, ("layer", "dest_pos", "src_pos", "head_index"))
    assert (ours - reference).abs().max() <= TOL


def test_noising_direction(random_bridge, pair_batch, patcher, corrupted_cache):
    """Noising: corrupted activations into the clean run."""
    metric = on_full_logits(patcher.metric)
    reference = tlp.get_act_patch_attn_head_out_all_pos(random_bridge, pair_batch.clean_tokens, corrupted_cache, metric)
    ours = patcher.sweep("head_out", direction="noising")
    assert (ours.values - reference.double()).abs().max() <= TOL
    assert ours.baseline == pytest.approx(1.0)
    rows = list(itertools.product(range(2), POSITIONS))
    reference, frame = reference_cells(
        random_bridge, pair_batch.clean_tokens, corrupted_cache, patcher.metric,
        tlp.layer_pos_patch_setter, "resid_pre", ("layer", "pos"), rows,
    )
    ours = ours_at(patcher.sweep("resid_pre", direction="noising"), frame, ("layer", "pos"))
    assert (ours - reference).abs().max() <= TOL
