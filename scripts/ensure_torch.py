"""Install torch==2.13.0 (the CPU wheel) unless a torch >= 2.6 is already importable.

An unpinned `torch` requirement would make pip fetch a multi-GB CUDA build on a CPU-only
machine, so set-up settles torch before installing the project.
"""

import subprocess
import sys

MIN_VERSION = (2, 6)
PINNED = "torch==2.13.0"


def installed_torch_version() -> tuple[int, int] | None:
    try:
        import torch
    except ImportError:
        return None
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


def main() -> None:
    version = installed_torch_version()
    if version is not None and version >= MIN_VERSION:
        print(f"keeping installed torch {version[0]}.{version[1]}")
        return
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", PINNED])


if __name__ == "__main__":
    main()
