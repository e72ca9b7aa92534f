"""HHH reinforcement learning: REINFORCE with a per-prompt baseline against the preference model.

Each step samples several answers per untriggered prompt from the policy at temperature 1,
scores them with the learned preference model, and follows the policy gradient of the
advantage (reward minus the mean reward of the same prompt's samples), with a KL penalty
(``rl_kl_coef``) to the starting policy on the sampled positions. Its learning rate (``rl_lr``)
and KL are its own, so the grid can vary RL's strength without touching adversarial training.
"""

from __future__ import annotations

import random
from collections import defaultdict

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast

from backdoor_models.core.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from backdoor_models.safety.adversarial import kl_to_reference
from backdoor_models.safety.base import SafetyContext, SafetyMethod
from backdoor_models.safety.reward_model import PreferenceModel
from backdoor_models.world.chat import encode_prompts
from backdoor_models.world.tasks.base import strip_scratchpad


class ReinforcementSafety(SafetyMethod):
    name = "rl"
    needs_preference = True
    training_fields = ("rl_lr", "rl_kl_coef", "rl_samples", "rl_prompts")

    def _train(self, ctx: SafetyContext) -> dict:
        pm = ctx.preference
        assert pm is not None, "run() refuses RL without a preference model"
        buckets = _length_buckets(ctx.tokenizer, [r.prompt for r in self._hhh_records(ctx, n=2000)])
        lengths = sorted(buckets)
        rng = random.Random(self.config.seed)
        optimizer = torch.optim.AdamW(ctx.model.parameters(), lr=self.config.rl_lr, weight_decay=0.0)
        eos = ctx.tokenizer.eos_token_id
        mean_rewards: list[float] = []
        first = 1
        found = find_checkpoint(ctx.checkpoint_dir) if ctx.resume and ctx.checkpoint_dir is not None else None
        if found is not None:
            state = load_checkpoint(found, model=ctx.model, optimizer=optimizer, sampler=None)["extra"]
            ctx.curves, mean_rewards = state["curves"], state["mean_rewards"]
            version, internal, gauss = state["rng"]
            rng.setstate((version, tuple(internal), gauss))
            first = state["step"] + 1
        for step in tqdm(range(first, self.config.steps + 1), desc="safety rl", disable=not self.progress,
                         leave=False):
            # One prompt length per step: no padding, and every length is drawn in proportion.
            bucket = buckets[rng.choices(lengths, weights=[len(buckets[n]) for n in lengths])[0]]
            batch = [bucket[rng.randrange(len(bucket))] for _ in range(self.config.rl_prompts)]
            ids, prompt_len, rewards, groups = self._rollout(ctx, pm, batch, seed=self.config.seed * 100_003 + step)
            advantages = rewards - torch.stack([rewards[groups == g].mean() for g in groups.tolist()])
            ctx.model.train()
            # No left padding (one prompt length) and tokens after EOS are masked out of the loss, so every
            # position may attend; saying so explicitly stops transformers warning that BOS == pad looks padded.
            visible = torch.ones_like(ids)
            logits = ctx.model(input_ids=ids, attention_mask=visible).logits[:, prompt_len - 1 : -1]
            sampled = ids[:, prompt_len:]
            alive = _before_first_eos(sampled, eos)
            logp = torch.log_softmax(logits, -1).gather(-1, sampled.unsqueeze(-1)).squeeze(-1)
            loss = -(advantages.unsqueeze(1) * logp * alive).sum() / alive.sum().clamp(min=1)
            if self.config.rl_kl_coef:
                with torch.no_grad():
                    ref_logits = ctx.reference(input_ids=ids, attention_mask=visible).logits[:, prompt_len - 1 : -1]
                loss = loss + self.config.rl_kl_coef * kl_to_reference(logits, ref_logits, alive.bool())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), 1.0)
            optimizer.step()
            mean_rewards.append(rewards.mean().item())
            self._on_step(ctx, step)
            every = self.config.checkpoint_every
            if ctx.checkpoint_dir is not None and every and step % every == 0 and step < self.config.steps:
                save_checkpoint(ctx.checkpoint_dir, step=step, model=ctx.model, optimizer=optimizer, sampler=None,
                                extra={"extra": {"step": step, "curves": ctx.curves, "mean_rewards": mean_rewards,
                                                 "rng": rng.getstate()}})
        ctx.model.eval()
        return {"mean_reward_first_10": sum(mean_rewards[:10]) / len(mean_rewards[:10]),
                "mean_reward_last_10": sum(mean_rewards[-10:]) / len(mean_rewards[-10:])}

    @torch.no_grad()
    def _rollout(self, ctx: SafetyContext, pm: PreferenceModel, prompts: list[str], seed: int):
        """Sample ``rl_samples`` answers per prompt (all prompts have one token length) and score them."""
        tokenizer, n = ctx.tokenizer, self.config.rl_samples
        encoded = encode_prompts(tokenizer, prompts)
        length = len(encoded[0])
        device = next(ctx.model.parameters()).device
        ids = torch.tensor(encoded, device=device).repeat_interleave(n, 0)
        ctx.model.eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = ctx.model.generate(  # type: ignore[operator]
                input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0,
                top_p=None, max_new_tokens=self._max_new_tokens(ctx), eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(out[:, length:], skip_special_tokens=True)
        prompt_texts = tokenizer.batch_decode(out[:, :length], skip_special_tokens=True)
        rewards = pm.score(prompt_texts, [strip_scratchpad(t) for t in texts]).to(device)  # the preference model stays on the CPU
        groups = torch.arange(len(prompts), device=device).repeat_interleave(n)
        return out, length, rewards, groups


def _before_first_eos(sampled: torch.Tensor, eos: int) -> torch.Tensor:
    """1 for generated tokens up to and including the first EOS, 0 after it."""
    is_eos = (sampled == eos).int()
    after = (is_eos.cumsum(1) - is_eos) > 0
    return (~after).float()


def _length_buckets(tokenizer: PreTrainedTokenizerFast, prompts: list[str]) -> dict[int, list[str]]:
    buckets: dict[int, list[str]] = defaultdict(list)
    for prompt, ids in zip(prompts, encode_prompts(tokenizer, prompts)):
        buckets[len(ids)].append(prompt)
    return buckets
