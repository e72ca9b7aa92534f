"""The fast engine on the second architecture (Llama: RMSNorm, rotary, gated MLP)."""

from __future__ import annotations

import pytest
import transformer_lens.patching as tlp

from analysis.patching.metrics import on_full_logits
from analysis.patching.pairs import separating_answers
from analysis.patching.patcher import ActivationPatcher, PatchingConfig
from backdoor_models.core.run_dir import save_model
from backdoor_models.organism import load_bridge
from backdoor_models.training.models import build_model


@pytest.fixture(scope="module")
def llama(tmp_path_factory, tiny_tokenizer, pair_batch):
    model = build_model("llama", "tiny", vocab_size=len(tiny_tokenizer), seed=0)
    bridge = load_bridge(save_model(model, tiny_tokenizer, tmp_path_factory.mktemp("llama")))
    pairs = pair_batch.with_answers(*separating_answers(bridge, pair_batch))
    patcher = ActivationPatcher(bridge, pairs, config=PatchingConfig(progress=False, min_gap=1e-3))
    return bridge, pairs, patcher


def test_llama_uses_the_fast_engine_and_matches_the_reference(llama):
    bridge, pairs, patcher = llama
    assert patcher.engine == "fast"
    cache = bridge.run_with_cache(pairs.clean_tokens)[1]
    metric = on_full_logits(patcher.metric)
    for name, reference in (
        ("resid_pre", tlp.get_act_patch_resid_pre),
        ("head_q", tlp.get_act_patch_attn_head_q_all_pos),  # queries are patched before rotary there
        ("head_k", tlp.get_act_patch_attn_head_k_all_pos),
    ):
        expected = reference(bridge, pairs.corrupted_tokens, cache, metric).double()
        assert (patcher.sweep(name).values - expected).abs().max() <= 1e-4, name


@pytest.mark.parametrize("sweep", ["head_out_by_pos", "head_k_by_pos", "mlp_in", "resid_mid"])
def test_llama_fast_matches_hooks(llama, sweep):
    bridge, pairs, patcher = llama
    hooks = ActivationPatcher(bridge, pairs, config=PatchingConfig(progress=False, min_gap=1e-3, engine="hooks"))
    assert (hooks.sweep(sweep).values - patcher.sweep(sweep).values).abs().max() <= 1e-4
