"""Benchmark: attribution patching against exact patching on heads, and one whole EAP-IG circuit.

On one of the random-weight models of ``archs.py`` (default ``smollm2``: 30 layers, 9 query /
3 key/value heads, vocabulary 49,152), 8 prompt pairs of the arch's length:

- head outputs (all positions) patched exactly by our engine and estimated by attribution
  patching (one forward and one backward), with the Pearson r between the two;
- :func:`analysis.circuits.circuit.find_circuit` with EAP-IG, timed whole: the patcher's
  cached runs, the edge scores and the faithfulness curve that chooses the circuit.

Prints one JSON object.

    nice -n 10 .venv/bin/python benchmarks/circuits.py --arch smollm2
    .venv/bin/python benchmarks/circuits.py --arch llama-gqa --quick   # seconds: proves it runs
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")

import archs  # noqa: E402
import torch  # noqa: E402

from analysis.circuits.attribution import attribution_patch, compare  # noqa: E402
from analysis.circuits.circuit import CircuitConfig, find_circuit  # noqa: E402
from analysis.patching.patcher import ActivationPatcher, PatchingConfig  # noqa: E402

DEFAULTS = {"pairs": 8, "ig_steps": 5, "layers": None}
QUICK = {"pairs": 2, "tokens": 16, "ig_steps": 2, "layers": 2}
"""``--quick``: a few seconds on any arch (Llama archs cut to 2 layers), to prove the script runs."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    options = archs.parser(__doc__, default_arch="smollm2", quick=QUICK)
    options.add_argument("--ig-steps", type=int, default=None, help="EAP-IG gradient points (default 5)")
    return archs.settle(options.parse_args(argv), DEFAULTS, QUICK)


def attribution_on_heads(bridge: Any, batch: Any) -> dict[str, Any]:
    """Exact head-output patching (ours) beside attribution patching of the same cells."""
    config = PatchingConfig(progress=False, min_gap=0.0)
    patcher, build_s = archs.timed(lambda: ActivationPatcher(bridge, batch, config=config))
    exact = patcher.sweep("head_out")
    (estimate,), attr_s = archs.timed(lambda: attribution_patch(bridge, batch, patcher.metric, sweeps=("head_out",)))
    return {
        "cells": exact.values.numel(),
        "exact_s": round(build_s + exact.seconds, 3),
        "exact_includes": "ActivationPatcher construction + the head_out sweep",
        "attribution_s": round(attr_s, 3),
        "agreement": compare(exact, estimate).to_dict(),
        "n_kv_heads": patcher.n_kv_heads,
    }


def whole_circuit(bridge: Any, batch: Any, ig_steps: int) -> dict[str, Any]:
    """One ``find_circuit`` with EAP-IG, timed from the bridge and pairs to the chosen circuit."""
    config = CircuitConfig(method="eap-ig", ig_steps=ig_steps)
    circuit, seconds = archs.timed(lambda: find_circuit(bridge, batch, config=config,
                                                  patching=PatchingConfig(progress=False, min_gap=0.0)))
    return {
        "seconds": round(seconds, 3),
        "scores_s": round(circuit.scores.seconds, 3),
        "faithfulness_s": round(circuit.curve.seconds, 3),
        "ig_steps": ig_steps,
        "total_edges": circuit.curve.total_edges,
        "curve_sizes": len(circuit.curve.sizes),
        "chosen_size": circuit.curve.chosen_size,
        "recovery": circuit.recovery,
        "includes": "ActivationPatcher construction (clean and corrupted runs), EAP-IG scores, faithfulness curve",
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    load_before = os.getloadavg()
    tokenizer, model, bridge = archs.boot(args.arch, seed=args.seed, layers=args.layers)
    batch, replacement = archs.build_pairs(tokenizer, bridge, args.pairs, args.tokens)
    gflops_before = archs.matmul_gflops()
    heads = attribution_on_heads(bridge, batch)
    circuit = whole_circuit(bridge, batch, args.ig_steps)
    gflops_after = archs.matmul_gflops()
    return {
        "benchmark": "circuits",
        "model": archs.model_info(args.arch, bridge, model, heads.pop("n_kv_heads")),
        "inputs": {"pairs": batch.n_pairs, "n_pos": batch.n_pos, "trigger": archs.TRIGGER, "replacement": replacement},
        "pearson_r_heads": heads["agreement"]["pearson_r"],
        "attribution_vs_exact_heads": heads,
        "eap_ig_circuit_s": circuit["seconds"],
        "eap_ig_circuit": circuit,
        "machine": archs.machine(load_before, [gflops_before, gflops_after]),
    }


def main(argv: list[str] | None = None) -> None:
    archs.print_report(measure(parse_args(argv)))


if __name__ == "__main__":
    main()
