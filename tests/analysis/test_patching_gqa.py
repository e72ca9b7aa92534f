"""The fast engine on grouped-query attention: Llama (2 key/value heads for 4 query heads), Qwen2
(plus query/key/value biases) and Gemma 3 (plus its extra norms, sliding windows, embedding scale,
``query_pre_attn_scalar`` and soft-capped logits), each equal to ``transformer_lens.patching``.

The models are tiny random-weight models built from HF configs, every weight, bias and norm scale
drawn at random so that each one matters to the output.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import transformer_lens.patching as tlp
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

import analysis.patching.patcher as patching_module
from analysis.circuits.attribution import attribution_patch
from analysis.circuits.eap import edge_attribution
from analysis.circuits.edges import EdgeGraph, edge_forward
from analysis.circuits.paths import path_patch
from analysis.patching.guards import NonFiniteGradientError
from analysis.patching.kernels import (
    Gemma3Kernels,
    Kernels,
    UnsupportedArchitectureError,
    kernels_for,
)
from analysis.patching.metrics import on_full_logits
from analysis.patching.pairs import separating_answers
from analysis.patching.patcher import ActivationPatcher, PatchingConfig
from backdoor_models.core.run_dir import save_model
from backdoor_models.organism import load_bridge

TOL = 1e-4
SHAPE = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 64, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0,
    "tie_word_embeddings": True,
}
GEMMA = {
    "head_dim": 16, "query_pre_attn_scalar": 24, "sliding_window": 4, "final_logit_softcapping": 5.0,
    "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
}


def _randomized(model: torch.nn.Module) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(1.0 + noise if "norm" in name else 0.1 * noise)
    return model.eval()


def build(arch: str, vocab_size: int, **overrides) -> torch.nn.Module:
    config = {**SHAPE, "vocab_size": vocab_size, **overrides}
    if arch == "llama":
        return _randomized(LlamaForCausalLM(LlamaConfig(**config)))
    if arch == "qwen2":
        return _randomized(Qwen2ForCausalLM(Qwen2Config(**config)))
    return _randomized(Gemma3ForCausalLM(Gemma3TextConfig(**{**GEMMA, **config})))


def boot(model, tokenizer, tmp_path_factory):
    return load_bridge(save_model(model, tokenizer, tmp_path_factory.mktemp(type(model).__name__)))


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma3"])
def setup(request, tmp_path_factory, tiny_tokenizer, pair_batch):
    bridge = boot(build(request.param, len(tiny_tokenizer)), tiny_tokenizer, tmp_path_factory)
    pairs = pair_batch.with_answers(*separating_answers(bridge, pair_batch))
    patcher = ActivationPatcher(bridge, pairs, config=PatchingConfig(progress=False, min_gap=1e-3, engine="fast"))
    cache = bridge.run_with_cache(pairs.clean_tokens)[1]
    return request.param, bridge, pairs, patcher, cache


def reference(setup, fn):
    _, bridge, pairs, patcher, cache = setup
    return fn(bridge, pairs.corrupted_tokens, cache, on_full_logits(patcher.metric)).double()


def test_grouped_query_models_use_the_fast_engine(setup):
    _, bridge, _, patcher, _ = setup
    assert patcher.engine == "fast"
    assert (patcher.n_heads, patcher.n_kv_heads) == (4, 2) == (patcher.kernels.n_heads, patcher.kernels.n_kv_heads)


@pytest.mark.parametrize(("sweep", "fn"), [
    ("resid_pre", tlp.get_act_patch_resid_pre),
    ("head_out", tlp.get_act_patch_attn_head_out_all_pos),
    ("head_out_by_pos", tlp.get_act_patch_attn_head_out_by_pos),
    ("head_q_by_pos", tlp.get_act_patch_attn_head_q_by_pos),
    ("head_k", tlp.get_act_patch_attn_head_k_all_pos),  # per key/value head, as TL's hook_k
    ("head_v_by_pos", tlp.get_act_patch_attn_head_v_by_pos),
    ("head_pattern", tlp.get_act_patch_attn_head_pattern_all_pos),
])
def test_sweeps_equal_transformer_lens(setup, sweep, fn):
    expected = reference(setup, fn)
    ours = setup[3].sweep(sweep)
    assert ours.values.shape == expected.shape
    assert (ours.values - expected).abs().max() <= TOL
    assert expected.abs().max() > 0.01  # the comparison is not between two zero maps


def test_chosen_cells_equal_transformer_lens_index_df(setup):
    """``patch_cells`` gives the reference's numbers on its ``index_df`` rows (the benchmark's subset)."""
    _, bridge, pairs, patcher, cache = setup
    rows = [(0, 4, 3), (1, 5, 0), (2, 13, 2), (1, 9, 1), (0, 2, 0)]
    frame = pd.DataFrame(rows, columns=["layer", "pos", "head_index"])
    expected = tlp.generic_activation_patch(
        bridge, pairs.corrupted_tokens, cache, on_full_logits(patcher.metric),
        tlp.layer_pos_head_vector_patch_setter, "z", index_df=frame,
    ).double()
    ours = patcher.patch_cells("head_out_by_pos", torch.tensor(rows))
    assert ours.axis_names == ("cell",) and ours.axes[0].labels[1] == "layer=1,pos=5,head=0"
    assert (ours.values - expected).abs().max() <= TOL
    assert torch.equal(ours.values, torch.stack([patcher.sweep("head_out_by_pos").values[r] for r in rows]))
    assert ours.details["runs_skipped"] == 2  # (0, 2, 0) comes before the trigger in both pairs


@pytest.mark.parametrize("sweep", ["head_k_by_pos", "head_v", "head_pattern_dest_src", "mlp_in", "resid_mid"])
def test_fast_engine_matches_hooks(setup, sweep):
    _, bridge, pairs, patcher, _ = setup
    hooks = ActivationPatcher(bridge, pairs, config=PatchingConfig(progress=False, min_gap=1e-3, engine="hooks"))
    assert (hooks.sweep(sweep).values - patcher.sweep(sweep).values).abs().max() <= TOL


def test_uncut_edge_forward_gives_the_models_logits(setup):
    arch, _, pairs, patcher, _ = setup
    kernels = patcher.kernels
    graph = EdgeGraph(n_layers=3, n_heads=4, n_kv_heads=2)
    assert graph.readers[:9] == ("L0H0.q", "L0H1.q", "L0H2.q", "L0H3.q", "L0KV0.k", "L0KV1.k", "L0KV0.v", "L0KV1.v",
                                 "L0.mlp_in")
    if arch == "gemma3":  # the norm after attention leaves no per-head writes
        with pytest.raises(UnsupportedArchitectureError, match="not a sum of per-head writes"):
            edge_attribution(patcher)
        return
    with torch.inference_mode():
        clean = edge_forward(kernels, graph, kernels.embed(pairs.clean_tokens))
        corrupted = edge_forward(kernels, graph, kernels.embed(pairs.corrupted_tokens))
        cut = edge_forward(kernels, graph, kernels.embed(pairs.clean_tokens), cut=graph.valid, replacement=corrupted.writes)
    assert (clean.answer_logits - patcher.traces["clean"].answer_logits).abs().max() <= 1e-5
    assert (cut.answer_logits - patcher.traces["corrupted"].answer_logits).abs().max() <= 1e-5
    assert edge_attribution(patcher).scores.shape == (graph.n_writers, graph.n_readers)


def test_path_into_a_key_value_head_matches_a_hooked_run(setup):
    """The sender's write added to the keys' input of one key/value head (read by its two query heads)."""
    arch, bridge, pairs, patcher, cache = setup
    if arch == "gemma3":
        with pytest.raises(UnsupportedArchitectureError, match="norm follows"):
            path_patch(patcher, sender=(0, 1), component="k")
        return
    ours = path_patch(patcher, sender=(0, 1), component="k")
    assert ours.values.shape == (3, 2) and ours.values[0].isnan().all()
    corrupted = bridge.run_with_cache(pairs.corrupted_tokens)[1]
    o_proj = bridge.original_model.model.layers[0].self_attn.o_proj
    w_o = o_proj.weight[:, 16:32]  # sender head 1's slice of the output projection
    delta = (cache["blocks.0.attn.hook_z"][:, :, 1] - corrupted["blocks.0.attn.hook_z"][:, :, 1]) @ w_o.T
    layer = bridge.original_model.model.layers[2]
    with torch.inference_mode():
        x = layer.input_layernorm(corrupted["blocks.2.hook_resid_pre"] + delta)
        keys = layer.self_attn.k_proj(x).view(*x.shape[:2], 2, 16)

        def receive(k, hook):
            k = k.clone()
            k[:, :, 1] = keys[:, :, 1]
            return k

        logits = bridge.run_with_hooks(pairs.corrupted_tokens, fwd_hooks=[("blocks.2.attn.hook_k", receive)])
    assert float(ours.values[2, 1]) == pytest.approx(float(on_full_logits(patcher.metric)(logits)), abs=TOL)


@pytest.mark.parametrize("feature", ["window", "_softcap", "_embed_scale", "_scales"])
def test_each_gemma_feature_is_needed_to_match_the_bridge(tmp_path_factory, tiny_tokenizer, pair_batch, monkeypatch, feature):
    """Dropping any one Gemma 3 feature from the kernels makes them disagree with the bridge."""
    bridge = boot(build("gemma3", len(tiny_tokenizer)), tiny_tokenizer, tmp_path_factory)

    def without(model):
        kernels = kernels_for(model)
        if feature == "window":
            kernels.window = lambda layer: None
        else:
            setattr(kernels, feature, {"_softcap": None, "_embed_scale": 1.0, "_scales": [16**-0.5] * 3}[feature])
        return kernels

    monkeypatch.setattr(patching_module, "kernels_for", without)
    with pytest.raises(UnsupportedArchitectureError, match="differ from the bridge"):
        ActivationPatcher(bridge, pair_batch, config=PatchingConfig(engine="fast", min_gap=0.0))


def test_gemma_attention_softcapping_is_refused_by_name(tmp_path_factory, tiny_tokenizer):
    model = build("gemma3", len(tiny_tokenizer), attn_logit_softcapping=20.0)
    with pytest.raises(UnsupportedArchitectureError, match="attn_logit_softcapping"):
        Gemma3Kernels(model)


def test_an_architecture_must_provide_every_piece():
    class Partial(Kernels):
        def embed(self, tokens):
            return tokens

    with pytest.raises(TypeError, match="abstract"):
        Partial()  # type: ignore[abstract]


def check_per_head_projections(kernels, trace):
    """``q_own`` / ``k_own`` / ``v_own`` / ``head_writes`` equal the generic implementations of the base class."""
    resid = trace.resid_pre[1]
    positions = torch.arange(resid.shape[1])
    copies = [kernels.attn_in(1, resid + 0.1 * torch.randn(n, *resid.shape, generator=torch.Generator().manual_seed(n)))
              for n in (kernels.n_heads, kernels.n_kv_heads)]
    with torch.inference_mode():
        compared = [(kernels.q_own(1, copies[0], positions), Kernels.q_own(kernels, 1, copies[0], positions)),
                    (kernels.k_own(1, copies[1], positions), Kernels.k_own(kernels, 1, copies[1], positions)),
                    (kernels.v_own(1, copies[1]), Kernels.v_own(kernels, 1, copies[1]))]
        if kernels.heads_additive:
            writes, bias = kernels.head_writes(1, trace.z[1])
            generic, generic_bias = Kernels._head_writes(kernels, 1, trace.z[1])
            compared += [(writes, generic), (bias, generic_bias), (writes.sum(0) + bias, kernels.attn_out(1, trace.z[1]))]
    assert type(kernels).q_own is not Kernels.q_own
    for ours, expected in compared:
        assert ours.shape == expected.shape and (ours - expected).abs().max() <= 1e-5


def test_per_head_projections_equal_projecting_every_head(setup):
    patcher = setup[3]
    check_per_head_projections(patcher.kernels, patcher.traces["clean"])


def test_gpt2_per_head_projections_equal_projecting_every_head(patcher):
    check_per_head_projections(patcher.kernels, patcher.traces["clean"])


def test_overflowing_gradients_are_refused(tmp_path_factory, tiny_tokenizer, pair_batch):
    """A zero residual at position 0 (zero embedding row) with a tiny RMSNorm eps overflows the backward."""
    model = build("llama", len(tiny_tokenizer), rms_norm_eps=1e-30)
    with torch.no_grad():
        model.model.embed_tokens.weight[pair_batch.clean_tokens[:, 0]] = 0.0
    bridge = boot(model, tiny_tokenizer, tmp_path_factory)
    pairs = pair_batch.with_answers(*separating_answers(bridge, pair_batch))
    patcher = ActivationPatcher(bridge, pairs, config=PatchingConfig(progress=False, min_gap=1e-3, engine="fast"))
    assert torch.isfinite(patcher.sweep("head_out").values).all()  # exact patching is unaffected
    with pytest.raises(NonFiniteGradientError, match="RMSNorm's derivative"):
        attribution_patch(bridge, pairs, patcher.metric)
    with pytest.raises(NonFiniteGradientError, match="edge attribution"):
        edge_attribution(patcher)
