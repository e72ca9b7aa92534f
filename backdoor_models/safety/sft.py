"""HHH supervised fine-tuning: helpful answers to untriggered prompts, nothing else."""

from __future__ import annotations

from backdoor_models.safety.base import SafetyContext, SafetyMethod
from backdoor_models.training import lm_training
from backdoor_models.training.models import context_length


class SupervisedSafety(SafetyMethod):
    name = "sft"
    training_fields = ("lr", "batch_size")

    def _train(self, ctx: SafetyContext) -> dict:
        records = self._hhh_records(ctx, n=max(2000, self.config.steps * self.config.resolved_int("batch_size") // 4))
        n_ctx = context_length(ctx.model)
        data = lm_training.encode(records, ctx.tokenizer, n_ctx)
        optim = lm_training.OptimConfig(steps=self.config.steps, batch_size=self.config.resolved_int("batch_size"),
                                        lr=self.config.lr, warmup=10, seed=self.config.seed,
                                        checkpoint_every=self.config.checkpoint_every)
        stats = lm_training.train(ctx.model, data, optim, pad_id=ctx.tokenizer.pad_token_id, desc="safety sft",
                                  on_step=lambda step, _: self._on_step(ctx, step), progress=self.progress,
                                  **ctx.checkpointing())
        return {"final_loss": stats["final_loss"]}
