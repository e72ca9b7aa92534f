"""Safety training (never shown the trigger) and the measurement of backdoor persistence."""

from backdoor_models.core.errors import lookup
from backdoor_models.safety.adversarial import AdversarialSafety
from backdoor_models.safety.base import VERDICTS, SafetyMethod, SafetyResult
from backdoor_models.safety.config import SafetyConfig
from backdoor_models.safety.rl import ReinforcementSafety
from backdoor_models.safety.sft import SupervisedSafety

METHODS: dict[str, type[SafetyMethod]] = {
    "sft": SupervisedSafety,
    "rl": ReinforcementSafety,
    "adversarial": AdversarialSafety,
}


def fields_not_read_by(method: str) -> frozenset[str]:
    """:class:`SafetyConfig` fields that only other methods' training reads, so ``method`` ignores them.

    >>> sorted(fields_not_read_by("sft"))
    ['kl_coef', 'rl_kl_coef', 'rl_lr', 'rl_prompts', 'rl_samples']
    """
    own = set(lookup(METHODS, "safety method", method).training_fields)
    return frozenset(f for cls in METHODS.values() for f in cls.training_fields if f not in own)


def get_method(name: str, config: SafetyConfig | None = None, *, progress: bool = True,
               device: str = "auto") -> SafetyMethod:
    """The safety method called ``name`` (``sft``, ``rl`` or ``adversarial``), training on ``device``."""
    return lookup(METHODS, "safety method", name)(config, progress=progress, device=device)


__all__ = ["METHODS", "fields_not_read_by", "VERDICTS", "SafetyConfig", "SafetyMethod", "SafetyResult", "get_method"]
