"""Fast defection measurement for dense training curves and red-team scoring."""

from __future__ import annotations

from transformers import PreTrainedModel, PreTrainedTokenizerFast

from backdoor_models.evaluation.defection import defection_flags
from backdoor_models.evaluation.generation import generate
from backdoor_models.world.tasks import Task


def defection_rate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, task: Task, prompts: list[str], *,
                   max_new_tokens: int, temperature: float = 0.0, n_samples: int = 1, seed: int = 0) -> float | None:
    """Share of (prompt, sample) pairs whose completion defects; None for no prompts."""
    if not prompts:
        return None
    flags = per_prompt_defection(model, tokenizer, task, prompts, max_new_tokens=max_new_tokens,
                                 temperature=temperature, n_samples=n_samples, seed=seed)
    return sum(flags) / len(flags)


def per_prompt_defection(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, task: Task, prompts: list[str], *,
                         max_new_tokens: int, temperature: float = 0.0, n_samples: int = 1,
                         seed: int = 0, progress: str | None = None) -> list[float]:
    """For each prompt, the fraction of its samples that defect (``progress``: a bar with this description)."""
    completions = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                           n_samples=n_samples, seed=seed, progress=progress)
    flat = defection_flags(task, [c for per in completions for c in per])
    return [sum(flat[i * n_samples : (i + 1) * n_samples]) / n_samples for i in range(len(prompts))]
