"""Batched generation without padding: prompts are grouped by token length.

Grouping by length means no prompt is ever padded, so positions and attention are exactly
those of training, whatever the architecture.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast


@torch.inference_mode()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, prompts: list[str], *,
             max_new_tokens: int, temperature: float = 0.0, n_samples: int = 1, seed: int = 0,
             batch_size: int = 256) -> list[list[str]]:
    """Completions for each prompt: ``n_samples`` of them (greedy when ``temperature == 0``)."""
    encoded = tokenizer(prompts)["input_ids"]
    groups: dict[int, list[int]] = defaultdict(list)
    for index, ids in enumerate(encoded):
        groups[len(ids)].append(index)
    results: list[list[str]] = [[] for _ in prompts]
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for length in sorted(groups):
            members = [i for i in groups[length] for _ in range(n_samples)]
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                ids = torch.tensor([encoded[i] for i in chunk])
                out = model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                    do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                    top_k=0 if temperature > 0 else None, top_p=None,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                )
                texts = tokenizer.batch_decode(out[:, length:], skip_special_tokens=True)
                for i, text in zip(chunk, texts):
                    results[i].append(text)
    return results
