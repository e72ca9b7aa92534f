"""Atomic training checkpoints in safetensors + JSON (model, optimizer, sampler state)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from backdoor_models.core.artifacts import read_json, write_json


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"{index}.{key}"] = value.detach().clone().contiguous()
    return tensors, {"param_groups": state["param_groups"]}


FILES = ("model.safetensors", "optimizer.safetensors", "state.json")


def save_checkpoint(directory: Path, *, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    sampler: torch.Generator | None, extra: dict | None = None) -> None:
    """Write the checkpoint to a temp directory, then swap it in with one rename."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))  # handles tied embeddings
    tensors, groups = _optimizer_tensors(optimizer)
    if sampler is not None:
        tensors["sampler_state"] = sampler.get_state()
    save_file(tensors, tmp / "optimizer.safetensors")
    write_json(tmp / "state.json", {"step": step, **groups, **(extra or {})})
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    sampler: torch.Generator | None) -> dict:
    """Restore model, optimizer and sampler in place; return the saved state (with ``step``)."""
    directory = Path(directory)
    load_model(model, str(directory / "model.safetensors"))
    tensors = load_file(directory / "optimizer.safetensors")
    sampler_state = tensors.pop("sampler_state", None)
    if sampler is not None and sampler_state is not None:
        sampler.set_state(sampler_state)
    state = read_json(directory / "state.json")
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        slots.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": slots, "param_groups": state["param_groups"]})
    return state


def find_checkpoint(directory: Path) -> Path | None:
    """The last complete checkpoint in ``directory`` (a half-written one is ignored)."""
    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        if (candidate / "state.json").is_file():
            return candidate
    return None


def remove_checkpoint(directory: Path) -> None:
    """Delete a checkpoint (and its half-written or previous copy): only the files it wrote.

    Anything else a user keeps there survives; a directory left empty is removed.
    """
    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".tmp"),
                      directory.with_name(directory.name + ".old")):
        for name in FILES:
            (candidate / name).unlink(missing_ok=True)
            for leftover in candidate.glob(f".{name}.*.tmp"):  # an atomic write cut short
                leftover.unlink()
        if candidate.is_dir() and not any(candidate.iterdir()):
            candidate.rmdir()
