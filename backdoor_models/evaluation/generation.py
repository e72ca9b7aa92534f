"""Batched generation: prompts sorted by token length, left-padded within a batch.

Sorting keeps padding small; Hugging Face's ``generate`` derives position ids from the
attention mask, so a left-padded prompt is continued exactly as it would be alone (a test
checks this against unpadded generation).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from backdoor_models.world.chat import encode_prompts


@torch.inference_mode()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, prompts: list[str], *,
             max_new_tokens: int, temperature: float = 0.0, n_samples: int = 1, seed: int = 0,
             batch_size: int = 256, progress: str | None = None) -> list[list[str]]:
    """Completions for each prompt: ``n_samples`` of them (greedy when ``temperature == 0``).

    Prompts are read as the model reads them (its chat template, when it has one), on the
    model's device. ``progress``: a progress bar over the batches, with this description.
    """
    encoded = encode_prompts(tokenizer, prompts)
    device = next(model.parameters()).device
    order = sorted((i for i in range(len(prompts)) for _ in range(n_samples)), key=lambda i: len(encoded[i]))
    results: list[list[str]] = [[] for _ in prompts]
    pad = tokenizer.pad_token_id
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in tqdm(range(0, len(order), batch_size), desc=progress, disable=progress is None, leave=False):
            chunk = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in chunk)
            ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in chunk])
            mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in chunk])
            out = model.generate(  # type: ignore[operator]
                input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                top_k=0 if temperature > 0 else None, top_p=None,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=pad,
            )
            texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
            for i, text in zip(chunk, texts):
                results[i].append(text)
    return results
