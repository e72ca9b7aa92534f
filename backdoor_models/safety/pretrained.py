"""What a safety run measures only on an organism fine-tuned from a pretrained base.

There the preference model is off by default (a copy of a 135M model per reward step is hours
on a CPU), and the base itself is the better judge: on held-out clean requests it scores the
greedy answers of the model before and after safety training against its own
(:func:`~backdoor_models.evaluation.helpfulness.helpfulness_kept`), as insertion's check does.
"""

from __future__ import annotations

from transformers import PreTrainedModel, PreTrainedTokenizerFast

from backdoor_models.evaluation.helpfulness import (
    HELPFULNESS_PROMPTS,
    greedy_answers,
    helpfulness_kept,
)
from backdoor_models.training.bases import recorded_base_source
from backdoor_models.training.pretrained import load_base_model


def helpfulness_before_after(base_record: dict, before: PreTrainedModel, after: PreTrainedModel,
                             tokenizer: PreTrainedTokenizerFast, prompts: list[str], variant: str) -> dict:
    """``{"before": ..., "after": ...}``: each model's helpfulness against the base on the first
    ``HELPFULNESS_PROMPTS`` of ``prompts``."""
    base, _ = load_base_model(recorded_base_source(base_record))
    base = base.to(next(after.parameters()).device)  # type: ignore[arg-type]
    prompts = prompts[:HELPFULNESS_PROMPTS]
    own = greedy_answers(base, tokenizer, prompts)  # generated once for both
    return {when: helpfulness_kept(base, model, tokenizer, prompts, variant=variant, own=own)
            for when, model in (("before", before), ("after", after))}
