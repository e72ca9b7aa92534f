"""Probes fit before safety training, applied to the model after it (and to a clean control).

At each method's best before-layer, the before-probe's threshold is applied to the after model
(caught, false alarms, transferred AUROC); a probe retrained on the after model gives the
retrained AUROC, the cosine and the norm ratio of the two directions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from backdoor_models.core.artifacts import write_json
from backdoor_models.core.model_pair import ModelPair
from backdoor_models.core.provenance import git_revision
from probes.evaluate import transfer
from probes.extract import Activations
from probes.labelled import LabelledPrompts
from probes.study import ModelProbeResult, SuiteConfig, flag_rates, probe_model


@dataclass(frozen=True, kw_only=True)
class TransferReport:
    """Before vs after safety training (and optionally a never-backdoored floor), per method."""

    before: ModelProbeResult
    """Study on the before model (its best layers are used)."""
    transfers: dict[str, dict[str, Any]]
    """Per method: ``after`` (and ``control``) :class:`probes.evaluate.TransferResult` dicts."""
    after_labels: str = "the after model's own labels"
    """Whose labels the after model's probes are fit and scored on."""

    def to_dict(self) -> dict[str, Any]:
        return {"before": self.before.to_dict(), "transfer": self.transfers, "after_labels": self.after_labels,
                "git_revision": git_revision()}


def run_transfer_suite(
    models: ModelPair,
    data: LabelledPrompts,
    *,
    after_data: LabelledPrompts | None = None,
    out_dir: str | Path | None = None,
    control_model: Any = None,
    threshold_rule: str = "fpr1",
    config: SuiteConfig | None = None,
) -> TransferReport:
    """Fit probes on ``models.before``; apply them to ``models.after`` (and ``control_model``).

    At each method's best before-layer: the before-probe's threshold (1% FPR on before
    validation negatives, or Youden) is applied to the after model's test activations
    (fraction of positives caught, false alarms, mean score gap, transferred AUROC); a
    probe of the same method retrained on the after model gives the retrained AUROC, the
    cosine and the norm ratio of the two directions. With groups in ``data``, each target also
    gets the before-probe's flag rate per prompt group (does it still fire on red-team prompts
    that no longer make the model defect?). ``control_model`` (never backdoored) gets the
    same treatment and is the floor. ``after_data`` (the same prompts labelled by the after
    model's behaviour) defaults to ``data``. Writes ``out_dir/transfer.json`` when given.
    """
    config = config or SuiteConfig()
    before, before_acts = probe_model(models.before, data, config=config)
    return transfer_from(before, before_acts, models.after, data, after_data=after_data, out_dir=out_dir,
                         control_model=control_model, threshold_rule=threshold_rule, config=config)


def transfer_from(
    before: ModelProbeResult,
    before_acts: Activations,
    after_model: Any,
    data: LabelledPrompts,
    *,
    after_data: LabelledPrompts | None = None,
    out_dir: str | Path | None = None,
    control_model: Any = None,
    control_study: tuple[ModelProbeResult, Activations] | None = None,
    threshold_rule: str = "fpr1",
    config: SuiteConfig | None = None,
    after_labels_source: str | None = None,
) -> TransferReport:
    """:func:`run_transfer_suite` from a before-study already made (e.g. by :func:`probes.suite.run_probe_suite`);
    ``control_study`` is the control's, already made on ``data`` (then ``control_model`` is not probed again).
    ``after_labels_source`` says whose labels ``after_data`` holds (default: read from whether it is given)."""
    config = config or SuiteConfig()
    y, idx = data.labels, data.split_index()
    light = replace(config, n_random=1, contrast_rule=None)  # a target needs probes, not their controls
    after_data = after_data or data
    targets = {"after": (after_data, probe_model(after_model, after_data, config=light))}
    if control_study is None and control_model is not None:
        control_study = probe_model(control_model, data, config=light)
    if control_study is not None:
        targets["control"] = (data, control_study)
    transfers: dict[str, dict[str, Any]] = {k: {} for k in before.sweep.methods if ":" not in k}
    for target, (target_data, (other, other_acts)) in targets.items():
        target_y, target_idx = target_data.labels, target_data.split_index()
        for name in transfers:
            ms = before.sweep.methods[name]
            site = ms.best
            xb, xa = before_acts.get(site), other_acts.get(site)
            res = transfer(
                ms.best_probe,
                site=site,
                before_val=(xb[idx["val"]], y[idx["val"]]),
                before_test=(xb[idx["test"]], y[idx["test"]]),
                after_test=(xa[target_idx["test"]], target_y[target_idx["test"]]),
                after_probe=other.sweep.methods[name].probes[site.key],
                threshold_rule=threshold_rule,
                n_boot=config.n_boot,
                seed=config.seed,
            )
            transfers[name][target] = res.to_dict()
            test = target_idx["test"]
            names = target_data.groups_of(test)
            if names is not None:
                transfers[name][target]["groups"] = flag_rates(
                    ms.best_probe.score(xa[test]).numpy(), target_y[test], names, res.threshold)
    source = after_labels_source or ("the after model's own labels" if after_data is not data
                                     else "the before model's labels")
    report = TransferReport(before=before, transfers=transfers, after_labels=source)
    if out_dir is not None:
        write_json(Path(out_dir) / "transfer.json", report.to_dict())
    return report
