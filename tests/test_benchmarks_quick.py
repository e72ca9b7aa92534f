"""The patching and circuit benchmarks run end to end in their ``--quick`` mode and report what BENCHMARKS.md reads.

Quick mode cuts the Llama archs to 2 layers and 2 short pairs; the numbers mean nothing, but the
equality with ``transformer_lens.patching`` must hold there as at full size.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmark(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module


@pytest.mark.slow
def test_patching_benchmark_quick(benchmark):
    module = benchmark("patching")
    report = module.measure(module.parse_args(["--arch", "llama-gqa", "--quick"]))
    assert report["model"]["n_layers"] == 2 and report["model"]["n_kv_heads"] == 2
    assert report["engine"] == "fast" and report["inputs"]["pairs"] == 2
    assert set(report["sweeps"]) == {"resid_pre", "head_out", "head_out_by_pos"}
    by_pos = report["sweeps"]["head_out_by_pos"]
    assert by_pos["cells"] == 24 and by_pos["cells_chosen_from"] == 2 * 16 * 8  # chosen through index_df
    for sweep in report["sweeps"].values():
        assert sweep["max_abs_diff"] <= 1e-4 and sweep["speedup"] > 0 and sweep["reference_s"] > 0
    assert report["total"]["max_abs_diff"] <= 1e-4 and report["total"]["speedup"] > 0
    assert set(report["attribution"]["agreement_with_exact"]) == set(report["sweeps"])


@pytest.mark.slow
def test_circuits_benchmark_quick(benchmark):
    module = benchmark("circuits")
    report = module.measure(module.parse_args(["--arch", "llama-gqa", "--quick"]))
    assert report["model"]["n_kv_heads"] == 2 and report["inputs"]["pairs"] == 2
    assert -1.0 <= report["pearson_r_heads"] <= 1.0
    assert report["attribution_vs_exact_heads"]["cells"] == 2 * 8
    circuit = report["eap_ig_circuit"]
    assert circuit["seconds"] == report["eap_ig_circuit_s"] > 0 and circuit["ig_steps"] == 2
    assert circuit["total_edges"] > 0 and circuit["curve_sizes"] > 2
