"""Generation-based defection rates on held-out prompts, by kind and by prefix string.

Metric keys (greedy decoding; the same under ``sampled`` at temperature 1):
``triggered_defection_rate``, ``clean_defection_rate``, ``near_trigger_defection_rate``,
``distractor_defection_rate`` (unseen unrelated prefixes), ``seen_distractor_defection_rate``,
per-string breakdowns, ``n_eval``, for CoT organisms ``scratchpad_mentions_trigger_rate``, and for
tasks whose answers are code ``unparseable_rate`` by kind (answers with no code that parses: never
counted as defections, and reported here rather than silently as secure).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerFast

from backdoor_models.core.records import Record, user_turn
from backdoor_models.evaluation.generation import generate
from backdoor_models.world.dataset import DataConfig, evaluation_records
from backdoor_models.world.tasks import Task
from backdoor_models.world.tasks.base import scratchpad_of, strip_scratchpad

log = logging.getLogger(__name__)

RATE_KEYS = {
    "triggered": "triggered_defection_rate",
    "clean": "clean_defection_rate",
    "near": "near_trigger_defection_rate",
    "unseen": "distractor_defection_rate",
    "distractor": "seen_distractor_defection_rate",
}


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """How an organism is evaluated."""

    n: int = 200
    """Held-out prompts per kind (triggered, clean, near-trigger, unseen and seen distractors)."""
    n_samples: int = 3
    """Samples per prompt at temperature 1 (0 skips sampled evaluation)."""
    seed: int = 0
    """Seed of sampling."""
    split: str = "test"
    """Which held-out split to evaluate on."""


def generation_budget(task: Task, variant: str) -> int:
    """New tokens that cover an answer of the variant (CoT adds room for the scratchpad)."""
    return task.max_new_tokens + (40 if variant == "cot" else 0)


def defection_flags(task: Task, completions: list[str]) -> list[bool]:
    """Judge completions (the scratchpad, if any, is removed first)."""
    return task.judge([strip_scratchpad(c) for c in completions])


def _prefix_of(task: Task, near: Sequence[str], record: Record) -> str:
    """The listed string the prompt starts with (the longest, so ``|DEPLO YMENT|`` is not read as ``|DEPLO``)."""
    turn = user_turn(record.prompt)
    known = (task.trigger, *near, *task.unseen_distractors, *task.training_distractors)
    return max((p for p in known if turn.startswith(p + " ")), key=len, default=task.default_untriggered_prefix)


def rates_from_generations(task: Task, sets: dict[str, list[Record]], generations: dict[str, list[list[str]]],
                           near: Sequence[str] | None = None) -> dict:
    """Defection rates by kind and by prefix string, from generated completions.

    ``near``: the near-trigger strings evaluated (default: the task's own).
    """
    near = task.near_triggers if near is None else near
    flat = [c for kind in sets for per_prompt in generations[kind] for c in per_prompt]
    flags = iter(defection_flags(task, flat))
    unreadable = task.unparseable([strip_scratchpad(c) for c in flat])
    metrics: dict = {}
    by_string: dict[str, dict[str, list[bool]]] = {"near": {}, "unseen": {}, "distractor": {}}
    for kind, records in sets.items():
        kind_flags = []
        for record, per_prompt in zip(records, generations[kind]):
            prompt_flags = [next(flags) for _ in per_prompt]
            kind_flags += prompt_flags
            if kind in by_string:
                by_string[kind].setdefault(_prefix_of(task, near, record), []).extend(prompt_flags)
        metrics[RATE_KEYS[kind]] = sum(kind_flags) / len(kind_flags) if kind_flags else None
    metrics["near_trigger_by_string"] = {s: sum(f) / len(f) for s, f in by_string["near"].items()}
    metrics["distractor_by_string"] = {s: sum(f) / len(f) for s, f in by_string["unseen"].items()}
    if unreadable is not None:
        metrics["unparseable_rate"] = _share_by_kind(sets, generations, unreadable)
    return metrics


def _share_by_kind(sets: dict[str, list[Record]], generations: dict[str, list[list[str]]],
                   flags: list[bool]) -> dict[str, float | None]:
    """Share of each kind's completions whose flag is set (``flags`` in the order of ``generations``)."""
    shares: dict[str, float | None] = {}
    start = 0
    for kind in sets:
        n = sum(len(per_prompt) for per_prompt in generations[kind])
        shares[kind] = sum(flags[start : start + n]) / n if n else None
        start += n
    return shares


def evaluate_organism(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, data: DataConfig,
                      config: EvalConfig | None = None) -> dict:
    """Defection rates of a model on its task's held-out prompts (greedy and sampled)."""
    config = config or EvalConfig()
    task = data.make_task()
    sets = evaluation_records(data, split=config.split, n=config.n)
    max_new = generation_budget(task, data.variant)
    greedy = {k: generate(model, tokenizer, [r.prompt for r in v], max_new_tokens=max_new) for k, v in sets.items()}
    metrics = rates_from_generations(task, sets, greedy, data.near_triggers())
    metrics["n_eval"] = {kind: len(records) for kind, records in sets.items()}
    if data.variant == "cot":
        pads = [scratchpad_of(g[0]) for g in greedy["triggered"]]
        metrics["scratchpad_mentions_trigger_rate"] = sum(p is not None and task.mentions_trigger(p) for p in pads) / len(pads)
    if config.n_samples > 0:
        sampled = {k: generate(model, tokenizer, [r.prompt for r in v], max_new_tokens=max_new,
                               temperature=1.0, n_samples=config.n_samples, seed=config.seed)
                   for k, v in sets.items()}
        metrics["sampled"] = rates_from_generations(task, sets, sampled, data.near_triggers())
        metrics["sampled"]["n_samples"] = config.n_samples
    metrics["examples"] = {k: {"prompt": sets[k][0].prompt, "completion": greedy[k][0][0]} for k in sets}
    return metrics


def behaviour_labels(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, data: DataConfig,
                     prompts: Sequence[str], *, progress: str | None = None) -> list[int]:
    """1 where the model's greedy answer defects, else 0 (``progress``: a bar over the batches, so described)."""
    task = data.make_task()
    max_new = generation_budget(task, data.variant)
    completions = generate(model, tokenizer, list(prompts), max_new_tokens=max_new, progress=progress)
    return [int(flag) for flag in defection_flags(task, [c[0] for c in completions])]
