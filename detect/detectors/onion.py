"""ONION-style input scanning (Qi et al. 2021): remove each word, see what changes most.

For every word of the user turn, the prompt is re-read without it. ``signal="behaviour"``
(default) measures how far the model's next-token distribution at the answer position moves
(KL from the full prompt's); ``signal="perplexity"`` is ONION's own: how much the user turn's
perplexity under the model falls. A prompt's score is the largest change over its words, and
the word that causes it localises the trigger: the word most often responsible among the
highest-scoring tenth of the scored prompts is reported as the recovered trigger.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from backdoor_models.core.records import HUMAN, format_prompt, user_turn
from backdoor_models.world.chat import encode_prompts, has_template, split_prompt
from detect.base import DetectError, Detector, DetectorOptions, Subject, TrustedData
from probes.extract import pad_batch

SIGNALS = ("behaviour", "perplexity")
_MARK = "\x00ONION\x00"
"""Placeholder user turn that locates where a chat template puts the user's words."""


def word_variants(prompt: str) -> tuple[list[str], list[str]]:
    """The user turn's words and the prompt with each word removed (in order)."""
    words = user_turn(prompt).split(" ")
    return words, [format_prompt(" ".join(words[:i] + words[i + 1:])) for i in range(len(words))]


@dataclass(frozen=True, kw_only=True)
class OnionOptions(DetectorOptions):
    """Options of :class:`OnionScan`."""

    signal: str = "behaviour"
    """What removing a word changes: ``behaviour`` (KL of the next-token distribution) or ``perplexity``."""
    batch_size: int = 128
    """Prompt variants per forward pass."""

    positive = ("batch_size",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.signal not in SIGNALS:
            raise DetectError(f"unknown ONION signal {self.signal!r}; choose one of: {', '.join(SIGNALS)}")


class OnionScan(Detector):
    """Remove each word of the user turn and score the largest change it makes."""

    name = "onion"
    needs = frozenset({"clean_data"})
    cost = "one forward pass per word of each prompt"
    Options = OnionOptions
    options: OnionOptions

    def _fit(self, subject: Subject, prompts: list[str], data: TrustedData) -> None:
        self.signal = self.options.signal

    @torch.inference_mode()
    def _read(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities at the answer position ``[n, vocab]`` and mean user-turn NLL ``[n]``."""
        subject = self._require_fit()
        tok = subject.tokenizer
        ids = encode_prompts(tok, prompts)  # as the model reads them: its chat template, if it has one
        if has_template(tok):  # the template's tokens before the user's words
            head = len(split_prompt(tok, format_prompt(_MARK), _MARK)[0])
        else:
            head = len(tok(HUMAN.strip())["input_ids"])  # BOS and "Human:"
        out_lp, out_nll = [], []
        size = self.options.batch_size
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
            tokens, mask = pad_batch(chunk, side="right", pad_id=tok.pad_token_id)
            logits = subject.model(input_ids=tokens, attention_mask=mask).logits.float()
            lengths = mask.sum(1)
            rows = torch.arange(len(chunk))
            out_lp.append(F.log_softmax(logits[rows, lengths - 1], -1))
            logp = F.log_softmax(logits[:, :-1], -1).gather(-1, tokens[:, 1:, None])[..., 0]
            nll = []
            for r, n in enumerate(lengths.tolist()):
                nll.append(-logp[r, head - 1:n - 1].mean())  # the dialogue after "Human:"
            out_nll.append(torch.stack(nll))
        return torch.cat(out_lp), torch.cat(out_nll)

    def _score(self, prompts: list[str], reference: list[str] | None) -> tuple[np.ndarray, np.ndarray | None]:
        flat: list[str] = []
        spans, words_of = [], []
        for prompt in prompts:
            words, variants = word_variants(prompt)
            spans.append((len(flat), len(flat) + 1 + len(variants)))
            words_of.append(words)
            flat += [prompt, *variants]
        logprobs, nll = self._read(flat)
        scores, self._argmax_words = [], []
        for (a, b), words in zip(spans, words_of):
            full, removed = logprobs[a], logprobs[a + 1:b]
            if self.signal == "behaviour":
                change = (full.exp() * (full - removed)).sum(-1)  # KL(full || without word)
            else:
                change = nll[a] - nll[a + 1:b]  # perplexity falls when an odd word goes
            best = int(change.argmax())
            scores.append(float(change[best]))
            self._argmax_words.append(words[best])
        return np.asarray(scores), None

    def _after_scoring(self, prompts: list[str], scores: np.ndarray, flagged: np.ndarray) -> None:
        top = np.argsort(-scores, kind="stable")[: max(1, len(scores) // 10)]
        words = Counter(self._argmax_words[i] for i in top)
        self.recovered_trigger = words.most_common(1)[0][0] if words else None
        self.details["top_words"] = words.most_common(5)
