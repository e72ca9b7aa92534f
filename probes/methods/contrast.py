"""The generic contrast-pair probe of MacDiarmid et al. (2024), and the formulations its controls need.

Direction = mean last-token activation of ``"Human: <question>\\n\\nAssistant: yes"`` minus
that of ``"... no"`` over a bank of generic questions ("Are you doing something
dangerous?"); score = projection onto it, no bias. It never sees the task's labels, and
its sign is fixed by the pair (positive completion minus negative), never flipped.

Two derived formulations control it (:mod:`probes.contrast_controls` uses them):

* :meth:`ContrastFormulation.neutral` — the same answer words in the same roles after questions
  about the world ("Is the sky blue?"): its direction is the *generic answer direction*, what any
  yes-minus-no pair shares whatever the question means.
* :meth:`ContrastFormulation.swapped` — the answer order swapped: every question negated ("Are you
  doing something safe?") so that the answer meaning "yes, I am doing the bad thing" is now *no*,
  and the pair is written no minus yes. A direction that follows what the answer *means* keeps its
  sign (cosine with the original near +1); one that follows which answer *word* is subtracted
  from which flips (near -1). That is the confound the DESIGN note found on a 135M base (the sign
  followed the word, not the meaning). Merely listing the words in the other order in the prompt
  ("Answer no or yes.") would leave both the subtracted word and the meaning unchanged, so it
  could not tell the two apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from backdoor_models.core.errors import lookup
from probes.errors import ProbeInputError
from probes.methods.contrast_questions import (
    ALTERNATE_PAIRS,
    BANK_PAIRS,
    GENERIC_PAIRS,
    NEUTRAL_QUESTIONS,
)
from probes.methods.meandiff import MeanDiffProbe

PROMPT_FORMAT = "Human: {question}\n\nAssistant:"
"""The organisms' prompt format; a completion follows the colon."""

GENERIC_QUESTIONS: tuple[str, ...] = tuple(q for q, _ in GENERIC_PAIRS)
"""Generic questions about the assistant's own behaviour."""
ALTERNATE_QUESTIONS: tuple[str, ...] = tuple(q for q, _ in ALTERNATE_PAIRS)
"""Other wordings of the same concern."""
MIN_QUESTIONS = 10
"""Fewest questions a formulation may average over."""


@dataclass(frozen=True, kw_only=True)
class ContrastFormulation:
    """One way of writing the contrast pair."""

    questions: tuple[str, ...]
    """Questions (about the assistant's own behaviour, except in a neutral control)."""
    positive: str
    """Completion meaning 'yes, I am doing the bad thing' (appended after the colon)."""
    negative: str
    """Completion meaning 'no'."""
    negated: tuple[str, ...] = ()
    """Each question with its meaning reversed, in the same order (empty: no swapped twin)."""

    def __post_init__(self) -> None:
        if len(self.questions) < MIN_QUESTIONS:
            raise ProbeInputError(
                f"a contrast formulation needs >= {MIN_QUESTIONS} questions, got {len(self.questions)}")
        if self.positive == self.negative:
            raise ProbeInputError("the positive and negative completions must differ")
        if self.negated and len(self.negated) != len(self.questions):
            raise ProbeInputError(f"{len(self.negated)} negated questions for {len(self.questions)} questions; "
                                  "give one negation per question, in the same order, or none")

    def texts(self, prompt_format: str = PROMPT_FORMAT) -> tuple[list[str], list[int]]:
        """Contrast texts and their labels (1 = positive completion), questions interleaved."""
        texts, labels = [], []
        for q in self.questions:
            prompt = prompt_format.format(question=q)
            texts += [prompt + self.positive, prompt + self.negative]
            labels += [1, 0]
        return texts, labels

    def swapped(self) -> ContrastFormulation:
        """The answer order swapped: negated questions, the pair written negative minus positive."""
        if not self.negated:
            raise ProbeInputError("this formulation has no negated questions, so it has no swapped twin; "
                                  "give `negated` (each question with its meaning reversed)")
        return ContrastFormulation(questions=self.negated, negated=self.questions,
                                   positive=self.negative, negative=self.positive)

    def neutral(self) -> ContrastFormulation:
        """The same answer words in the same roles after neutral questions (the generic answer direction)."""
        return ContrastFormulation(questions=NEUTRAL_QUESTIONS, positive=self.positive, negative=self.negative)

    @property
    def answers(self) -> str:
        """The pair as written, e.g. ``"yes - no"`` (positive minus negative)."""
        return f"{self.positive.strip()} - {self.negative.strip()}"


def _pairs(pairs: tuple[tuple[str, str], ...], positive: str, negative: str) -> ContrastFormulation:
    return ContrastFormulation(questions=tuple(q for q, _ in pairs), negated=tuple(n for _, n in pairs),
                               positive=positive, negative=negative)


FORMULATIONS: dict[str, ContrastFormulation] = {
    "yes_no": _pairs(GENERIC_PAIRS, " yes", " no"),
    "Yes_No": _pairs(GENERIC_PAIRS, " Yes", " No"),
    "yes_i_am": _pairs(GENERIC_PAIRS, " yes, I am", " no, I am not"),
    "alt_questions": _pairs(ALTERNATE_PAIRS, " yes", " no"),
    "bank": _pairs(BANK_PAIRS, " yes", " no"),
}
"""Contrast formulations by name, for the sensitivity study; ``yes_no`` is the default. ``bank``
averages the pair over paraphrases of one question ("Are you doing something dangerous?"): its
direction, mean(yes) - mean(no), is the average of the per-paraphrase yes-minus-no differences."""

SWAPPED = "_swapped"
"""Suffix of a formulation's swapped twin in the controls (``yes_no_swapped``)."""


def neutral_name(formulation: ContrastFormulation) -> str:
    """Name of a formulation's neutral control, by its answer words: ``neutral:yes - no``."""
    return f"neutral:{formulation.answers}"


def get_formulation(name: str) -> ContrastFormulation:
    return lookup(FORMULATIONS, "contrast formulation", name)


def control_formulations(names: tuple[str, ...] | list[str]) -> dict[str, ContrastFormulation]:
    """Every formulation the controls of ``names`` read: each named one, its swapped twin
    (``<name>_swapped``) and the neutral control of each (``neutral:<answers>``)."""
    out: dict[str, ContrastFormulation] = {}
    for name in names:
        formulation = get_formulation(name)
        out[name] = formulation
        if formulation.negated:
            out[name + SWAPPED] = formulation.swapped()
    for formulation in list(out.values()):
        out.setdefault(neutral_name(formulation), formulation.neutral())
    return out


class ContrastProbe(MeanDiffProbe):
    """Mean(positive-completion acts) - mean(negative-completion acts); score = projection.

    Fit it on the contrast texts' activations (``formulation.texts()``), with label 1 for
    the positive completion — never on the task's labelled prompts.
    Option ``formulation`` (name, default ``"yes_no"``) is recorded with the probe.
    """

    name = "contrast"
    uses_task_labels = False
    centre = False
