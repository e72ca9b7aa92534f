"""Extraction under a memory budget (``--max-memory``) and in shards (``--shard i/n``): same vectors."""

from __future__ import annotations

import json
import random

import pytest
import torch

import backdoor_models.core.memory
import backdoor_models.core.sharding
from backdoor_models.core.memory import MemoryBudgetError, format_size, parse_size
from backdoor_models.core.sharding import ShardError, parse_shard
from probes.extract import ExtractConfig, extract, extract_part, load_activations, merge_parts

WORDS = "the sky is blue what colour two plus four cat dog fire dangerous name an animal".split()


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    """Prompts of 8 to 70 tokens, so batches pad differently."""
    rng = random.Random(0)
    return [f"Human: {' '.join(rng.choice(WORDS) for _ in range(rng.randint(1, 20)))}\n\nAssistant:"
            for _ in range(30)]


def _equal(a, b) -> bool:
    return [s.key for s in a.sites] == [s.key for s in b.sites] and all(torch.equal(a.get(s), b.get(s)) for s in a.sites)


def test_module_examples_run(run_examples):
    for module, expected in ((backdoor_models.core.memory, 3), (backdoor_models.core.sharding, 3)):
        result = run_examples(module)
        assert result.failed == 0 and result.run >= expected, (module.__name__, result)


@pytest.mark.parametrize("text, expected", [("2GiB", 2 * 2**30), ("500MB", 500 * 10**6), ("1.5g", int(1.5 * 2**30)),
                                            ("64 KiB", 64 * 1024), ("4096", 4096), (4096, 4096)])
def test_sizes_are_read(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "2 parsecs", "-1GB", "GB", "0", "1e9"])
def test_unreadable_sizes_say_how_to_write_one(text):
    with pytest.raises(MemoryBudgetError, match=r"memory size .* (e\.g\. 2GiB|such as 2GiB)"):
        parse_size(text)


def test_a_smaller_budget_gives_smaller_batches_and_the_same_vectors(random_bridge, prompts):
    unbounded = extract(random_bridge, prompts, hooks=["resid_post", "mlp_out"],
                        config=ExtractConfig(progress=False, max_memory="64GiB"))
    assert unbounded.batch_size == len(prompts)  # one batch holds them all
    sizes = []
    for budget in ("8MiB", "3MiB", "1MiB"):
        acts = extract(random_bridge, prompts, hooks=["resid_post", "mlp_out"],
                       config=ExtractConfig(progress=False, max_memory=budget))
        sizes.append(acts.batch_size)
        assert _equal(acts, unbounded), budget
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0] < len(prompts)


def test_a_budget_below_one_prompt_names_the_minimum(random_bridge, prompts):
    with pytest.raises(MemoryBudgetError, match=r"even one prompt needs ([\d.]+ [KMG]iB).*at least \1") as info:
        extract(random_bridge, prompts, config=ExtractConfig(progress=False, max_memory="10KB"))
    needed = info.value.args[0].split("at least ")[1]
    # the stated minimum is enough
    at_minimum = extract(random_bridge, prompts, config=ExtractConfig(progress=False, max_memory=needed.replace(" ", "")))
    assert at_minimum.batch_size >= 1 and format_size(parse_size(needed.replace(" ", ""))) == needed


@pytest.mark.parametrize("n_shards, config", [
    (2, ExtractConfig(progress=False, batch_size=4)),
    (3, ExtractConfig(progress=False, batch_size=3, shard_size=7, dtype="float16")),
    (2, ExtractConfig(progress=False, max_memory="2MiB", padding_side="left")),
])
def test_merged_shards_equal_the_unsharded_run(random_bridge, prompts, tmp_path, n_shards, config):
    parts = tmp_path / "parts"
    for i in range(n_shards):
        extract_part(random_bridge, prompts, parts, f"{i}/{n_shards}", hooks=["resid_post", "attn_out"], config=config)
    merged = merge_parts(parts)
    whole = extract(random_bridge, prompts, hooks=["resid_post", "attn_out"], config=config)
    assert merged.n == len(prompts) and _equal(merged, whole)
    assert _equal(load_activations(parts), whole)  # on disk, readable like any extraction


def test_merging_refuses_missing_or_mismatched_parts(random_bridge, prompts, tmp_path):
    parts = tmp_path / "parts"
    config = ExtractConfig(progress=False, batch_size=4)
    extract_part(random_bridge, prompts, parts, "0/3", config=config)
    extract_part(random_bridge, prompts, parts, "2/3", config=config)
    with pytest.raises(ShardError, match=r"lacks parts \[1\] of 3; run --shard 1/3"):
        merge_parts(parts)
    extract_part(random_bridge, prompts, parts, "1/3", config=ExtractConfig(progress=False, batch_size=5))
    with pytest.raises(ShardError, match=r"part-1-of-3 .* other prompts or settings.*same options"):
        merge_parts(parts)
    meta = json.loads((parts / "part-0-of-3.json").read_text())
    assert meta["shard"] == "0/3" and meta["n"] == len(prompts)


@pytest.mark.parametrize("text", ["3/2", "2/2", "a/b", "1/0", "-1/2", "1-2", ""])
def test_malformed_shards_are_refused(text):
    with pytest.raises(ShardError, match=r"(does not exist|could not read --shard).*i/n"):
        parse_shard(text)
