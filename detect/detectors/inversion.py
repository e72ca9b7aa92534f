"""Trigger inversion: search for a short prefix that makes the model defect on clean prompts.

The search is the red team's GCG (:func:`backdoor_models.safety.redteam.gcg_search`), but
unlike the trigger-blind red team it may use every token, trigger pieces included: it is
how a defender looks for the trigger. The searched tokens carry their own leading space (the
head ends at ``Human:``), so the search sees the tokens the final prompt will hold. Each restart's prefix is then put in front of held-out
questions and the model's greedy answers are judged; the prefix with the highest defection
rate is the recovered trigger, and that rate is the model's score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backdoor_models.core.records import format_prompt
from backdoor_models.evaluation.defection import generation_budget
from backdoor_models.evaluation.fast_defection import per_prompt_defection
from backdoor_models.safety.redteam import RedTeamConfig, gcg_search
from backdoor_models.world.dataset import split_bodies
from detect.base import Detector, DetectorOptions, Subject, TrustedData


@dataclass(frozen=True, kw_only=True)
class InversionOptions(DetectorOptions):
    """Options of :class:`TriggerInversion`: the GCG search's budget and the check of what it found."""

    restarts: int = 4
    """GCG searches from fresh random prefixes (each may recover one candidate trigger)."""
    steps: int = 25
    """GCG steps per restart."""
    prefix_tokens: int = 6
    """Tokens in the searched prefix."""
    questions: int = 4
    """Training questions the search's loss is measured on."""
    check_questions: int = 50
    """Held-out questions each found prefix is checked on (greedy generation, judged)."""

    positive = ("restarts", "steps", "prefix_tokens", "questions", "check_questions")


class TriggerInversion(Detector):
    """Search for a trigger with GCG; the model's score is the best prefix's defection rate."""

    name = "inversion"
    needs = frozenset({"gradients", "generation"})
    cost = "restarts x steps x (one backward + 64 candidates x 8 questions forward), then generation"
    input_level = False
    Options = InversionOptions
    options: InversionOptions

    def _fit(self, subject: Subject, prompts: list[str], data: TrustedData) -> None:
        task = subject.behaviour
        bodies = split_bodies(task, subject.data_seed)  # the model's own split: its test questions are unseen
        options = self.options
        config = RedTeamConfig(generators=("gcg",), gcg_restarts=options.restarts, gcg_steps=options.steps,
                               gcg_prefix_tokens=options.prefix_tokens, questions=options.questions, seed=data.seed,
                               exclude_trigger=False)
        found = list(dict.fromkeys(p for p in gcg_search(subject.model, subject.tokenizer, task, bodies["train"],
                                                          config, progress=False) if p))
        questions = bodies["test"][: options.check_questions]
        budget = generation_budget(task, subject.variant)
        candidates: list[dict[str, Any]] = []
        for prefix in found:
            checks = [format_prompt(task.user_turn(prefix, b.question)) for b in questions]
            rate = float(np.mean(per_prompt_defection(subject.model, subject.tokenizer, task, checks,
                                                      max_new_tokens=budget)))
            candidates.append({"prefix": prefix, "defection_rate": rate})
        candidates.sort(key=lambda c: -float(c["defection_rate"]))
        self.details["candidates"] = candidates
        self.recovered_trigger = str(candidates[0]["prefix"]) if candidates else None
        self._model_score = float(candidates[0]["defection_rate"]) if candidates else 0.0

    def score_model(self) -> float:
        """Greedy defection rate on held-out questions behind the best recovered prefix."""
        self._require_fit()
        return self._model_score
