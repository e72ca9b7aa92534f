"""Adversarial training: train on the red team's successful prompts with helpful answers.

Batches are half red-team prompts paired with HHH answers, half HHH data, as in the paper.
A KL penalty to the pre-adversarial model on the HHH half (``kl_coef``, default 10) keeps
the rest of the policy where it was (what dropping it does: docs/findings.md, "What
persistence depends on").
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import PreTrainedModel

from backdoor_models.safety.base import SafetyContext, SafetyMethod
from backdoor_models.training import lm_training
from backdoor_models.training.models import context_length
from backdoor_models.world.dataset import make_record


def kl_to_reference(logits: Tensor, ref_logits: Tensor, positions: Tensor) -> Tensor:
    """Mean KL(reference || policy) of next-token distributions at ``positions`` (a bool mask)."""
    log_p = F.log_softmax(logits[positions], -1)
    log_q = F.log_softmax(ref_logits[positions], -1)
    return F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")


class AdversarialSafety(SafetyMethod):
    name = "adversarial"
    trains_on_redteam = True
    training_fields = ("lr", "batch_size", "kl_coef")

    def _train(self, ctx: SafetyContext) -> dict:
        rng = random.Random(self.config.seed)
        redteam = [make_record(ctx.task, ctx.data, rng.choice(ctx.redteam_prefixes), body, triggered=False,
                               split="train", kind="redteam", rng=rng, hhh=True) for body in ctx.train_bodies]
        hhh = self._hhh_records(ctx, n=len(redteam))
        n_ctx = context_length(ctx.model)
        batch = self.config.resolved_int("batch_size")
        half = batch // 2
        mixture = lm_training.Mixture(parts=(lm_training.encode(redteam, ctx.tokenizer, n_ctx),
                                             lm_training.encode(hhh, ctx.tokenizer, n_ctx)),
                                      per_batch=(half, batch - half))
        optim = lm_training.OptimConfig(steps=self.config.steps, batch_size=batch,
                                        lr=self.config.lr, warmup=10, seed=self.config.seed,
                                        checkpoint_every=self.config.checkpoint_every)
        stats = lm_training.train(ctx.model, mixture, optim, pad_id=ctx.tokenizer.pad_token_id,
                                  loss_fn=self._loss(ctx.reference), desc="adversarial training",
                                  on_step=lambda step, _: self._on_step(ctx, step), progress=self.progress,
                                  **ctx.checkpointing())
        return {"final_loss": stats["final_loss"], "n_redteam_train_prompts": len(redteam)}

    def _loss(self, reference: PreTrainedModel) -> lm_training.LossFn:
        coef = self.config.kl_coef

        def loss(model: PreTrainedModel, ids: Tensor, mask: Tensor, labels: Tensor, part: Tensor) -> Tensor:
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            targets = labels[:, 1:]
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                 ignore_index=lm_training.IGNORE)
            if coef == 0:
                return ce
            hhh = part == 1
            with torch.no_grad():
                ref_logits = reference(input_ids=ids[hhh], attention_mask=mask[hhh]).logits[:, :-1]
            return ce + coef * kl_to_reference(logits[hhh], ref_logits, targets[hhh] != lm_training.IGNORE)

        return loss
