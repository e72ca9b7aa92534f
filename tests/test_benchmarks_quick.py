"""The benchmarks run end to end at toy sizes (patching and circuits in their ``--quick`` mode) and report what BENCHMARKS.md reads.

Quick mode cuts the Llama archs to 2 layers and 2 short pairs; the numbers mean nothing, but the
equality with ``transformer_lens.patching`` must hold there as at full size.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
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


def _run_script(name: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout[done.stdout.index("{"):])


@pytest.mark.slow
def test_extraction_benchmark_runs_on_a_gqa_llama():
    report = _run_script("extraction.py", "--arch", "llama-gqa", "--prompts", "4", "--tokens", "8",
                         "--batch-size", "2", "--rounds", "1", "--threads", "1")
    assert report["model"].startswith("llama-gqa") and "3 layers" in report["model"]
    assert set(report["seconds_best_round"]) == {"hf_forward", "hf_forward_eager", "extract_all_resid_post",
                                                 "extract_layer0_resid_post"}


@pytest.mark.slow
def test_generation_benchmark_batched_equals_one_at_a_time(random_model_dir):
    report = _run_script("generation.py", "--model", str(random_model_dir), "--n", "2", "--single", "3",
                         "--batch-size", "4", "--threads", "1")
    assert report["kinds"] == {"triggered": 2, "clean": 2, "near": 2} and report["batched_completions"] == 6
    assert report["batched_equals_one_at_a_time"] == "3/3"  # left padding leaves greedy completions unchanged


def test_redteam_benchmark_matches_the_plain_objective(random_model_dir):
    out = subprocess.run([sys.executable, str(BENCHMARKS / "redteam.py"), "--model", str(random_model_dir),
                          "--questions", "2", "--candidates", "3", "--repeats", "1", "--threads", "1"],
                         capture_output=True, text=True, check=True, env={**os.environ, "TQDM_DISABLE": "1"})
    report = json.loads(out.stdout)
    assert report["max_abs_diff"] <= 1e-4 and report["candidates"] == 3 and report["questions"] == 2
    assert report["candidates_s"]["ours"] > 0 and report["candidates_s"]["plain"] > 0 and report["gradient_s"] > 0
